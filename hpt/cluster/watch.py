"""Noticing that the Ray a launcher is connected to is gone (its GCS stops answering: the
head node died, `ray stop`, a killed gcs_server).

Ray's driver ends its own process 60 s after its GCS stopped answering, with a message about
the GCS and nothing about the tuning job. The watch probes the GCS's port and reports a loss
after LOST_AFTER_SECONDS without an answer, so the launcher acts first and in its own words:
the local controller goes on without the dashboard, Ray Tune's cannot go on and leaves the
job resumable (hpt/controller/job_run.py decides).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

PROBE_SECONDS = 1.0
# Long enough for a GCS that restarts (Ray's GCS fault tolerance) to answer again; well
# inside Ray's own 60 s.
LOST_AFTER_SECONDS = 10.0


def gcs_answers(address: str, timeout: float = PROBE_SECONDS) -> str | None:
    """None when something accepts a connection at HOST:PORT; else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class RayWatch:
    """Calls `on_lost(why)` once, from its own thread, when `address` has not answered for
    `lost_after` seconds."""

    def __init__(self, address: str, on_lost: Callable[[str], None],
                 lost_after: float = LOST_AFTER_SECONDS):
        self.address, self.on_lost, self.lost_after = address, on_lost, lost_after
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hpt ray watch", daemon=True)

    def start(self) -> RayWatch:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        silent_since = None
        while not self._closed.wait(PROBE_SECONDS):
            why = gcs_answers(self.address)
            if why is None:
                silent_since = None
                continue
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since >= self.lost_after and not self._closed.is_set():
                self.on_lost(f"the Ray at {self.address} was lost (nothing has answered "
                             f"there for {self.lost_after:.0f} s: {why})")
                return
