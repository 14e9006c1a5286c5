"""The end of a run of a tuning job, in its journal: the training jobs it leaves unfinished
get their record, so nothing is silent (they run again first when the job is resumed)."""

from __future__ import annotations

import time

from hpt.core.schema import Event, Key
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
        if row[Key.STATUS] == TrialStatus.IN_PROGRESS:
            record = TrainingJobRecord.ended(
                trial_number=row[Key.TRIAL_NUMBER], training_job_name=row[Key.TRAINING_JOB_NAME],
                hyperparameters=row[Key.HYPERPARAMETERS], status=TrialStatus.STOPPED,
                failure=job_ended(end_reason), objective_value=row.get(Key.OBJECTIVE_VALUE),
                objective_metric=spec.objective.metric,
                objective_steps=row.get(Key.OBJECTIVE_STEPS) or 0,
                start_time=row[Key.START_TIME], end_time=time.time(),
                log_path=row.get(Key.LOG_PATH) or "", hosts=hosts_of(spec))
            store.append(Event.TRIAL_ENDED, training_job_name=row[Key.TRAINING_JOB_NAME],
                         record=record.to_json())
            closed.append(record)
    return closed
