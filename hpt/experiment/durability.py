"""Group commit for the launcher's durable files (the experiment journal, the study's).

A write that must reach the disk is handed to one background thread, which fsyncs its file
within SYNC_LAG_SECONDS, once for every write that arrived meanwhile: the writer never
waits on the disk (an fsync costs 1-5 ms, on the launcher's path once per trial start and
end). What stays as it was: every write() is in the OS at once, so a killed launcher loses
nothing; what fsync adds is surviving a power cut, now for every event older than the lag.
"""

from __future__ import annotations

import os
import threading
import time

SYNC_LAG_SECONDS = 0.05


class Syncer:
    def __init__(self) -> None:
        self._dirty: set[int] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def soon(self, fd: int) -> None:
        """fsync `fd` within SYNC_LAG_SECONDS."""
        with self._cond:
            self._dirty.add(fd)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hpt fsync",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def now(self, fd: int) -> None:
        """fsync `fd` at once (before it is closed) and forget it."""
        with self._cond:
            self._dirty.discard(fd)
        os.fsync(fd)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._dirty:
                    self._cond.wait()
            time.sleep(SYNC_LAG_SECONDS)  # what arrives meanwhile rides along
            with self._cond:
                batch, self._dirty = self._dirty, set()
            for fd in batch:
                try:
                    os.fsync(fd)
                except OSError:  # closed meanwhile: its owner fsynced it with now()
                    pass


SYNCER = Syncer()
