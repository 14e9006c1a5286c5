"""`hpt launch`: a tuning job = Optuna proposes, a controller runs the trials (hpt's own on one
machine, Ray Tune on a cluster), the journal records.

One function per stage: plan the job (fresh, resumed, warm-started), stage its inputs (the
runtime's: S3 channels, the training code SageMaker downloads), record its start, run it
(controller/job_run.py: the warm interpreter, Ray, the study, the controller), finish it (the
jobs left unfinished get their record, the table, the job_ended event). The launching process is the
job's only writer while it runs (experiment/lock.py).
"""

from __future__ import annotations

import collections
import functools
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpt.controller import choose_controller
from hpt.core.errors import LAUNCHER_LOST_EXIT, CannotGoOn, UserError
from hpt.core.schema import Column, Event, File, Key
from hpt.experiment.best import BestSoFar, summary
from hpt.experiment.ending import close_unfinished
from hpt.experiment.job_state import COMPLETED, MAX_TRIALS_REACHED, JobState, job_state
from hpt.experiment.lock import WriterLock
from hpt.experiment.resume import (ResumePlan, latest_start, plan_resume, resumed_max_trials,
                                   search_changes)
from hpt.experiment.store import JOURNAL, STOP_FILE, ExperimentStore, read_journal
from hpt.experiment.table import rebuild_table, trial_rows
from hpt.controller.job_run import check_placement, run_trials
from hpt.controller.recorder import TrialRecorder
from hpt.report.summary import best_trial
from hpt.runtime.job_protocol import Staged, StageContext
from hpt.runtime.artifacts import ArtifactUploader
from hpt.runtime.channels import s3_client
from hpt.runtime.runtimes import RUNTIMES
from hpt.schedule.scheduler import make_stopper
from hpt.schedule.control import JobControl
from hpt.search.space import grid_size
from hpt.tracking import start_tracking
from hpt.live.view import LaunchView, ended_line
from hpt.core.words import plural


@dataclass
class LaunchResult:
    experiment_dir: Path
    table_path: Path
    counts: dict[str, int]
    best: dict[str, Any] | None
    state: JobState  # how the job ended
    elapsed_seconds: float
    ran: bool = True  # False: a resumed job that had nothing left to run
    controller: str | None = None  # which controller ran the trials (hpt/controller/__init__.py)
    ray_connected: bool = False  # the launch connected this process to a Ray (its own, or joined)

    @property
    def end_reason(self) -> str:
        return self.state.reason

    @property
    def exit_code(self) -> int:
        return 0 if self.counts.get(COMPLETED) else 1


@dataclass(frozen=True)
class JobPlan:
    """What this run of the tuning job does, decided before anything is written."""

    spec: Any  # the space, with the max_trials this run has
    resumed: bool
    resume: ResumePlan  # what a resumed job keeps and runs again (empty for a fresh one)
    parents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # warm start
    torn: tuple[int, ...] = ()  # journal lines a crash tore (read before this run appends)
    # The space file's own max_trials (None: not known, --max-trials replaced it): recorded,
    # so that a later plain --resume can tell a space edited since (resume.resumed_max_trials).
    space_max_trials: int | None = None

    @property
    def max_trials(self) -> int:
        return max_trials_of(self.spec)

    @property
    def to_run(self) -> int:
        replay = len(self.resume.replay)
        return replay + max(0, self.max_trials - self.resume.done - replay)


def max_trials_of(spec) -> int:
    if spec.limits.max_trials is not None:
        return spec.limits.max_trials
    return grid_size(spec.hyperparameters)


def launch(spec, experiments_dir: Path, *, address: str | None = None, dashboard: bool = True,
           dashboard_host: str = "127.0.0.1", container_engine: str = "docker",
           sagemaker_role: str | None = None, stream=None, resume: bool = False,
           max_trials_override: int | None = None, controller: str | None = None,
           mlflow_uri: str | None = None, resume_command: str | None = None) -> LaunchResult:
    """Runs a whole tuning job (or resumes one) and returns where its table is and how it
    ended. `max_trials_override` is `--max-trials` (a resumed job otherwise keeps its
    maximum); `controller` is `--controller` (None: hpt chooses, controller/__init__.py);
    `mlflow_uri` is `--mlflow-uri` (hpt/tracking); `resume_command` the command that
    continues this job, for the messages that say how (the CLI's, with its options)."""
    root = Path(experiments_dir).resolve() / spec.name
    fresh_folders = [folder for folder in (root.parent, root) if not folder.exists()]
    options = {"container_engine": container_engine, "sagemaker_role": sagemaker_role,
               "mlflow_uri": mlflow_uri,
               Key.RESUME_COMMAND: resume_command or f"hpt launch {spec.source_path} --resume"}
    ray_options = {"address": address, "dashboard": dashboard, "dashboard_host": dashboard_host,
                   "controller": controller}
    with WriterLock(root, "launch"):
        try:
            return _run(spec, root, resume, max_trials_override, options, ray_options, stream)
        except UserError:
            # A new job refused before its first training job (bad input, no Ray to join)
            # leaves nothing behind: launching it again must not need --resume. (hpt's own
            # failures keep the folder: its journal says how far the job got.)
            if fresh_folders and not any(e.get(Key.EVENT) == Event.TRIAL_STARTED for e in
                                         read_journal(root / JOURNAL)):
                shutil.rmtree(fresh_folders[0], ignore_errors=True)
            raise


def _run(spec, root: Path, resume: bool, max_trials_override, options, ray_options,
         stream) -> LaunchResult:
    store = ExperimentStore(root)
    job = plan_job(spec, store, resume, max_trials_override)
    if job.resumed and not job.to_run:
        return _nothing_to_run(store, root)  # no Ray started, nothing appended
    # Everything that can refuse the run is checked before its start is written: a refused
    # resume leaves the journal as it was.
    runtime = RUNTIMES[job.spec.runtime]
    track = start_tracking(job.spec, options["mlflow_uri"])
    controller = choose_controller(job.spec, runtime, ray_options["address"],
                                   ray_options["controller"])
    check_placement(job.spec, runtime, controller)
    if ray_options["address"] and not ray_options["address"].startswith("ray://"):
        from hpt.cluster.session import check_cluster

        ray_options = {**ray_options, "checked_gcs": check_cluster(ray_options["address"])}
    s3 = _s3_client_if_needed(job.spec)
    staged = runtime.stage(StageContext(job.spec, root, s3, options))
    began = time.time()
    control, view = _record_start(store, job, staged, began, stream, options[Key.RESUME_COMMAND])
    tracker = track(store, view)
    uploader = ArtifactUploader(job.spec.output, store, view, s3) \
        if runtime.hpt_uploads_artifacts and (job.spec.output or "").startswith("s3://") \
        else None
    recorder = TrialRecorder(store, job.spec, view, artifacts=uploader, kept=job.resume.kept)
    cannot_go_on = functools.partial(_cannot_go_on, store, job.spec, options[Key.RESUME_COMMAND])
    try:
        run_trials(job, runtime, staged, store, control, recorder, view, ray_options,
                   controller, cannot_go_on)
    except BaseException as exc:
        # Not an ending: the job stays resumable, its running training jobs lost.
        store.append(Event.LAUNCHER_FAILED, why=_why(exc),
                     resume_command=options[Key.RESUME_COMMAND])
        if tracker is not None:
            tracker.finish()  # the runs stay unended in MLflow, as the job in its journal
        if isinstance(exc, (UserError, KeyboardInterrupt, SystemExit)):
            raise
        raise CannotGoOn(cannot_go_on_line(store, job.spec, _why(exc),
                                           options[Key.RESUME_COMMAND])) from exc
    finally:
        if uploader is not None:
            uploader.close()  # every completed job's artifacts are in S3 before it ends
    result = _finish(store, job.spec, control, view, recorder, began, tracker)
    result.controller = controller
    result.ray_connected = recorder.ray_session is not None
    return result


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted twice (Ctrl-C)"
    if isinstance(exc, UserError) or getattr(exc, "expected", False):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def cannot_go_on_line(store: ExperimentStore, spec, why: str, resume_command: str) -> str:
    """What a launcher that cannot go on says: what happened, that nothing is lost, how to
    continue."""
    lost = len(plan_resume(trial_rows(list(read_journal(store.journal_path)))).replay)
    return (f"hpt launch: tuning job {spec.name} cannot go on: {why}. It is saved, not "
            f"ended: {plural(lost, 'training job')} that did not finish will run again first; "
            f"`{resume_command}` continues it")


def _cannot_go_on(store: ExperimentStore, spec, resume_command: str, why: str) -> None:
    """The launcher cannot go on (the Ray its trials run on is lost): no ending is written —
    the job stays resumable, the training jobs that were running are lost and run again
    first — one line says so, and the process ends now (Ray's driver would end it a minute
    later, in its own words). Called from any thread."""
    store.seal(Event.LAUNCHER_FAILED, why=why, resume_command=resume_command)
    try:
        sys.stderr.write(cannot_go_on_line(store, spec, why, resume_command) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(LAUNCHER_LOST_EXIT)


# -- plan ---------------------------------------------------------------------------------------

def plan_job(spec, store: ExperimentStore, resume: bool, max_trials_override) -> JobPlan:
    space_max_trials = max_trials_of(spec) if max_trials_override is None else None
    if not resume:
        if store.exists():
            raise UserError(f"{store.root}: a tuning job named {spec.name!r} already exists; "
                            f"pass --name NEW_NAME to start another one, or --resume to "
                            f"continue it")
        parents = _warm_start_parents(spec, store.root.parent) if spec.warm_start else {}
        return JobPlan(spec, False, ResumePlan(done=0, replay=(), next_number=1), parents,
                       space_max_trials=space_max_trials)
    if not store.exists():
        raise UserError(f"{store.root}: there is no tuning job named {spec.name!r} to resume; "
                        f"launch it without --resume")
    changed = search_changes(store.read_spec(), spec.to_frozen_dict())
    if changed:
        raise UserError(f"{spec.source_path}: {', '.join(changed)}: differ from the tuning job "
                        f"being resumed ({store.root / File.SPEC}); a resumed job keeps its "
                        f"search space, objective and strategy: undo the change, or launch "
                        f"under a new --name")
    torn: list[int] = []
    events = list(read_journal(store.journal_path, torn))
    limit = resumed_max_trials(latest_start(events), max_trials_of(spec), max_trials_override)
    spec = spec.model_copy(update={"limits": spec.limits.model_copy(
        update={"max_trials": limit})})
    return JobPlan(spec, True, plan_resume(trial_rows(events)), torn=tuple(torn),
                   space_max_trials=space_max_trials)


def _warm_start_parents(spec, experiments_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each parent's completed training jobs (read before anything is created)."""
    parents = {}
    for i, name in enumerate(spec.warm_start.parents):
        journal = Path(experiments_dir) / name / JOURNAL
        if not journal.is_file():
            raise UserError(f"{spec.source_path}: warm_start.parents[{i}]: no tuning job "
                            f"{name!r} in {Path(experiments_dir).resolve()}; launch it first "
                            f"or fix the name")
        parents[name] = [r for r in trial_rows(list(read_journal(journal)))
                         if r[Key.STATUS] == COMPLETED and r.get(Key.OBJECTIVE_VALUE) is not None]
    return parents


def _nothing_to_run(store: ExperimentStore, root: Path) -> LaunchResult:
    events = list(read_journal(store.journal_path))
    counts = dict(collections.Counter(str(row[Key.STATUS]) for row in trial_rows(events)))
    return LaunchResult(root, root / File.TABLE_PARQUET, counts, best_trial(root),
                        job_state(events, writer=None), 0.0, ran=False)


def _s3_client_if_needed(spec):
    uses_s3 = any(ch.is_s3 for ch in spec.channels.values()) or (
        spec.output or "").startswith("s3://")
    return s3_client() if uses_s3 else None


# -- record the start ---------------------------------------------------------------------------

def _record_start(store: ExperimentStore, job: JobPlan, staged: Staged, began: float,
                  stream, resume_command: str) -> tuple[JobControl, LaunchView]:
    spec, plan = job.spec, job.resume
    store.create(spec.to_frozen_dict())  # the user's spec: s3:// channels stay s3://
    runtime = spec.limits.max_runtime_seconds
    control = JobControl(store.root / STOP_FILE, make_stopper(spec),
                         began + runtime if runtime else None)
    (store.root / STOP_FILE).unlink(missing_ok=True)  # an old request must not stop this run
    store.append(Event.JOB_RESUMED if job.resumed else Event.JOB_STARTED, name=spec.name,
                 max_trials=job.max_trials, max_parallel=spec.limits.max_parallel,
                 strategy=spec.strategy, seed=spec.seed, pid=os.getpid(),
                 space_max_trials=job.space_max_trials, resume_command=resume_command,
                 lost=[c[Key.TRAINING_JOB_NAME] for c in plan.replay],
                 **({Key.UNREADABLE_JOURNAL_LINES: list(job.torn)} if job.torn else {}))
    view = LaunchView(spec.name, plan.done + job.to_run, BestSoFar.of(spec.to_frozen_dict()),
                      stream=stream, kept=plan.kept)
    for event in staged.events:
        store.append(**event)
        view.print(f"Channel {event['channel']}: {event['uri']} -> {event['path']} "
                   f"({event['downloaded']} objects downloaded, {event['cached']} cached)")
    if job.torn:
        view.print(f"{store.journal_path}: skipped {len(job.torn)} unreadable line(s) "
                   f"({', '.join(map(str, job.torn[:5]))}): torn by a crash mid-write; the "
                   f"events before and after are kept, a trial whose end was torn runs again")
    if plan.replay:
        view.print(f"Resuming {spec.name}: {plan.done} training jobs kept, "
                   f"{len(plan.replay)} lost ones run again: "
                   f"{', '.join(c[Key.TRAINING_JOB_NAME] for c in plan.replay)}")
    return control, view


# -- finish -------------------------------------------------------------------------------------

def _finish(store: ExperimentStore, spec, control: JobControl, view: LaunchView,
            recorder: TrialRecorder, began: float, tracker=None) -> LaunchResult:
    elapsed = time.time() - began
    end_reason = control.end_reason or MAX_TRIALS_REACHED
    for record in close_unfinished(store, spec, end_reason):
        view.print(ended_line(record.training_job_name, record.status, record.objective_value,
                              record.end_time - record.start_time, record.failure_reason))
    df = rebuild_table(store, spec)
    counts = df[Column.TRAINING_JOB_STATUS].value_counts().to_dict()
    best = summary(recorder.best.record, spec.to_frozen_dict()) \
        if recorder.best.record is not None else None
    store.append(Event.JOB_ENDED, reason=end_reason, counts=counts,
                 best_training_job=best[Column.TRAINING_JOB_NAME] if best else None,
                 elapsed_seconds=elapsed)
    if tracker is not None:
        tracker.finish()  # bounded: what the server did not take is journaled and said
    store.close()
    state = job_state(list(read_journal(store.journal_path)), writer=None)
    return LaunchResult(store.root, store.root / File.TABLE_PARQUET, counts, best, state, elapsed)
