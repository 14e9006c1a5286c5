"""What `hpt launch` shows while it runs: progress over max_trials with ETA, counts, best so
far, and the running training jobs with their placement (node, GPUs) and latest objective.

On a terminal a rich panel stays at the bottom; elsewhere (CI logs, pipes) only plain lines are
printed. Either way there is one line per finished training job.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

MAX_RUNNING_ROWS = 12


@dataclass
class RunningJob:
    started: float
    objective: float | None = None
    step: int | None = None
    placement: str = ""


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
        self.running: dict[str, RunningJob] = {}
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
        self.running[name] = RunningJob(time.time())
        self._refresh()

    def trial_progress(self, name: str, value: float, step: int | None = None,
                       placement: str | None = None) -> None:
        job = self.running.get(name)
        if job is not None:
            job.objective, job.step = value, step
            job.placement = placement or job.placement
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

    def _status(self) -> Group:
        now = time.time()
        eta = self.eta_seconds()
        best = f"{_fmt(self.best[0])} ({self.best[1]})" if self.best else "-"
        headline = Text(
            f"{self.tuning_job}: {self._done()}/{self.max_trials} done  "
            f"running {len(self.running)}  completed {self.counts['Completed']}  "
            f"failed {self.counts['Failed']}  stopped {self.counts['Stopped']}  best {best}  "
            f"elapsed {now - self.started:.0f}s  eta {'-' if eta is None else f'{eta:.0f}s'}")
        bar = ProgressBar(total=max(self.max_trials, 1), completed=self._done(), width=60)
        parts = [bar, headline]
        if self.running:
            table = Table(box=None, pad_edge=False, show_edge=False)
            for column in ("running training job", "placement", "step", "objective", "time"):
                table.add_column(column)
            for name, job in list(self.running.items())[:MAX_RUNNING_ROWS]:
                table.add_row(name, job.placement or "-", "-" if job.step is None else
                              str(job.step), _fmt(job.objective), f"{now - job.started:.0f}s")
            parts.append(table)
        return Group(*parts)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._status())
