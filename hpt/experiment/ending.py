"""The end of a run of a tuning job, in its journal: the training jobs it leaves unfinished
get their record, so nothing is silent (they run again first when the job is resumed)."""

from __future__ import annotations

import time

from hpt.experiment.store import ExperimentStore, read_journal
from hpt.experiment.table import trial_rows
from hpt.core.trial import TrainingJobRecord, TrialStatus, job_ended


def hosts_of(spec) -> list[str]:
    return [f"algo-{i + 1}" for i in range(spec.trainer.instance_count)]


def close_unfinished(store: ExperimentStore, spec, end_reason: str) -> list[TrainingJobRecord]:
    """Trials the journal shows as started but never ended get a Stopped record: nothing
    silent. (They run again first when the job is resumed.) Returns those records."""
    closed = []
    for row in trial_rows(list(read_journal(store.journal_path))):
        if row["status"] == TrialStatus.IN_PROGRESS:
            record = TrainingJobRecord.ended(
                trial_number=row["trial_number"], training_job_name=row["training_job_name"],
                hyperparameters=row["hyperparameters"], status=TrialStatus.STOPPED,
                failure=job_ended(end_reason), objective_value=row.get("objective_value"),
                objective_metric=spec.objective.metric,
                objective_steps=row.get("objective_steps") or 0,
                start_time=row["start_time"], end_time=time.time(),
                log_path=row.get("log_path") or "", hosts=hosts_of(spec))
            store.append("trial_ended", training_job_name=row["training_job_name"],
                         record=record.to_json())
            closed.append(record)
    return closed
