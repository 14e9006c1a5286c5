"""What hpt observes of a training job, wherever it runs: the one core every runtime's job is.

Modelled on Syne Tune's `TrialBackend`: this base keeps the bookkeeping, a runtime's job
(a subclass) implements only how the job executes. The bookkeeping, for every runtime alike:
the metric definitions applied to the job's output (core/metric_parser.py), the values a
script pushes to its metrics file (runtime/pushed_metrics.py), every data point appended to
the attempt folder's `metrics.jsonl` (what `hpt.load_metrics`, the plots, TensorBoard and
MLflow read), the objective streamed point by point to whoever drives the job (early
stopping), trainer.max_runtime_seconds, an objective that never appeared, a stop, and the
one `TrainingJobRecord`.

What a runtime's job implements (the hooks, each said below):

    _execute()         start it (log file, processes, containers, an API call)
    _lines(timeout)    its next output lines (algo-1's); [] for none yet, None once it ended
    _failed()          while it streams: a part of it that failed (another host), or None
    _exit(deadline)    once its output ended: how it ended
    _halt()            stop it now, and how it ended
    _artifact()        a Completed job's model: a path or an s3:// URI
    _close()           release what it holds (called once, when the record is built)
    _placement()       where it ran (hosts, CPUs, GPUs)
    _output_tail()     its last output lines, for a reason
and the attributes `log_path` (algo-1's log), `output_name` (where the objective is looked
for, in words) and, where the runtime stops a job at its MaxRuntime itself,
`enforces_max_runtime = True`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from hpt.core.metric_parser import MetricParser, MetricPoint
from hpt.core.sagemaker_names import LEAD_HOST
from hpt.core.schema import File
from hpt.core.trial import (EARLY_STOPPED, FailureCategory, FailureReason, TrainingJobRecord,
                            TrialStatus, never_matched)
from hpt.experiment.data_points import point_line, read_points
from hpt.runtime.job_protocol import Progress, TrialAssignment
from hpt.runtime.pushed_metrics import PUSHED_POLL_SECONDS, PushedMetricsTail, PushedValue

# The longest a wait for output lasts before the deadline and the other checks are looked at.
LINE_WAIT_SECONDS = 0.5
# How often the job's folder is looked at for a stop asked for this one job (StopTrainingJob).
STOP_LOOK_SECONDS = 0.5


@dataclass(frozen=True)
class Exit:
    """How a job's execution ended, as its runtime saw it. COMPLETED means it ran to its end
    without an error; whether its objective appeared is the core's to say."""

    status: TrialStatus
    reason: FailureReason | None = None
    exit_code: int | None = None  # None: the code at the stop that followed, if any
    final_metrics: dict[str, float] = field(default_factory=dict)  # the runtime's own
    start_time: float | None = None  # the runtime's own times (SageMaker's), else hpt's
    end_time: float | None = None


@dataclass(frozen=True)
class Placement:
    """Where a job ran, for its record."""

    hosts: list[str]
    num_cpus: int = 1
    gpu_ids: list[str] = field(default_factory=list)


class ObservedJob:
    """One trial as a training job: `start()`, `advance()` until the record, `stop()` at any
    time (the protocol of runtime/job_protocol.py). Subclasses implement the hooks of this module's
    docstring; `pushed` is the tail of the script's metrics file where the runtime has one."""

    log_path: Path
    output_name: str = "the job's output"
    enforces_max_runtime = False
    pushed: PushedMetricsTail | None = None

    def __init__(self, spec, assignment: TrialAssignment, trial_dir: Path):
        self.spec = spec
        self.assignment = assignment
        self.trial_dir = Path(trial_dir)
        self.parser = MetricParser([(m.name, m.regex) for m in spec.metric_definitions])
        # None for a training job on its own (TrainingJobSpec): nothing streams
        self.objective_name = spec.objective.metric if spec.objective else None
        # Every objective must appear for the job to complete (the first one streams).
        self.objective_names = [o.metric for o in spec.all_objectives]
        self.start_time = 0.0  # set by `_execute` when the job itself begins
        self.resumed_from_step: int | None = None
        # objective points not yet handed out, with every objective's latest value then
        self._pending: list[tuple[MetricPoint, dict[str, float] | None]] = []
        self._pushed_queue: deque[PushedValue] = deque()  # read, not yet taken
        self._next_push_read = 0.0
        self._metrics_file = None
        self._record: TrainingJobRecord | None = None
        self._output_ended = False
        self._stop_reason: FailureReason | None = None
        self._deadline = math.inf
        self._start_called = 0.0
        self._launch_seconds: float | None = None
        self._ending_since: float | None = None  # the decision to stop, or the output's end
        self._next_stop_look = 0.0
        self._next_flush = 0.0

    # -- the protocol ----------------------------------------------------------------------

    def start(self) -> None:
        self._start_called = time.time()
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        self._resume_from_carried()
        self._metrics_file = open(self.trial_dir / File.METRICS, "a", buffering=1 << 16)
        failed = self._execute()
        if self.start_time:  # it began: hpt's launch cost is known, the deadline runs
            self._launch_seconds = time.time() - self._start_called
            if not self.enforces_max_runtime:
                self._deadline = self.start_time + self.spec.trainer.max_runtime_seconds
        if failed is not None:
            if self.start_time:
                self._stop_now()
            self._finish(failed)

    def advance(self, wait_seconds: float | None = None) -> Progress:
        """Blocks until the next objective data point or the end of the job (or, with
        `wait_seconds`, until that long passed: an empty Progress)."""
        if self._record is not None:
            return Progress(record=self._record)
        give_up = None if wait_seconds is None else time.time() + wait_seconds
        while True:
            if self._pending:
                point, objectives = self._pending.pop(0)
                return Progress(point=point, objectives=objectives)
            if self._take_pushed(time.time(), read=False):
                continue
            if self._output_ended:
                return Progress(record=self._finish(self._exit(self._deadline)))
            now = time.time()
            if now >= self._deadline:
                return Progress(record=self._stop_for(self._max_runtime_exceeded()))
            if now >= self._next_stop_look:
                self._next_stop_look = now + STOP_LOOK_SECONDS
                asked = self._stop_asked()
                if asked is not None:
                    return Progress(record=self.stop(asked))
            failed = self._failed()
            if failed is not None:
                return Progress(record=self._stop_for(failed))
            if self.pushed is not None and now >= self._next_push_read:
                self._next_push_read = now + PUSHED_POLL_SECONDS
                if self._take_pushed(now):
                    continue
            wait = min(LINE_WAIT_SECONDS, self._deadline - now,
                       PUSHED_POLL_SECONDS if self.pushed is not None else math.inf)
            if give_up is not None:
                if now >= give_up:
                    return Progress()
                wait = min(wait, give_up - now)
            lines = self._lines(wait)
            if lines is None:
                self._ending_since = time.time()
                self._output_ended = True
                self._take_pushed(self._ending_since)  # what it wrote last
                continue
            self._feed(lines)

    def stop(self, reason: FailureReason = EARLY_STOPPED) -> TrainingJobRecord:
        """Stops the job (early stopping, user stop); status Stopped, last metrics kept."""
        if self._record is None:
            self._stop_reason = reason
            self._finish(self._stop_now())
        return self._record

    # -- metrics ---------------------------------------------------------------------------

    def _resume_from_carried(self) -> None:
        """An attempt that starts with an earlier one's checkpoints (attempt_dir carried them,
        with its data points) counts its objective steps on from there."""
        carried = read_points(self.trial_dir / File.METRICS)
        self.parser.resume(carried)
        self.resumed_from_step = self._objective_steps() if carried else None

    def _feed(self, lines) -> None:
        """Output lines (with .text and .timestamp) through the metric definitions."""
        for line in lines:
            self._take(self.parser.feed(line.text, line.timestamp))

    def _take_pushed(self, now: float, read: bool = True) -> bool:
        """Takes the values the script appended to its metrics file (read since the last look
        when `read`) up to the next objective point, so that a job stopped at a step counts
        that step, as with log lines; whether one is pending."""
        if read and self.pushed is not None:
            self._pushed_queue.extend(self.pushed.read(now))
        while self._pushed_queue and not self._pending:
            value = self._pushed_queue.popleft()
            point = self.parser.push(value.metric, value.value, value.timestamp)
            self._take([point] if point is not None else [])
        return bool(self._pending)

    def _take(self, points: list[MetricPoint]) -> None:
        streamed = []
        for point in points:
            if self._metrics_file is not None:
                self._metrics_file.write(point_line(point))
            if point.name == self.objective_name:
                if self._metrics_file is not None:
                    # On disk at each step: a retry resumes from the steps written here.
                    self._metrics_file.flush()
                streamed.append(point)
        if streamed:
            # Taken once the batch (a line's, or a push's) is read: a line that prints every
            # objective gives each its value of that step.
            latest = self._latest_objectives()
            self._pending.extend((point, latest) for point in streamed)
        if points and self.objective_name is None and self._metrics_file is not None and \
                time.time() >= self._next_flush:
            # No objective to flush on (a training job on its own): once a second, so that
            # a job killed with its server keeps its points
            self._metrics_file.flush()
            self._next_flush = time.time() + 1.0

    # -- ending ----------------------------------------------------------------------------

    def _stop_now(self) -> Exit:
        if self._ending_since is None:  # teardown time starts at the decision to stop
            self._ending_since = time.time()
        return self._halt()

    def _stop_for(self, failure: Exit) -> TrainingJobRecord:
        """Stops what is left of the job and ends it with `failure` (its exit code, or the
        code the stop found)."""
        stopped = self._stop_now()
        code = failure.exit_code if failure.exit_code is not None else stopped.exit_code
        return self._finish(replace(failure, exit_code=code))

    def _latest_objectives(self) -> dict[str, float] | None:
        """Every objective's latest value, with several objectives (multi-objective early
        stopping ranks by them); None with one."""
        if len(self.objective_names) < 2:
            return None
        series = self.parser.series
        return {name: series[name].final for name in self.objective_names
                if name in series and series[name].final is not None}

    def _objective_steps(self) -> int:
        series = self.parser.series.get(self.objective_name)
        return len(series.points) if series is not None else 0

    def _stop_asked(self) -> FailureReason | None:
        """A stop asked for this training job alone (its folder's stop-requested file, which
        StopTrainingJob writes): the job ends Stopped, the tuning job goes on, and a resume
        does not run it again. The file's first line says who asked."""
        try:
            asked = (self.trial_dir / File.STOP_REQUESTED).read_text().strip()
        except OSError:
            return None
        return FailureReason(FailureCategory.STOP_REQUESTED,
                             asked.splitlines()[0] if asked else "a stop was asked for")

    def _max_runtime_exceeded(self) -> Exit:
        limit = self.spec.trainer.max_runtime_seconds
        return Exit(TrialStatus.FAILED, FailureReason(
            FailureCategory.MAX_RUNTIME_EXCEEDED, f"the training job ran longer than "
            f"trainer.max_runtime_seconds={limit} and was stopped"))

    def _never_matched(self, metric: str) -> FailureReason:
        series, tail = self.parser.series[metric], self.pushed
        pushed = tail.describe() if tail is not None and (
            series.regex is None or tail.lines_read) else None
        return never_matched(metric, series.regex, self.output_name,
                             list(self._output_tail()), pushed)

    def _finish(self, exit: Exit) -> TrainingJobRecord:
        status, reason = exit.status, exit.reason
        if status is TrialStatus.STOPPED:
            reason = self._stop_reason or EARLY_STOPPED
        final = {**self.parser.final_values(), **exit.final_metrics}
        artifact = None
        if status is TrialStatus.COMPLETED:
            missing = next((n for n in self.objective_names if final.get(n) is None), None)
            if missing is not None:
                status, reason = TrialStatus.FAILED, self._never_matched(missing)
            else:
                artifact = self._artifact()
        end = exit.end_time or time.time()
        self._close()
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        self._record = self._record_of(status, reason, final, exit, artifact, end)
        return self._record

    def _record_of(self, status: TrialStatus, reason: FailureReason | None,
                   final: dict[str, float], exit: Exit, artifact: str | None,
                   end: float) -> TrainingJobRecord:
        place = self._placement()
        return TrainingJobRecord(
            trial_number=self.assignment.trial_number,
            training_job_name=self.assignment.training_job_name,
            hyperparameters=dict(self.assignment.hyperparameters),
            status=status,
            failure=reason,
            objective_value=final.get(self.objective_name)
            if status is not TrialStatus.FAILED else None,
            final_metrics=final,
            objective_steps=self._objective_steps(),
            start_time=exit.start_time or self.start_time or end,
            end_time=end,
            exit_code=exit.exit_code,
            log_path=str(self.log_path),
            model_artifact=artifact,
            hosts=list(place.hosts),
            num_cpus=place.num_cpus,
            gpu_ids=list(place.gpu_ids),
            queue_wait_seconds=_seconds(self.assignment.suggested_at, self._start_called),
            launch_seconds=_round(self._launch_seconds),
            teardown_seconds=_seconds(self._ending_since, time.time()),
            resumed_from_step=self.resumed_from_step,
        )

    # -- the hooks: how the job executes (a runtime's part) --------------------------------

    def _execute(self) -> Exit | None:
        """Starts the job and sets `start_time` once it began; an Exit (Failed) when it
        could not start (what did start is then stopped through `_halt`)."""
        raise NotImplementedError

    def _lines(self, timeout: float) -> list | None:
        """Output lines (.text, .timestamp) that came within `timeout` seconds; [] for none,
        None once the output ended (the job's main process is done)."""
        raise NotImplementedError

    def _failed(self) -> Exit | None:
        """While the output streams: a failure elsewhere in the job (another host, hpt's own
        log), to be ended with; None while all is well."""
        return None

    def _exit(self, deadline: float) -> Exit:
        """Once the output ended: how the job ended (waiting for its other parts until
        `deadline` at most)."""
        raise NotImplementedError

    def _halt(self) -> Exit:
        """Stops the job now (a job that already ended: how it ended)."""
        raise NotImplementedError

    def _artifact(self) -> str | None:
        return None

    def _close(self) -> None:
        pass

    def _placement(self) -> Placement:
        return Placement(hosts=[LEAD_HOST])

    def _output_tail(self) -> list[str]:
        return []


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _seconds(since: float | None, until: float) -> float | None:
    return _round(max(0.0, until - since)) if since and until else None
