"""The tracking follower's loop: passes of MlflowSync once a second, backing off while the
server does not answer, and a bounded last flush.

`python -m hpt.tracking.follow ROOT --uri URI --experiment NAME` is the process a launch
starts (hpt/tracking/process.py): each report is a JSON line on stdout; `finish` on stdin
asks for the last flush, and stdin's end (the launcher died) does too, shorter. `hpt track`
calls `catch_up` in its own process.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import sys
import time
from pathlib import Path

from hpt.core.schema import File
from hpt.tracking.mlflow_plan import MlflowTarget
from hpt.tracking.mlflow_sync import CLIENT_ENVIRONMENT, MlflowSync, Report

POLL_SECONDS = 1.0
RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0)  # then every 8 s while the server does not answer
FLUSH_SECONDS = 60.0        # the last flush after the job ended, while the server takes it
FLUSH_SAID_AT = 5000        # points left at the end that are worth a line (~seconds to send)
ORPHAN_FLUSH_SECONDS = 3.0  # ...and after the launcher died (nothing must outlive it long)
DOWN_FLUSH_SECONDS = 2.0    # ...and while the server does not answer
FINISH = "finish"
LOCK_FILE = File.MLFLOW_LOCK  # one follower per folder at a time
LOCK_WAIT_SECONDS = 30.0


class Follower:
    """Runs passes of one MlflowSync and keeps the story of the server's availability."""

    def __init__(self, sync: MlflowSync, report: Report):
        self.sync, self.report = sync, report
        self.down_since: float | None = None
        self.last_error = ""
        self._failures = 0

    def attempt(self, read_journal: bool = True) -> float:
        """One pass; returns the seconds to wait before the next."""
        try:
            self.sync.step(read_journal)
        except Exception as exc:  # noqa: BLE001 - unreachable, timed out, 5xx: all the same
            self.last_error = short_error(exc)
            if self.down_since is None:
                self.down_since = time.time()
                self.report("unavailable", error=self.last_error)
            self._failures += 1
            return RETRY_SECONDS[min(self._failures, len(RETRY_SECONDS)) - 1]
        if self.down_since is not None:
            self.report("recovered", after_seconds=round(time.time() - self.down_since, 1))
            self.down_since, self._failures, self.last_error = None, 0, ""
        return POLL_SECONDS

    def flush(self, seconds: float, read_journal: bool = True) -> None:
        """Passes until everything the folder holds is in MLflow, or `seconds` are up."""
        began, said = time.time(), False
        while True:
            wait = self.attempt(read_journal)
            left = self.sync.unsent()["points"]
            if not said and left >= FLUSH_SAID_AT and self.down_since is None:
                self.report("flushing", points=left)
                said = True
            # A server that does not answer gets a short last chance, not the whole flush:
            # the job's end must not wait on it (`hpt track` sends the rest later).
            limit = seconds if self.down_since is None else min(seconds, DOWN_FLUSH_SECONDS)
            if self.sync.complete() or time.time() + min(wait, 1.0) > began + limit:
                return
            time.sleep(min(wait, 1.0))

    def summary(self) -> dict:
        left = self.sync.unsent()
        return {"sent_points": self.sync.sent_points, "runs": len(self.sync.jobs),
                "written_runs": self.sync.written_runs,
                "complete": self.sync.complete(), "unsent_points": left["points"],
                "runs_not_ended": left["runs_not_ended"],
                "parent_not_ended": left["parent_not_ended"],
                "refused": self.sync.refused[:20], "error": self.last_error or None,
                "down_since": self.down_since}


def short_error(exc: Exception) -> str:
    """What went wrong, in a few words (the client's message nests urllib3's whole story)."""
    text = str(exc)
    for marker, said in (("Connection refused", "connection refused"),
                         ("Failed to establish", "connection refused"),
                         ("timed out", "timed out"), ("Timeout", "timed out"),
                         ("Connection broken", "connection broken"),
                         ("Connection aborted", "connection broken")):
        if marker in text:
            return said
    return f"{type(exc).__name__}: {text[:300]}"


def follow(follower: Follower, stdin) -> None:
    """Until the launcher says `finish` (or goes away): a pass, then wait for the next."""
    while True:
        wait = follower.attempt()
        ready, _, _ = select.select([stdin], [], [], wait)
        if ready:
            if stdin.readline().strip() == FINISH:
                follower.flush(FLUSH_SECONDS)
            else:  # the launcher died: what was read goes, briefly (a resume follows itself)
                follower.flush(ORPHAN_FLUSH_SECONDS, read_journal=False)
            return


def make_sync(root: Path, target: MlflowTarget, report: Report) -> MlflowSync:
    """The sync of one folder, once no other follower has it (one whose launcher died may
    still be sending for a few seconds: its runs are then in mlflow.json). Its `lock` is
    held until closed."""
    os.environ.update(CLIENT_ENVIRONMENT)  # read by the client at each request
    lock = _hold_lock(Path(root) / LOCK_FILE)
    from mlflow.tracking import MlflowClient

    sync = MlflowSync(root, target, MlflowClient(tracking_uri=target.uri), report)
    sync.lock = lock
    return sync


def _hold_lock(path: Path):
    """The folder's follower lock (held while the returned file is open)."""
    f = open(path, "a")
    deadline = time.time() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.time() > deadline:
                raise RuntimeError(f"{path}: another hpt tracking follower holds it") from None
            time.sleep(0.1)


def catch_up(root: Path, target: MlflowTarget, report: Report, seconds: float) -> dict:
    """`hpt track`: sends what MLflow lacks of a job's folder, within `seconds`."""
    follower = Follower(make_sync(root, target, report), report)
    try:
        follower.flush(seconds)
        return follower.summary()
    finally:
        follower.sync.lock.close()


def _printer(kind: str, **fields) -> None:
    print(json.dumps({"kind": kind, **fields}, default=str), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hpt.tracking.follow")
    parser.add_argument("root", type=Path)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--experiment", required=True)
    args = parser.parse_args(argv)
    follower = Follower(make_sync(args.root, MlflowTarget(args.uri, args.experiment),
                                  _printer), _printer)
    try:
        follow(follower, sys.stdin)
    finally:
        _printer("ended", **follower.summary())


if __name__ == "__main__":
    main()
