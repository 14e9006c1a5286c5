"""A tuning job's trial events -> its journal, table, live view and Ray metrics.

The launching process is the single writer of the experiment folder: the controller that runs the
trials (hpt/controller/local_controller.py, or Ray Tune through hpt/controller/tune/callbacks.py)
reports each event here as it happens. The journal is the record (appended at once); the table is a
view of it, rebuilt while trials stream at a pace that keeps its cost a small share of the job.
"""

from __future__ import annotations

import time

from hpt.core.sagemaker_names import LEAD_LOG
from hpt.core.schema import Event, Key
from hpt.live.ray_metrics import TuningJobMetrics
from hpt.experiment.best import BestSoFar
from hpt.experiment.checkpoints import has_checkpoint
from hpt.experiment.ending import hosts_of
from hpt.experiment.store import ExperimentStore
from hpt.experiment.table import rebuild_table
from hpt.core.objectives import unmet
from hpt.core.trial import (OBJECTIVE, OBJECTIVE_STEP, PLACEMENT, STATUS, FailureReason,
                       TrainingJobRecord, TrialStatus)
from hpt.live.view import LaunchView

# The table is rebuilt at most this often while trials end...
TABLE_REFRESH_SECONDS = 2.0
# ...and, as it grows, never more often than this many times its last rebuild's duration:
# a job of 10 000 short trials spends at most ~10% of the launcher's time on its table.
TABLE_REFRESH_FACTOR = 10.0


class TrialRecorder:
    """Records trial events; keeps the best training job of the tuning job (`best`: seeded
    with the rows a resumed job kept)."""

    def __init__(self, store: ExperimentStore, spec, view: LaunchView, artifacts=None,
                 kept: tuple[dict, ...] = ()):
        self.store = store
        self.spec = spec
        self.view = view
        self.artifacts = artifacts  # the artifact uploader (output: s3://...), if any
        self.started: dict[str, float] = {}
        frozen = spec.to_frozen_dict()
        # The best by the tuning job's one rule, from the rows a resumed job kept (as the
        # view's and the Ray metrics').
        self.best = BestSoFar.of(frozen).seeded(kept)
        self.metrics = TuningJobMetrics(spec.name, BestSoFar.of(frozen), kept)
        self._table_due = 0.0
        self.ray_session = None  # the Ray this run is connected to, once it is

    def trial_started(self, config: dict, promoted_from: int | None = None,
                      continued: bool = False) -> None:
        """`promoted_from`: promotion mode's rung the trial was paused at; `continued`: Ray
        Tune resumes a trial it paused (PBT). Either way the same training job goes on (not a
        retry), with the config's hyperparameters and `budget`."""
        name = config[Key.TRAINING_JOB_NAME]
        self.started[name] = time.time()
        extra = {"budget": config["budget"]} if config.get("budget") else {}
        if promoted_from is not None:
            extra[Key.PROMOTED_FROM] = promoted_from
        if continued or promoted_from is not None:
            extra["continued"] = True
        self.store.append(Event.TRIAL_STARTED, trial_number=config[Key.TRIAL_NUMBER],
                          training_job_name=name, hyperparameters=config["hyperparameters"],
                          log_path=str(self.store.root / name / LEAD_LOG), **extra)
        self.view.trial_started(name)
        self.metrics.started()
        if self.artifacts is not None:
            self.artifacts.started(name)

    def trial_progress(self, config: dict, result: dict) -> None:
        """An objective data point (a result without a status; a final one is ignored)."""
        if STATUS in result or OBJECTIVE not in result:
            return
        name = config[Key.TRAINING_JOB_NAME]
        self.store.append(Event.TRIAL_PROGRESS, durable=False, training_job_name=name,
                          value=result[OBJECTIVE], step=result.get(OBJECTIVE_STEP))
        self.view.trial_progress(name, result[OBJECTIVE], result.get(OBJECTIVE_STEP),
                                 result.get(PLACEMENT))

    def trial_retried(self, config: dict, error: str) -> None:
        """The training job runs again (its host or worker was lost); the next
        trial_started event begins the new attempt."""
        name = config[Key.TRAINING_JOB_NAME]
        self.store.append(Event.TRIAL_RETRIED, training_job_name=name, error=str(error)[:1024])
        self.view.print(f"{name}: its Ray worker or host was lost ({str(error)[:200]}); "
                        f"running it again (an infrastructure retry, in the Retries column)")

    def record_of(self, config: dict, last: dict, status: TrialStatus,
                  reason: FailureReason) -> dict:
        """The record of a job whose own record never came (the controller ended it)."""
        name = config[Key.TRAINING_JOB_NAME]
        return TrainingJobRecord.ended(
            trial_number=config[Key.TRIAL_NUMBER], training_job_name=name,
            hyperparameters=config["hyperparameters"], status=status, failure=reason,
            objective_value=last.get(OBJECTIVE), objective_metric=self.spec.objective.metric,
            objective_steps=last.get(OBJECTIVE_STEP, 0),
            start_time=self.started.get(name, time.time()), end_time=time.time(),
            log_path=str(self.store.root / name / LEAD_LOG),
            hosts=hosts_of(self.spec)).to_json()

    def trial_exploited(self, recipient: dict, donor: dict, step: int | None) -> None:
        """PBT: `recipient` (its new config) restarts from `donor`'s checkpoint at `step`."""
        name, parent = recipient[Key.TRAINING_JOB_NAME], donor[Key.TRAINING_JOB_NAME]
        self.store.append(Event.TRIAL_EXPLOITED, training_job_name=name, parent=parent, step=step,
                          hyperparameters=recipient["hyperparameters"],
                          parent_hyperparameters=donor["hyperparameters"])
        changed = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in recipient["hyperparameters"].items()
                            if donor["hyperparameters"].get(k) != v)
        self.view.print(f"{name}: exploits {parent} at step {step} (its checkpoint), "
                        f"{changed or 'the same values'}")
        if not has_checkpoint(self.store.root / parent):
            self.store.append(Event.TRIAL_EXPLOIT_WITHOUT_CHECKPOINT, training_job_name=name,
                              parent=parent)
            self.view.print(f"{name}: {parent} wrote no checkpoint to /opt/ml/checkpoints, so "
                            f"{name} starts from scratch with the new values; PBT needs a "
                            f"script that checkpoints and resumes (the reference CNN does)")

    def trial_paused(self, record: dict, level: int) -> None:
        """Promotion mode: the trial ended at its rung (`record`: its row, Stopped, Paused);
        it may run again, promoted, as the same training job."""
        name = record[Key.TRAINING_JOB_NAME]
        self.started.pop(name, None)
        self.store.append(Event.TRIAL_PAUSED, training_job_name=name, rung=level, record=record)
        if self.artifacts is not None:  # its checkpoints synced now (no model upload)
            self.artifacts.ended(record)
        self._refresh_table()
        self.view.trial_ended(record, f"paused at rung {level}")

    def trial_ended(self, record: dict) -> None:
        self.started.pop(record[Key.TRAINING_JOB_NAME], None)
        self.metrics.ended(record)
        self.store.append(Event.TRIAL_ENDED, training_job_name=record[Key.TRAINING_JOB_NAME],
                          record=record)
        self.best.offer(record)
        if self.artifacts is not None:
            self.artifacts.ended(record)
        self._refresh_table()
        completed = record[Key.STATUS] == TrialStatus.COMPLETED
        self.view.trial_ended(record, note=self._note(record.get(Key.FINAL_METRICS) or {})
                              if completed else "")

    def _refresh_table(self) -> None:
        began = time.time()
        if began < self._table_due:
            return
        rebuild_table(self.store, self.spec)
        took = time.time() - began
        self._table_due = time.time() + max(TABLE_REFRESH_SECONDS, TABLE_REFRESH_FACTOR * took)

    def _note(self, metrics: dict[str, float]) -> str:
        """What a Completed job's console line adds: the other objectives, the constraints
        it does not meet."""
        others = [f"  {o.metric}={metrics[o.metric]:.6g}" for o in self.spec.all_objectives[1:]
                  if metrics.get(o.metric) is not None]
        missed = unmet(metrics, [c.model_dump() for c in self.spec.constraints])
        return "".join(others) + (f"  infeasible: {', '.join(missed)}" if missed else "")
