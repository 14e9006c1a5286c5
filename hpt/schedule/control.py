"""What ends a whole tuning job before its last training job: `hpt stop` (a request file in
the experiment folder), Ctrl-C / SIGTERM, a completion criterion, the job's deadline;
`end_reason` says which. In the shape of a Ray Tune Stopper (`__call__` per result,
`stop_all`), which both engines drive (Ray Tune through hpt/controller/tune/tuner.py)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from hpt.experiment.job_state import INTERRUPTED, MAX_RUNTIME_EXCEEDED, STOP_REQUESTED


class JobControl:
    """Ends the whole tuning job: `hpt stop` (a request file), Ctrl-C / SIGTERM, or a
    completion criterion (the wrapped stopper). `end_reason` says which."""

    def __init__(self, stop_file: Path, criteria=None,
                 deadline: float | None = None):
        self.stop_file = stop_file
        self.criteria = criteria
        self.deadline = deadline  # the tuning job's max_runtime_seconds, as a time.time()
        self.end_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        self.end_reason = self.end_reason or reason

    def __call__(self, trial_id, result) -> bool:
        if self.criteria is not None and self.criteria(trial_id, result):
            self.request_stop(getattr(self.criteria, "reason", None) or "CompletionCriteriaMet")
        return False

    def stop_all(self) -> bool:
        if self.end_reason is None and self.deadline is not None and time.time() >= self.deadline:
            self.request_stop(MAX_RUNTIME_EXCEEDED)
        if self.end_reason is None and self.stop_file.exists():
            self.request_stop(STOP_REQUESTED)
        if self.end_reason is None and self.criteria is not None and self.criteria.stop_all():
            self.request_stop(getattr(self.criteria, "reason", None) or "CompletionCriteriaMet")
        return self.end_reason is not None


class StopOnSignals:
    """First Ctrl-C / SIGTERM: stop cleanly (trials Stopped, job resumable); second: abort."""

    def __init__(self, control: JobControl):
        self.control = control
        self.saved: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig, reason in ((signal.SIGINT, INTERRUPTED), (signal.SIGTERM, STOP_REQUESTED)):
                self.saved[sig] = signal.signal(sig, self._handler(sig, reason))
        return self

    def _handler(self, sig, reason):
        def handle(signum, frame):
            self.control.request_stop(reason)
            signal.signal(sig, self.saved[sig])  # a second signal acts as usual
        return handle

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
