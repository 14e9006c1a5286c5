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
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hpt.core.schema import Key
from hpt.experiment.best import BestSoFar
from hpt.core.trial import ENDED
from hpt.core.words import shorten

MAX_RUNNING_ROWS = 12
BAR_WIDTH, MIN_BAR_WIDTH = 40, 5
REASON_WIDTH = 160
REASON_TAIL_LINES = 3


@dataclass
class RunningJob:
    started: float
    objective: float | None = None
    step: int | None = None
    placement: str = ""


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.6g}"


def ended_line(name: str, status: str, objective: float | None, elapsed: float,
               reason: str | None, note: str = "") -> str:
    """The console line of a finished training job. A reason of several lines (the last log
    lines of a job whose metric never matched, a stderr tail) keeps its first line and its
    last REASON_TAIL_LINES lines, indented, each cut at REASON_WIDTH characters. `note`:
    the other objectives' values, the constraints it does not meet."""
    line = f"{name}  {status:<9}  objective={_fmt(objective)}{note}  {elapsed:.1f}s"
    if not reason:
        return line
    first, *rest = [part for part in reason.splitlines() if part.strip()] or [""]
    lines = [f"{line}  {shorten(first, REASON_WIDTH)}"]
    lines += [f"    {shorten(part.strip(), REASON_WIDTH)}" for part in rest[-REASON_TAIL_LINES:]]
    return "\n".join(lines)


class LaunchView:
    def __init__(self, tuning_job: str, max_trials: int, best: BestSoFar,
                 stream: TextIO | None = None, kept: tuple[dict, ...] = ()):
        """`best`: the tuning job's rule (`BestSoFar.of(frozen spec)`: constraints and
        tie-breaks); `kept`: the finished training jobs a resumed job already has (journal
        rows); they count toward `max_trials` and the best from the start."""
        self.tuning_job = tuning_job
        self.max_trials = max_trials
        self.console = Console(file=stream or sys.stdout, highlight=False)
        self.live_enabled = self.console.is_terminal
        self.started = time.time()
        self.running: dict[str, RunningJob] = {}
        self.counts = {status: 0 for status in ENDED}
        for row in kept:
            self.counts[row[Key.STATUS]] = self.counts.get(row[Key.STATUS], 0) + 1
        self.best = best.seeded(kept)
        self._live: Live | None = None
        self._kept = len(kept)  # the ETA is about this run's pace, not the earlier runs'

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
        # soft_wrap: a long line stays one line (a log reader's grep finds it whole).
        self.console.print(message, markup=False, soft_wrap=True)

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

    def trial_ended(self, record: dict[str, Any], reason: str | None = None,
                    note: str = "") -> None:
        """A training job ended (`record`: its record dict); its line says `reason` (by
        default its failure reason) and `note`."""
        name, status = record[Key.TRAINING_JOB_NAME], record[Key.STATUS]
        self.running.pop(name, None)
        self.counts[status] = self.counts.get(status, 0) + 1
        self.best.offer(record)
        self.print(ended_line(name, status, record.get(Key.OBJECTIVE_VALUE),
                              record[Key.END_TIME] - record[Key.START_TIME],
                              reason if reason is not None else record.get(Key.FAILURE_REASON),
                              note))
        self._refresh()

    def _done(self) -> int:
        return sum(self.counts.values())

    def eta_seconds(self) -> float | None:
        done_here = self._done() - self._kept
        if done_here <= 0:
            return None
        elapsed = time.time() - self.started
        return elapsed / done_here * max(self.max_trials - self._done(), 0)

    def _status(self) -> Group:
        now = time.time()
        eta = self.eta_seconds()
        best = f"{_fmt(self.best.value)} ({self.best.name})" if self.best.record else "-"
        line = Text(f"{self.tuning_job}: {self._done()}/{self.max_trials} done  elapsed "
                    f"{now - self.started:.0f}s  eta {'-' if eta is None else f'{eta:.0f}s'}",
                    no_wrap=True)
        # The bar takes what the line leaves of the terminal (an 80-column one wrapped the eta).
        bar = max(MIN_BAR_WIDTH, min(BAR_WIDTH, self.console.width - line.cell_len - 2))
        progress = Table.grid(padding=(0, 2))
        progress.add_row(ProgressBar(total=max(self.max_trials, 1), completed=self._done(),
                                     width=bar), line)
        counts = Text(f"running {len(self.running)}  completed {self.counts['Completed']}  "
                      f"failed {self.counts['Failed']}  stopped {self.counts['Stopped']}  "
                      f"best {best}")
        parts = [progress, counts]
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
