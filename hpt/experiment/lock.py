"""One live writer per tuning job: an exclusive lock on `<experiment>/launcher.lock`.

`hpt launch` (fresh or `--resume`) and `hpt rerun` hold it for their whole life. It is an
`flock` on an open file, so the kernel drops it when the holder dies in any way (kill -9
included): a crashed launcher never leaves a stale lock, and `--resume` is accepted at once.
The file also says who holds it (pid, command) for the message a second writer gets and for
`hpt status`; what counts is the lock, never the file's text.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from hpt.core.errors import UserError
from hpt.core.schema import File

LOCK_FILE = File.LAUNCHER_LOCK
# A reader (`hpt status`) holds a shared lock for an instant to look; a writer that finds the
# lock taken retries this long before it decides another writer is alive.
_ACQUIRE_RETRY_SECONDS = 1.0


class JobBusy(UserError):
    """Another live process writes this tuning job."""


class WriterLock:
    """The exclusive writer lock of one experiment folder, held until `release()` (or death).
    Its file descriptor is close-on-exec, so a program the launcher starts never holds it."""

    def __init__(self, root: Path, command: str):
        self.root = Path(root)
        self.command = command
        self._file = None

    def acquire(self) -> WriterLock:
        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.root / LOCK_FILE, "a+", encoding="utf-8")
        deadline = time.monotonic() + _ACQUIRE_RETRY_SECONDS
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.close()
                    raise JobBusy(busy_message(self.root, holder(self.root),
                                               self.command)) from None
                time.sleep(0.05)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "command": self.command,
                            "since": time.time()}) + "\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(root: Path) -> dict[str, Any] | None:
    """Who writes the tuning job now ({"pid", "command"}), or None when nobody does."""
    path = Path(root) / LOCK_FILE
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(f.read() or "{}")
            except ValueError:  # the writer is between truncate and write
                info = {}
            return {"pid": info.get("pid"), "command": info.get("command", "launch")}
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return None


def busy_message(root: Path, live: dict[str, Any] | None, wanted: str) -> str:
    """What a refused `wanted` command ("launch" or "rerun") is told."""
    pid = (live or {}).get("pid")
    command = (live or {}).get("command", "launch")
    who = f"hpt {command} (pid {pid})" if pid else "another hpt"
    name = Path(root).name
    how = (f"stop it with `hpt stop {name}` (or kill {pid if pid else 'it'})"
           if command == "launch" else f"let it finish (or kill {pid if pid else 'it'})")
    again = "`hpt launch ... --resume`" if wanted == "launch" else f"`hpt {wanted}`"
    return (f"{root}: tuning job {name!r} is being written by {who}, which is still running; "
            f"one launcher per tuning job: wait for it to end, or {how}, then run {again} "
            f"again")
