"""Ray Tune's trial events -> the tuning job's journal, table, live view and Ray metrics.

The launching process is the single writer of the experiment folder: this callback appends
every trial event as Tune reports it, and rebuilds the table after trials end.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from hpt.dashboard_metrics import TuningJobMetrics
from hpt.experiment.best import BestSoFar
from hpt.experiment.ending import hosts_of
from hpt.experiment.store import ExperimentStore
from hpt.experiment.table import rebuild_table
from hpt.objectives import unmet
from hpt.trial import (EARLY_STOPPED, OBJECTIVE, OBJECTIVE_STEP, PLACEMENT, RECORD, STATUS,
                       FailureCategory, FailureReason, TrainingJobRecord, TrialStatus,
                       job_ended)
from hpt.view import LaunchView

TABLE_REFRESH_SECONDS = 2.0


class JournalCallback(tune.Callback):
    """Tune callback: trial events -> journal, table, live view; it also keeps the best
    training job of the tuning job (`best`: seeded with the rows a resumed job kept)."""

    def __init__(self, store: ExperimentStore, spec, view: LaunchView, control=None,
                 artifacts=None, kept: tuple[dict, ...] = ()):
        self.store = store
        self.spec = spec
        self.view = view
        self.control = control
        self.artifacts = artifacts  # the artifact uploader (output: s3://...), if any
        self.started: dict[str, float] = {}
        maximize = spec.objective.type == "maximize"
        self.metrics = TuningJobMetrics(spec.name, maximize)
        self.best = BestSoFar.of(spec.to_frozen_dict())
        for row in kept:
            self.best.offer(row)
        self._table_due = 0.0

    def __getstate__(self):
        # Tune pickles its config into tuner.pkl for Tuner.restore, which hpt never uses (hpt
        # resumes from its own journal); open files and the terminal are not part of that state.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("store", "view", "control", "metrics", "artifacts", "best")}

    def on_trial_start(self, iteration, trials, trial, **info):
        cfg = trial.config
        name = cfg["training_job_name"]
        self.started[name] = time.time()
        trial_dir = self.store.root / name
        self.store.append("trial_started", trial_number=cfg["trial_number"],
                          training_job_name=name, hyperparameters=cfg["hyperparameters"],
                          log_path=str(trial_dir / "algo-1.log"))
        self.view.trial_started(name)
        self.metrics.started()
        if self.artifacts is not None:
            self.artifacts.started(name)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if STATUS in result or OBJECTIVE not in result:
            return
        name = trial.config["training_job_name"]
        self.store.append("trial_progress", durable=False, training_job_name=name,
                          value=result[OBJECTIVE], step=result.get(OBJECTIVE_STEP))
        self.view.trial_progress(name, result[OBJECTIVE], result.get(OBJECTIVE_STEP),
                                 result.get(PLACEMENT))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get(RECORD):
            self._ended(last[RECORD])
            return
        # Tune stopped it: early stopping, or the end of the whole tuning job.
        ending = self.control.end_reason if self.control is not None else None
        reason = job_ended(ending) if ending else EARLY_STOPPED
        self._ended(self._record_of(trial, last, TrialStatus.STOPPED, reason).to_json())

    def on_trial_recover(self, iteration, trials, trial, **info):
        # Tune runs the training job again (its host or actor was lost): say so, then the
        # next trial_started event begins the new attempt.
        error = _last_error_line(trial)
        name = trial.config["training_job_name"]
        self.store.append("trial_retried", training_job_name=name, error=str(error)[:1024])
        # Ray has just logged the lost actor's traceback: say in one line what hpt does.
        self.view.print(f"{name}: its Ray worker or host was lost ({str(error)[:200]}); "
                        f"running it again (an infrastructure retry, in the Retries column)")

    def on_trial_error(self, iteration, trials, trial, **info):
        # Its actor failed more often than the retries allow: hpt's failure, not the script's.
        reason = FailureReason(FailureCategory.INTERNAL_SERVER_ERROR, _last_error_line(trial))
        record = self._record_of(trial, trial.last_result or {}, TrialStatus.FAILED, reason)
        self._ended(record.to_json())

    def _record_of(self, trial, last: dict, status: TrialStatus,
                   reason: FailureReason) -> TrainingJobRecord:
        cfg = trial.config
        name = cfg["training_job_name"]
        return TrainingJobRecord.ended(
            trial_number=cfg["trial_number"], training_job_name=name,
            hyperparameters=cfg["hyperparameters"], status=status, failure=reason,
            objective_value=last.get(OBJECTIVE), objective_metric=self.spec.objective.metric,
            objective_steps=last.get(OBJECTIVE_STEP, 0),
            start_time=self.started.get(name, time.time()), end_time=time.time(),
            log_path=str(self.store.root / name / "algo-1.log"), hosts=hosts_of(self.spec))

    def _ended(self, record: dict) -> None:
        self.metrics.ended(record["status"], record.get("objective_value"))
        self.store.append("trial_ended", training_job_name=record["training_job_name"],
                          record=record)
        self.best.offer(record)
        if self.artifacts is not None:
            self.artifacts.ended(record)
        # The journal is the record (fsynced above); the table is a view of it, rebuilt at
        # most once per TABLE_REFRESH_SECONDS while trials stream (and always at the end).
        if time.time() >= self._table_due:
            rebuild_table(self.store, self.spec)
            self._table_due = time.time() + TABLE_REFRESH_SECONDS
        metrics = record.get("final_metrics") or {}
        self.view.trial_ended(record["training_job_name"], record["status"],
                              record.get("objective_value"),
                              record["end_time"] - record["start_time"],
                              record.get("failure_reason"), metrics,
                              self._note(metrics) if record["status"] == TrialStatus.COMPLETED
                              else "")

    def _note(self, metrics: dict[str, float]) -> str:
        """What a Completed job's console line adds: the other objectives, the constraints
        it does not meet."""
        others = [f"  {o.metric}={metrics[o.metric]:.6g}" for o in self.spec.all_objectives[1:]
                  if metrics.get(o.metric) is not None]
        missed = unmet(metrics, [c.model_dump() for c in self.spec.constraints])
        return "".join(others) + (f"  infeasible: {', '.join(missed)}" if missed else "")


def _last_error_line(trial) -> str:
    """The exception that ended a trial's actor, from Tune's error file (its last line)."""
    try:
        text = Path(trial.error_file).read_text(errors="replace").strip() if trial.error_file \
            else ""
    except OSError:
        text = ""
    return text.splitlines()[-1] if text else "the trial's Ray actor failed"

