"""`hpt rerun NAME TRAINING_JOB`: one training job of a tuning job, run again alone.

The same frozen spec, the same hyperparameters, the same training job name (so the same
hyperparameters.json and environment): only the folder differs,
`<experiment>/reruns/<training-job>-<k>/`. No Ray: the job runs as local processes here.
"""

from __future__ import annotations

import json
import math
import shutil

from hpt.core.errors import UserError
from hpt.core.schema import Key
from hpt.experiment.lock import WriterLock
from hpt.experiment.store import JOURNAL, SPEC, read_journal
from hpt.experiment.table import resolve_experiment, trial_rows
from hpt.runtime.job_protocol import JobContext, Slot, TrialAssignment
from hpt.runtime.runtimes import RUNTIMES
from hpt.core.trial import TrainingJobRecord
from hpt.core.redaction import restore_env
from hpt.spacefile import Spec


def find_training_job(rows: list[dict], wanted: str) -> dict:
    """By full name, or by trial number (`7`)."""
    for row in rows:
        if row[Key.TRAINING_JOB_NAME] == wanted or str(row[Key.TRIAL_NUMBER]) == wanted:
            return row
    names = ", ".join(r[Key.TRAINING_JOB_NAME] for r in rows[:5])
    raise UserError(f"no training job {wanted!r} in this tuning job (e.g. {names}); pass a "
                    f"TrainingJobName or a TrialNumber from `hpt report`")


def rerun(name: str, wanted: str, experiments_dir=None, gpu_ids: tuple[str, ...] = (),
          on_point=None) -> TrainingJobRecord:
    """Runs the training job again and returns its record; `on_point` sees each objective value."""
    root = resolve_experiment(name, experiments_dir)
    frozen = json.loads((root / SPEC).read_text())
    environment, missing = restore_env(frozen["trainer"].get("environment") or {})
    if missing:
        raise UserError(f"{root / SPEC}: trainer.environment {missing} were redacted when the "
                        f"job was launched (secrets are never stored); export them in this "
                        f"shell and run hpt rerun again")
    frozen["trainer"]["environment"] = environment
    spec = Spec.from_frozen_dict(frozen)
    if spec.trainer.instance_count > 1 or not RUNTIMES[spec.runtime].host_actors:
        raise UserError(f"{name}: hpt rerun runs single-host training jobs here (local "
                        f"processes or a container); this one has instance_count "
                        f"{spec.trainer.instance_count} on runtime {spec.runtime} (launch a "
                        f"copy of the space with max_trials 1 and these hyperparameters "
                        f"instead)")
    row = find_training_job(trial_rows(list(read_journal(root / JOURNAL))), wanted)
    with WriterLock(root, "rerun"):  # never beside a launcher writing the same job
        return _run(spec, row, root / "reruns", gpu_ids, on_point)


def _run(spec: Spec, row: dict, reruns, gpu_ids, on_point) -> TrainingJobRecord:
    k = 1 + sum(1 for _ in reruns.glob(f"{row[Key.TRAINING_JOB_NAME]}-*")) if reruns.is_dir() else 1
    trial_dir = reruns / f"{row[Key.TRAINING_JOB_NAME]}-{k}"
    trial_dir.mkdir(parents=True)
    assignment = TrialAssignment(row[Key.TRIAL_NUMBER], row[Key.TRAINING_JOB_NAME],
                                 dict(row[Key.HYPERPARAMETERS]))
    # The job's own runtime builds it (a container for runtime: docker), as in the tuning job.
    slot = Slot(num_cpus=max(1, math.ceil(spec.trainer.cpus_per_host)), gpu_ids=tuple(gpu_ids))
    try:
        job = RUNTIMES[spec.runtime].job(JobContext(spec, assignment, trial_dir, {}, slot))
        job.start()
    except BaseException:
        shutil.rmtree(trial_dir, ignore_errors=True)  # no empty rerun folder left behind
        raise
    try:
        while True:
            progress = job.advance()
            if progress.record is not None:
                return progress.record
            if on_point is not None:
                on_point(progress.point)
    finally:
        job.stop()  # a no-op once it ended; an interrupted rerun leaves no process
