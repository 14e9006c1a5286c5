"""Kills what a dead launcher leaves: a sidecar process per launching process
(reaper_sidecar.py).

A trial script runs in its own session (so a stop reaches all it spawned) with
PR_SET_PDEATHSIG, so it dies with the Ray worker that started it. Its children do not: when
the worker is SIGKILLed (the launcher was killed, Ray lost the worker), an orphaned grandchild
would run on. The sidecar closes that gap: it reads "+ PGID" / "- PGID" lines from a pipe
whose only writer is the launching process; when that process dies, for any reason, the pipe
ends and the sidecar SIGKILLs every group still registered, every process of a Ray session
the process started ("r SESSION_DIR"), runs the cleanup commands still registered ("c KEY
ARGV-JSON" / "u KEY": containers, which the engine owns), then exits. One
sidecar per process, started at its first trial (one interpreter start, not one per trial).
It detaches (double fork) so that Ray, which SIGKILLs a dead worker's children, does not kill
it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

_SIDECAR = Path(__file__).with_name("reaper_sidecar.py")


class GroupReaper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe = None  # the write end; the sidecar's stdin
        self._pid = None  # the process that started the sidecar (a fork must start its own)

    def _sidecar(self):
        if self._pipe is None or self._pid != os.getpid():
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(_SIDECAR), str(os.getpid())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                    start_new_session=True)  # a signal to the launcher's group spares it
                proc.wait()  # the first fork exits at once; the sidecar lives on
                self._pipe, self._pid = proc.stdin, os.getpid()
            except OSError:
                self._pipe = None
        return self._pipe

    def _send(self, line: str) -> None:
        with self._lock:
            pipe = self._sidecar()
            if pipe is None:
                return
            try:
                pipe.write(line + "\n")
                pipe.flush()
            except (OSError, ValueError):  # the sidecar is gone: the next call starts another
                self._pipe = None

    def register(self, pgid: int) -> None:
        self._send(f"+ {pgid}")

    def unregister(self, pgid: int) -> None:
        if self._pipe is not None:
            self._send(f"- {pgid}")

    def on_death(self, key: str, argv: list[str]) -> None:
        """Runs argv (after the groups are killed) if this process dies first: what a
        process group kill cannot reach, such as a container the engine runs."""
        self._send(f"c {key} {json.dumps(argv)}")

    def cancel(self, key: str) -> None:
        if self._pipe is not None:
            self._send(f"u {key}")

    def ray_session(self, session_dir: str) -> None:
        """Every process of this Ray session (one this process started) is killed if this
        process dies first: Ray's own agents outlive a SIGKILLed driver."""
        self._send(f"r {session_dir}")


REAPER = GroupReaper()
