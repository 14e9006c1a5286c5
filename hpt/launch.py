"""`hpt launch`: a tuning job = Optuna proposes, Ray Tune schedules, the journal records.

The launching process is the single writer of the experiment journal: a Tune callback
appends every trial event as Tune reports it, and the table is rebuilt after each trial.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Tune's strict metric check would reject a final result of a job that failed before its
# objective was ever printed; such results are legitimate here.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# The journal is the record of a tuning job; Tune's own CSV/JSON result files would be noise.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# hpt's view is the console output; Tune's legacy reporter at verbose=0 prints nothing (the
# new output engine prints its configuration table regardless of verbosity).
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C is hpt's to handle (JobControl): trials end Stopped and the job stays resumable.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
# A local Ray binds 127.0.0.1 rather than the first network interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from ray import tune  # noqa: E402

from hpt.errors import UserError
from hpt.experiment.job_state import COMPLETED, MAX_TRIALS_REACHED, JobState, job_state
from hpt.experiment.lock import WriterLock
from hpt.experiment.resume import (ResumePlan, current_max_trials,
                                   plan_resume, resumed_max_trials, search_changes)
from hpt.experiment.store import JOURNAL, STOP_FILE, ExperimentStore, read_journal
from hpt.experiment.table import trial_rows
from hpt.ray_session import start_or_join
from hpt.report import best_trial
from hpt.schedule import make_scheduler, make_stopper
from hpt.runtime.channels import download_channel, parse_s3, s3_client
from hpt.runtime.sagemaker import pack_source, source_uri
from hpt.runtime.warm import WarmInterpreter, modules_to_preload
from hpt.search.searcher import OptunaSearcher, fail_orphans, open_study, seed_from_parents
from hpt.search.space import grid_size
from hpt.trainable import TrainingJobTrainable
from hpt.tune_glue import (ArtifactUploader, JobControl, JournalCallback, StopOnSignals,
                           close_unfinished, rebuild_table)
from hpt.view import LaunchView, ended_line
from hpt.words import plural


# Retries of a training job whose host or Ray actor was lost (never of the script's failure).
MAX_RETRIES = 2


@dataclass
class LaunchResult:
    experiment_dir: Path
    table_path: Path
    counts: dict[str, int]
    best: dict[str, Any] | None
    state: JobState  # how the job ended
    elapsed_seconds: float
    ran: bool = True  # False: a resumed job that had nothing left to run

    @property
    def end_reason(self) -> str:
        return self.state.reason

    @property
    def exit_code(self) -> int:
        return 0 if self.counts.get(COMPLETED) else 1


def _nothing_to_run(store: ExperimentStore, root: Path) -> LaunchResult:
    events = list(read_journal(store.journal_path))
    counts = dict(collections.Counter(str(row["status"]) for row in trial_rows(events)))
    return LaunchResult(root, root / "table.parquet", counts, best_trial(root),
                        job_state(events, writer=None), 0.0, ran=False)


def max_trials_of(spec) -> int:
    if spec.limits.max_trials is not None:
        return spec.limits.max_trials
    return grid_size(spec.hyperparameters)


# Tuner.fit() ends by reading Tune's per-trial result files, which hpt turns off (the journal
# is the record); its warning about each missing file would bury hpt's summary.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def _prepare_resume(store: ExperimentStore, spec, root: Path, torn: list[int]
                    ) -> tuple[ResumePlan, list[dict[str, Any]]]:
    if not store.exists():
        raise UserError(f"{root}: there is no tuning job named {spec.name!r} to resume; "
                        f"launch it without --resume")
    changed = search_changes(store.read_spec(), spec.to_frozen_dict())
    if changed:
        raise UserError(f"{spec.source_path}: {', '.join(changed)}: differ from the tuning job "
                        f"being resumed ({root / 'spec.json'}); a resumed job keeps its search "
                        f"space, objective and strategy: undo the change, or launch under a "
                        f"new --name")
    events = list(read_journal(store.journal_path, torn))
    return plan_resume(trial_rows(events)), events


def _warm_start_parents(spec, experiments_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each parent's completed training jobs (read before anything is created)."""
    parents = {}
    for i, name in enumerate(spec.warm_start.parents):
        journal = Path(experiments_dir) / name / "journal.jsonl"
        if not journal.is_file():
            raise UserError(f"{spec.source_path}: warm_start.parents[{i}]: no tuning job "
                            f"{name!r} in {Path(experiments_dir).resolve()}; launch it first "
                            f"or fix the name")
        parents[name] = [r for r in trial_rows(list(read_journal(journal)))
                         if r["status"] == COMPLETED
                         and r.get("objective_value") is not None]
    return parents


@contextlib.contextmanager
def warm_interpreter(spec, root: Path):
    """The job's warm interpreter (runtime/warm.py) when trainer.warm_start asks for one."""
    trainer = spec.trainer
    if not trainer.warm_start:
        yield None
        return
    modules = modules_to_preload(trainer.source_dir / trainer.entry_point, trainer.source_dir)
    warm = WarmInterpreter(modules, root / "warm.log")
    try:
        yield warm
    finally:
        warm.close()


def _s3_client_if_needed(spec):
    uses_s3 = any(ch.is_s3 for ch in spec.channels.values()) or (
        spec.output or "").startswith("s3://")
    return s3_client() if uses_s3 else None


def _upload_source(spec, client) -> str:
    """source_dir as sourcedir.tar.gz under output (once per launch): what
    `sagemaker_submit_directory` points the toolkit in the container at."""
    from botocore.exceptions import BotoCoreError, ClientError

    uri = source_uri(spec.output, spec.name)
    location = parse_s3(uri)
    try:
        client.put_object(Bucket=location.bucket, Key=location.prefix,
                          Body=pack_source(spec.trainer.source_dir))
    except (BotoCoreError, ClientError) as exc:
        raise UserError(f"{spec.source_path}: output: cannot upload the training code to "
                        f"{uri}: {exc}; check the bucket and your AWS configuration") from None
    return uri


def _download_s3_channels(spec, root: Path, client):
    """s3:// channels -> copies in <experiment>/channels/<name> (once per tuning job); returns
    what was downloaded and the spec the trials run with (those channels as local folders)."""
    from botocore.exceptions import BotoCoreError, ClientError

    downloads, channels = [], dict(spec.channels)
    for name, channel in spec.channels.items():
        if not channel.is_s3:
            continue
        try:
            info = download_channel(client, channel.uri, root / "channels" / name)
        except (BotoCoreError, ClientError, FileNotFoundError, ValueError) as exc:
            raise UserError(f"{spec.source_path}: channels.{name}: cannot download "
                            f"{channel.uri}: {exc}; check the URI and your AWS configuration "
                            f"(AWS_ENDPOINT_URL, AWS_PROFILE, region, credentials)") from None
        downloads.append({"channel": name, **info})
        channels[name] = channel.model_copy(update={"uri": info["path"]})
    return downloads, spec.model_copy(update={"channels": channels})


def launch(spec, experiments_dir: Path, *, address: str | None = None, dashboard: bool = True,
           dashboard_host: str = "127.0.0.1", container_engine: str = "docker",
           sagemaker_role: str | None = None, stream=None, resume: bool = False,
           max_trials_override: int | None = None) -> LaunchResult:
    """Runs a whole tuning job (or resumes one) and returns where its table is and how it
    ended. The process is the job's only writer while it runs (`experiment/lock.py`);
    `max_trials_override` is `--max-trials` (a resumed job otherwise keeps its maximum)."""
    root = Path(experiments_dir).resolve() / spec.name
    fresh_folder = not root.exists()
    with WriterLock(root, "launch"):
        try:
            return _launch(spec, root, address=address, dashboard=dashboard,
                           dashboard_host=dashboard_host, container_engine=container_engine,
                           sagemaker_role=sagemaker_role, stream=stream, resume=resume,
                           max_trials_override=max_trials_override)
        except UserError:
            # A new job refused before its first training job (bad input, no Ray to join)
            # leaves nothing behind: launching it again must not need --resume. (hpt's own
            # failures keep the folder: its journal says how far the job got.)
            if fresh_folder and not any(e.get("event") == "trial_started" for e in
                                        read_journal(root / JOURNAL)):
                shutil.rmtree(root, ignore_errors=True)
            raise


def _launch(spec, root: Path, *, address, dashboard, dashboard_host, container_engine,
            sagemaker_role, stream, resume, max_trials_override) -> LaunchResult:
    store = ExperimentStore(root)
    torn: list[int] = []  # journal lines a crash tore (read before this run appends)
    if resume:
        plan, events = _prepare_resume(store, spec, root, torn)
        limit = resumed_max_trials(current_max_trials(events), max_trials_of(spec),
                                   max_trials_override)
        spec = spec.model_copy(update={"limits": spec.limits.model_copy(
            update={"max_trials": limit})})
    else:
        if store.exists():
            raise UserError(f"{root}: a tuning job named {spec.name!r} already exists; pass "
                            f"--name NEW_NAME to start another one, or --resume to continue it")
        parents = _warm_start_parents(spec, root.parent) if spec.warm_start else {}
        plan = ResumePlan(done=0, replay=(), next_number=1)
    max_trials = max_trials_of(spec)
    if resume and not plan.replay and plan.done >= max_trials:
        return _nothing_to_run(store, root)  # no Ray started, nothing appended
    s3 = _s3_client_if_needed(spec)
    # SageMaker reads S3 channels and writes the artifacts itself.
    on_sagemaker = spec.runtime == "sagemaker"
    downloads, trial_spec = ([], spec) if on_sagemaker else \
        _download_s3_channels(spec, root, s3)
    code_uri = _upload_source(spec, s3) if on_sagemaker else None
    store.create(spec.to_frozen_dict())  # the user's spec: s3:// channels stay s3://
    began = time.time()
    runtime = spec.limits.max_runtime_seconds
    control = JobControl(root / STOP_FILE, make_stopper(spec),
                         began + runtime if runtime else None)
    (root / STOP_FILE).unlink(missing_ok=True)  # an old request must not stop this run
    store.append("job_resumed" if resume else "job_started", name=spec.name,
                 max_trials=max_trials, max_parallel=spec.limits.max_parallel,
                 strategy=spec.strategy, seed=spec.seed, pid=os.getpid(),
                 lost=[c["training_job_name"] for c in plan.replay],
                 **({"unreadable_journal_lines": torn} if torn else {}))
    to_run = len(plan.replay) + max(0, max_trials - plan.done - len(plan.replay))
    view = LaunchView(spec.name, plan.done + to_run, spec.objective.type == "maximize",
                      stream=stream, kept=plan.kept)
    for info in downloads:
        store.append("channel_downloaded", **info)
        view.print(f"Channel {info['channel']}: {info['uri']} -> {info['path']} "
                   f"({info['downloaded']} objects downloaded, {info['cached']} cached)")
    uploader = ArtifactUploader(spec.output, store, view, s3) \
        if (spec.output or "").startswith("s3://") and not on_sagemaker else None
    if torn:
        view.print(f"{store.journal_path}: skipped {len(torn)} unreadable line(s) "
                   f"({', '.join(map(str, torn[:5]))}): torn by a crash mid-write; the events "
                   f"before and after are kept, a trial whose end was torn runs again")
    if plan.replay:
        view.print(f"Resuming {spec.name}: {plan.done} training jobs kept, "
                   f"{len(plan.replay)} lost ones run again: "
                   f"{', '.join(c['training_job_name'] for c in plan.replay)}")

    # The warm interpreter imports the script's modules while Ray starts.
    with warm_interpreter(spec, root) as warm:
        session = start_or_join(address, dashboard, dashboard_host, metadata={
            "hpt_tuning_job": spec.name, "hpt_experiment_dir": str(root),
            "hpt_strategy": spec.strategy, "hpt_max_trials": str(plan.done + to_run),
            "hpt_objective": f"{spec.objective.type} {spec.objective.metric}"})
        store.append("ray_connected", address=address, session_dir=session.session_dir,
                     started_here=session.started_here, dashboard_url=session.dashboard_url)
        if session.dashboard_url:
            view.print(f"Ray dashboard: {session.dashboard_url} (token auth: the token is in "
                       f"~/.ray/auth_token)")
        study = open_study(spec, store.study_path)
        fail_orphans(study)
        if not resume and spec.warm_start:
            seeded = seed_from_parents(study, spec, parents)
            view.print(f"Warm start: {seeded} completed training jobs of "
                       f"{', '.join(spec.warm_start.parents)} seed the search")
        warm_socket = warm.wait_ready() if warm else None
        if warm is not None:
            view.print(f"Warm interpreter: {', '.join(warm.info.get('imported', [])) or 'no'} "
                       f"modules preloaded; trials fork from it" if warm_socket else
                       f"Warm interpreter not used ({warm.reason}); trials start cold")
        searcher = OptunaSearcher(spec, study, max_trials, done=plan.done, replay=plan.replay,
                                  next_number=plan.next_number, seen=plan.seen)
        trainer = spec.trainer
        # A SageMaker trial only polls from here: a sliver of a CPU; its hosts are SageMaker's.
        resources = tune.PlacementGroupFactory([{"CPU": 0.05}]) if on_sagemaker else \
            tune.PlacementGroupFactory([{"CPU": trainer.cpus_per_host,
                                         "GPU": trainer.gpus_per_host}] * trainer.instance_count)
        trainable = tune.with_resources(
            tune.with_parameters(TrainingJobTrainable, spec_dict=trial_spec.to_frozen_dict(),
                                 experiment_dir=str(root), warm_socket=warm_socket,
                                 container_engine=container_engine,
                                 sagemaker=(sagemaker_role, code_uri) if on_sagemaker else None),
            resources)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=make_scheduler(spec), num_samples=max(1, to_run),
                max_concurrent_trials=spec.limits.max_parallel, reuse_actors=True),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=str(root / ".tune"), verbose=0, stop=control,
                callbacks=[JournalCallback(store, spec, view, control, artifacts=uploader)],
                # A lost host or actor (never the script's own failure) is retried twice.
                failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
                # The model artifact is the training job's model.tar.gz, not a Tune checkpoint.
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
        )
        view.print(f"Tuning job {spec.name}: up to {plural(plan.done + to_run, 'training job')}, "
                   f"{spec.limits.max_parallel} at a time, strategy {spec.strategy}; "
                   f"experiment folder {root}")
        try:
            if to_run:
                with view, StopOnSignals(control):
                    tuner.fit()
        finally:
            if uploader is not None:
                uploader.close()  # every completed job's artifacts are in S3 before it ends
            elapsed = time.time() - began
            end_reason = control.end_reason or MAX_TRIALS_REACHED
            for record in close_unfinished(store, spec, end_reason):
                view.print(ended_line(record.training_job_name, record.status,
                                      record.objective_value,
                                      record.end_time - record.start_time,
                                      record.failure_reason))
            df = rebuild_table(store, spec)
            counts = df["TrainingJobStatus"].value_counts().to_dict()
            best = best_trial(root)
            store.append("job_ended", reason=end_reason, counts=counts,
                         best_training_job=best["TrainingJobName"] if best else None,
                         elapsed_seconds=elapsed)
            store.close()
        state = job_state(list(read_journal(store.journal_path)), writer=None)
        return LaunchResult(root, root / "table.parquet", counts, best, state, elapsed)
