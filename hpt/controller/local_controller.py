"""The local controller: a tuning job on this machine, driven by hpt itself.

One thread per running training job drives it through the runtime protocol (start, advance, stop);
this thread (the launcher's) owns every decision, in the order Ray Tune's controller makes them: the
searcher proposes, the stoppers and the scheduler judge each result, the recorder writes the
journal. The scheduler speaks hpt's protocol (hpt/schedule/scheduler_protocol.py; Tune's ASHA
through its adapter), the trials' threads report typed events (hpt/controller/trial_events.py). What
Tune adds for a cluster (a trial actor, result round trips, experiment checkpoints) is not needed on
one machine, and it was most of the cost of a short trial. hpt/controller/__init__.py says when this
controller runs.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpt.controller.slots import Grant, SlotPool
from hpt.core.schema import Key
from hpt.runtime.artifacts import attempt_folder
from hpt.runtime.job_protocol import JobContext, Slot, TrialAssignment
from hpt.experiment.job_state import INTERRUPTED, MAX_RUNTIME_EXCEEDED, STOP_REQUESTED
from hpt.controller.trial_events import (DriveFailed, JobEnded, JobStopped, PointReported,
                                         TrialEvent)
from hpt.schedule.promotion import RUNG, is_paused, paused_record, result_of_row, seed_ledger
from hpt.schedule.scheduler_protocol import Decision, TrialScheduler
from hpt.search.searcher import FINISHED
from hpt.core.trial import (EARLY_STOPPED, MAX_RETRIES, STATUS, FailureCategory, FailureReason,
                       TrialStatus, final_result, job_ended, point_result)

# How long a job's thread waits on it before it looks for a stop request.
STOP_POLL_SECONDS = 0.2
# How long the launcher waits for an event before it checks the job's stop conditions.
CONTROL_POLL_SECONDS = 0.2
# The ends of a tuning job that its --resume continues: paused trials stay paused for it.
RESUMABLE_ENDS = (STOP_REQUESTED, INTERRUPTED, MAX_RUNTIME_EXCEEDED)


@dataclass(eq=False)
class Trial:
    """One trial: its id (the scheduler's and the searcher's), and its running state."""

    trial_id: str
    config: dict[str, Any]
    grant: Grant
    last_result: dict[str, Any] = field(default_factory=dict)
    failures: int = 0
    stop_reason: FailureReason | None = None  # set by the launcher, acted on by its thread
    placement: str | None = None  # where its job runs, for the live view
    thread: threading.Thread | None = None
    # Set once the launcher has judged the job's last data point: like a Tune trainable
    # between two steps, the job's thread reads no further until then (its output waits
    # in the log pump), so a stop decided at step t finds the job as it was at t.
    judged: threading.Event = field(default_factory=threading.Event)
    # Promotion mode: the rung its current run ends at, and its record when it paused there.
    level: int | None = None
    paused_record: dict[str, Any] | None = None


class LocalController:
    def __init__(self, spec, trial_spec, runtime, settings: dict[str, Any], root: Path,
                 searcher, scheduler: TrialScheduler | None, control, recorder, trials: int,
                 pool: SlotPool):
        """`scheduler`: hpt's (hpt.schedule.scheduler.local_scheduler), or None (no early
        stopping)."""
        self.spec, self.trial_spec, self.runtime = spec, trial_spec, runtime
        self.settings, self.root = dict(settings), Path(root)
        self.searcher, self.scheduler = searcher, scheduler
        self.control, self.recorder = control, recorder
        self.trials, self.pool = trials, pool
        self.running: dict[str, Trial] = {}
        # Promotion mode (hpt/schedule/promotion.py): trials that ended at a rung, by id.
        self.promotion = scheduler if scheduler is not None and scheduler.promotes else None
        self.paused: dict[str, Trial] = {}
        self.asked = 0
        self.finished = False
        self.events: queue.Queue[TrialEvent] = queue.Queue()
        self._ids = itertools.count(1)
        trainer = trial_spec.trainer
        (need,) = runtime.bundles(trainer)  # what one trial holds here (one host)
        self.cpus, self.gpus = need.get("CPU", 0), trainer.gpus_per_host
        self.slot_cpus = max(1, math.ceil(trainer.cpus_per_host))  # what its contract says

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                if self.control.stop_all():
                    break
                self._start_trials()
                if not self.running and (self.finished or self.asked >= self.trials):
                    break
                try:
                    event = self.events.get(timeout=CONTROL_POLL_SECONDS)
                except queue.Empty:
                    continue
                self._handle(event)
        finally:
            self._stop_all()
            self._end_paused()

    def _start_trials(self) -> None:
        while len(self.running) < self.spec.limits.max_parallel:
            promoted = self._next_promotion()
            if promoted is None and (self.finished or self.asked >= self.trials):
                return
            grant = self.pool.acquire(self.cpus, self.gpus)
            if grant is None:
                return
            if promoted is not None:
                self._promote(*promoted, grant)
                continue
            trial_id = f"{next(self._ids):05d}"
            config = self.searcher.suggest(trial_id)
            if config is None or config == FINISHED:
                self.pool.release(grant)
                self.finished = True
                return
            self.asked += 1
            trial = Trial(trial_id, config, grant)
            if self.promotion is not None:
                self._set_level(trial, self.promotion.level_of(config))
            if self.scheduler is not None:
                self.scheduler.trial_added(trial_id, trial.config)
            self.running[trial_id] = trial
            self._launch(trial)

    # -- promotion mode ------------------------------------------------------------------

    def _set_level(self, trial: Trial, level: int) -> None:
        trial.level = level
        trial.config = {**trial.config, "budget": self.promotion.budget(level)}

    def _next_promotion(self) -> tuple[str, int] | None:
        if self.promotion is None or not self.paused:
            return None
        exhausted = (self.finished or self.asked >= self.trials) and not self.running
        return self.promotion.next_promotion(eligible=set(self.paused), exhausted=exhausted)

    def _promote(self, trial_id: str, level: int, grant: Grant) -> None:
        """A paused trial runs again to the next rung, from its checkpoint, as the same
        training job (a new attempt folder; attempt_dir carries the checkpoint over)."""
        trial = self.paused.pop(trial_id)
        self.promotion.promoted(trial_id, trial.level)
        promoted_from = trial.level
        self._set_level(trial, level)
        trial.grant, trial.stop_reason, trial.paused_record = grant, None, None
        trial.failures = 0
        self.running[trial_id] = trial
        self._launch(trial, promoted_from=promoted_from)

    def _rung_reached(self, trial: Trial, record) -> Decision:
        """Promotion mode: a run that completed tells the scheduler its rung's value, and
        pauses there (PAUSE) or completes the trial at the last rung; else CONTINUE."""
        if self.promotion is None or record.status is not TrialStatus.COMPLETED:
            return Decision.CONTINUE
        return self.promotion.rung_reached(trial.trial_id, trial.level, record.objective_value,
                                           record.final_metrics)

    def _pause(self, trial: Trial, record) -> None:
        self.running.pop(trial.trial_id, None)
        self.pool.release(trial.grant)
        paused = paused_record(record.to_json(), trial.level, self.promotion.ledger,
                               self.promotion)
        trial.paused_record = paused
        self.paused[trial.trial_id] = trial
        self.recorder.trial_paused(paused, trial.level)

    def _end_paused(self) -> None:
        """The tuning job is over: a trial still paused was not promoted, and ends Stopped by
        early stopping (its rung's model kept). A job stopped to be resumed keeps them
        paused: its resume may promote them."""
        if self.control.end_reason in RESUMABLE_ENDS:
            return
        for trial in list(self.paused.values()):
            self._complete(trial, {**trial.last_result, STATUS: str(TrialStatus.STOPPED)})
            self.recorder.trial_ended({**trial.paused_record, "status": str(TrialStatus.STOPPED),
                                       Key.FAILURE_REASON: EARLY_STOPPED.text()})
        self.paused.clear()

    def seed_paused(self, rows: list[dict[str, Any]]) -> None:
        """A resumed job's paused trials and rung history, from its kept rows."""
        if self.promotion is None:
            return
        for row in rows:
            trial_id = seed_ledger(self.promotion.ledger, row)
            if trial_id is not None and is_paused(row):
                config = {Key.TRIAL_NUMBER: row[Key.TRIAL_NUMBER],
                          Key.TRAINING_JOB_NAME: row[Key.TRAINING_JOB_NAME],
                          "hyperparameters": dict(row[Key.HYPERPARAMETERS])}
                trial = Trial(trial_id, config, grant=None, level=int(row[RUNG]),
                              paused_record=dict(row), last_result=result_of_row(row))
                self.paused[trial_id] = trial

    def _launch(self, trial: Trial, promoted_from: int | None = None) -> None:
        self.recorder.trial_started(trial.config, promoted_from=promoted_from)
        trial.thread = threading.Thread(target=self._drive, args=(trial,), daemon=True,
                                        name=f"hpt {trial.config[Key.TRAINING_JOB_NAME]}")
        trial.thread.start()

    # -- a trial's thread ----------------------------------------------------------------

    def _drive(self, trial: Trial) -> None:
        """Runs the trial's training job; every event goes to the launcher's queue."""
        put = self.events.put
        job = None
        try:
            job = self._job(trial)
            job.start()
            while True:
                if trial.stop_reason is not None:
                    put(JobStopped(trial, job.stop(trial.stop_reason)))
                    return
                progress = job.advance(wait_seconds=STOP_POLL_SECONDS)
                if progress.point is not None:
                    trial.judged.clear()
                    put(PointReported(trial, point_result(
                        progress.point.value, progress.point.step, trial.placement,
                        progress.objectives)))
                    if self.scheduler is not None:  # without one, every point is CONTINUE
                        trial.judged.wait()
                elif progress.record is not None:
                    put(JobEnded(trial, progress.record))
                    return
        except Exception as exc:  # noqa: BLE001 - hpt's failure: the trial's lost, not the job
            if job is not None:
                job.stop()
            put(DriveFailed(trial, f"{type(exc).__name__}: {exc}"))

    def _job(self, trial: Trial):
        assignment = TrialAssignment.of(trial.config)
        trial_dir = attempt_folder(self.trial_spec, self.root, assignment.training_job_name)
        slot = Slot(ip="127.0.0.1", num_cpus=self.slot_cpus, gpu_ids=trial.grant.gpu_ids)
        context = JobContext(self.trial_spec, assignment, trial_dir, self.settings, slot)
        trial.placement = self.runtime.placement(context)
        return self.runtime.job(context)

    # -- the launcher's decisions, in Ray Tune's order -----------------------------------

    def _handle(self, event: TrialEvent) -> None:
        trial = event.trial
        if self.running.get(trial.trial_id) is not trial:
            trial.judged.set()
            return  # a late event of a trial already ended
        if isinstance(event, PointReported):
            self._on_point(trial, event.result)
        elif isinstance(event, JobEnded) and event.record.infrastructure_failure:
            self._on_lost(trial, event.record.failure_reason)
        elif isinstance(event, JobEnded):
            self._on_record(trial, event.record)
        elif isinstance(event, JobStopped):
            self._end(trial, event.record.to_json())
        elif isinstance(event, DriveFailed):
            self._on_lost(trial, event.error)

    def _on_record(self, trial: Trial, record) -> None:
        result = final_result(record)
        self.control(trial.trial_id, result)
        trial.last_result = result
        if self._rung_reached(trial, record) is Decision.PAUSE:
            self._pause(trial, record)
            return
        self._complete(trial, result)
        self._end(trial, record.to_json())

    def _on_point(self, trial: Trial, result: dict) -> None:
        self.control(trial.trial_id, result)
        # PAUSE is promotion mode's, at a rung's end: on a result only STOP acts.
        decision = Decision.CONTINUE if self.scheduler is None else \
            self.scheduler.on_result(trial.trial_id, result)
        if decision is not Decision.STOP:
            self.searcher.on_trial_result(trial.trial_id, result)
        self.recorder.trial_progress(trial.config, result)
        trial.last_result = result
        if decision is Decision.STOP and trial.stop_reason is None:
            self._complete(trial, result)
            trial.stop_reason = EARLY_STOPPED  # its thread stops it; its record follows
        trial.judged.set()

    def _complete(self, trial: Trial, result: dict) -> None:
        if self.scheduler is not None:
            self.scheduler.trial_completed(trial.trial_id, result)
        self.searcher.on_trial_complete(trial.trial_id, result=result)

    def _on_lost(self, trial: Trial, error: str) -> None:
        """hpt's or the machine's failure, not the script's: run the job again, twice at
        most, then it ends Failed (InternalServerError)."""
        trial.thread.join()
        trial.failures += 1
        if trial.failures <= MAX_RETRIES and trial.stop_reason is None:
            self.recorder.trial_retried(trial.config, error)
            self._launch(trial)
            return
        if self.scheduler is not None:
            self.scheduler.trial_failed(trial.trial_id)
        self.searcher.on_trial_complete(trial.trial_id, error=True)
        reason = FailureReason(FailureCategory.INTERNAL_SERVER_ERROR, error)
        self._end(trial, self.recorder.record_of(trial.config, trial.last_result,
                                                 TrialStatus.FAILED, reason))

    def _end(self, trial: Trial, record: dict) -> None:
        self.running.pop(trial.trial_id, None)
        self.pool.release(trial.grant)
        self.recorder.trial_ended(record)

    # -- the end -------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Stops every running job (the tuning job ended: a stop, a completion criterion, its
        deadline, or the launcher's own failure). As with Ray Tune, the searcher and scheduler
        are not told of a stopped job; the recorder gets each job's own Stopped record (a job
        that completed meanwhile counts as completed)."""
        reason = job_ended(self.control.end_reason) if self.control.end_reason else \
            FailureReason(FailureCategory.JOB_ENDED, "the launcher stopped")
        for trial in self.running.values():
            if trial.stop_reason is None:
                trial.stop_reason = reason
            trial.judged.set()
        deadline = time.time() + 60
        while self.running and time.time() < deadline:
            try:
                event = self.events.get(timeout=CONTROL_POLL_SECONDS)
            except queue.Empty:
                continue
            trial = event.trial
            if self.running.get(trial.trial_id) is not trial:
                continue
            if isinstance(event, JobEnded) and not event.record.infrastructure_failure:
                self._on_record(trial, event.record)
            elif isinstance(event, (JobEnded, JobStopped)):
                self._end(trial, event.record.to_json())
            elif isinstance(event, DriveFailed):
                self._end(trial, self.recorder.record_of(
                    trial.config, trial.last_result, TrialStatus.STOPPED, reason))
