"""What `hpt launch` shows while it runs: counts, best so far, elapsed and ETA.

On a terminal a rich status line stays at the bottom; elsewhere (CI logs, pipes) only plain
lines are printed. Either way there is one line per finished training job.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.6g}"


class LaunchView:
    def __init__(self, tuning_job: str, max_trials: int, maximize: bool,
                 stream: TextIO | None = None):
        self.tuning_job = tuning_job
        self.max_trials = max_trials
        self.maximize = maximize
        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
        self.live_enabled = self.console.is_terminal
        self.started = time.time()
        self.running: dict[str, float | None] = {}
        self.counts = {"Completed": 0, "Failed": 0, "Stopped": 0}
        self.best: tuple[float, str] | None = None
        self._live: Live | None = None

    def __enter__(self):
        if self.live_enabled:
            self._live = Live(self._status(), console=self.console, refresh_per_second=2,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def print(self, message: str) -> None:
        self.console.print(message, markup=False)

    def trial_started(self, name: str) -> None:
        self.running[name] = None
        self._refresh()

    def trial_progress(self, name: str, value: float) -> None:
        if name in self.running:
            self.running[name] = value
            self._refresh()

    def trial_ended(self, name: str, status: str, objective: float | None,
                    elapsed: float, reason: str | None) -> None:
        self.running.pop(name, None)
        self.counts[status] = self.counts.get(status, 0) + 1
        if status == "Completed" and objective is not None and (
                self.best is None or (objective > self.best[0]) == self.maximize
                and objective != self.best[0]):
            self.best = (objective, name)
        line = f"{name}  {status:<9}  objective={_fmt(objective)}  {elapsed:.1f}s"
        if reason:
            line += "  " + reason.splitlines()[0][:160]
        self.print(line)
        self._refresh()

    def _done(self) -> int:
        return sum(self.counts.values())

    def eta_seconds(self) -> float | None:
        done = self._done()
        if not done:
            return None
        elapsed = time.time() - self.started
        return elapsed / done * max(self.max_trials - done, 0)

    def _status(self) -> Text:
        elapsed = time.time() - self.started
        eta = self.eta_seconds()
        best = f"{_fmt(self.best[0])} ({self.best[1]})" if self.best else "-"
        return Text(
            f"{self.tuning_job}: {self._done()}/{self.max_trials} done  "
            f"running {len(self.running)}  completed {self.counts['Completed']}  "
            f"failed {self.counts['Failed']}  stopped {self.counts['Stopped']}  best {best}  "
            f"elapsed {elapsed:.0f}s  eta {'-' if eta is None else f'{eta:.0f}s'}")

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._status())
