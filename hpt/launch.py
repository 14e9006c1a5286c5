"""`hpt launch`: a tuning job = Optuna proposes, Ray Tune schedules, the journal records.

The launching process is the single writer of the experiment journal: a Tune callback
appends every trial event as Tune reports it, and the table is rebuilt after each trial.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
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

import ray  # noqa: E402
from ray import tune  # noqa: E402

from hpt.dashboard_metrics import TuningJobMetrics
from hpt.errors import UserError
from hpt.experiment.resume import JOB_END_PREFIX, ResumePlan, plan_resume, search_changes
from hpt.experiment.store import STOP_FILE, ExperimentStore, read_journal
from hpt.experiment.table import build_table, trial_rows, write_table
from hpt.report import best_trial
from hpt.schedule import make_scheduler, make_stopper
from hpt.search.searcher import OptunaSearcher, fail_orphans, open_study, seed_from_parents
from hpt.search.space import grid_size
from hpt.trainable import TrainingJobTrainable
from hpt.view import LaunchView


# Retries of a training job whose host or Ray actor was lost (never of the script's failure).
MAX_RETRIES = 2


@dataclass
class LaunchResult:
    experiment_dir: Path
    table_path: Path
    counts: dict[str, int]
    best: dict[str, Any] | None
    end_reason: str
    elapsed_seconds: float

    @property
    def exit_code(self) -> int:
        return 0 if self.counts.get("Completed") else 1


def max_trials_of(spec) -> int:
    if spec.limits.max_trials is not None:
        return spec.limits.max_trials
    return grid_size(spec.hyperparameters)


def ensure_ray(address: str | None, dashboard: bool) -> str | None:
    """Starts (or joins) Ray unless this process already did; returns the dashboard URL."""
    if ray.is_initialized():
        return None
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level="WARNING",
                                  configure_logging=True)
    if address:
        context = ray.init(address=address, **kwargs)
    else:
        context = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", **kwargs)
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url else None


# Tuner.fit() ends by reading Tune's per-trial result files, which hpt turns off (the journal
# is the record); its warning about each missing file would bury hpt's summary.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


class JournalCallback(tune.Callback):
    """Tune callback: trial events -> journal, table, live view."""

    def __init__(self, store: ExperimentStore, spec, view: LaunchView, control=None):
        self.store = store
        self.spec = spec
        self.view = view
        self.control = control
        self.started: dict[str, float] = {}
        self.metrics = TuningJobMetrics(spec.name, spec.objective.type == "maximize")

    def __getstate__(self):
        # Tune pickles its config into tuner.pkl for Tuner.restore, which hpt never uses (hpt
        # resumes from its own journal); open files and the terminal are not part of that state.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("store", "view", "control", "metrics")}

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

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "hpt_status" in result or "objective" not in result:
            return
        name = trial.config["training_job_name"]
        self.store.append("trial_progress", training_job_name=name,
                          value=result["objective"], step=result.get("objective_step"))
        self.view.trial_progress(name, result["objective"])

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        ending = self.control.end_reason if self.control is not None else None
        reason = f"{JOB_END_PREFIX} ({ending})" if ending else "Stopped by early stopping"
        self._ended(last.get("hpt_record") or self._stopped_record(trial, last, reason))

    def on_trial_recover(self, iteration, trials, trial, **info):
        # Tune runs the training job again (its host or actor was lost): say so, then the
        # next trial_started event begins the new attempt.
        error = _last_error_line(trial)
        self.store.append("trial_retried", training_job_name=trial.config["training_job_name"],
                          error=str(error)[:1024])

    def on_trial_error(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        error = _last_error_line(trial)
        record = self._stopped_record(trial, last, f"InternalServerError: {error}"[:1024],
                                      status="Failed")
        self._ended(record)

    def _stopped_record(self, trial, last: dict, reason: str, status: str = "Stopped") -> dict:
        cfg = trial.config
        name = cfg["training_job_name"]
        value = last.get("objective")
        return {
            "trial_number": cfg["trial_number"], "training_job_name": name,
            "hyperparameters": cfg["hyperparameters"], "status": status,
            "failure_reason": reason, "objective_value": value if status == "Stopped" else None,
            "final_metrics": {self.spec.objective.metric: value} if value is not None else {},
            "objective_steps": last.get("objective_step", 0),
            "start_time": self.started.get(name, time.time()), "end_time": time.time(),
            "exit_code": None, "log_path": str(self.store.root / name / "algo-1.log"),
            "model_artifact": None, "hosts": _hosts(self.spec), "gpu_ids": [],
        }

    def _ended(self, record: dict) -> None:
        self.metrics.ended(record["status"], record.get("objective_value"))
        self.store.append("trial_ended", training_job_name=record["training_job_name"],
                          record=record)
        rebuild_table(self.store, self.spec)
        self.view.trial_ended(record["training_job_name"], record["status"],
                              record.get("objective_value"),
                              record["end_time"] - record["start_time"],
                              record.get("failure_reason"))


def _last_error_line(trial) -> str:
    """The exception that ended a trial's actor, from Tune's error file (its last line)."""
    try:
        text = Path(trial.error_file).read_text(errors="replace").strip() if trial.error_file \
            else ""
    except OSError:
        text = ""
    return text.splitlines()[-1] if text else "the trial's Ray actor failed"


def _hosts(spec) -> list[str]:
    return [f"algo-{i + 1}" for i in range(spec.trainer.instance_count)]


def rebuild_table(store: ExperimentStore, spec):
    events = list(read_journal(store.journal_path))
    df = build_table(events, list(spec.hyperparameters), [m.name for m in spec.metric_definitions])
    write_table(df, store.root)
    return df


def _close_unfinished(store: ExperimentStore, reason: str) -> None:
    """Trials the journal shows as started but never ended get a Stopped record: nothing silent."""
    for row in trial_rows(list(read_journal(store.journal_path))):
        if row["status"] == "InProgress":
            now = time.time()
            store.append("trial_ended", training_job_name=row["training_job_name"], record={
                **row, "status": "Stopped", "failure_reason": reason, "end_time": now,
                "final_metrics": row.get("final_metrics", {}), "exit_code": None,
                "model_artifact": None, "hosts": row.get("hosts") or ["algo-1"],
                "gpu_ids": row.get("gpu_ids") or []})


class JobControl(tune.Stopper):
    """Ends the whole tuning job: `hpt stop` (a request file), Ctrl-C / SIGTERM, or a
    completion criterion (the wrapped stopper). `end_reason` says which."""

    def __init__(self, stop_file: Path, criteria: tune.Stopper | None = None,
                 deadline: float | None = None):
        self.stop_file = stop_file
        self.criteria = criteria
        self.deadline = deadline  # the tuning job's max_runtime_seconds, as a time.time()
        self.end_reason: str | None = None

    def __getstate__(self):  # pickled into tuner.pkl like the callback; see JournalCallback
        return {"end_reason": self.end_reason}

    def request_stop(self, reason: str) -> None:
        self.end_reason = self.end_reason or reason

    def __call__(self, trial_id, result) -> bool:
        if self.criteria is not None and self.criteria(trial_id, result):
            self.request_stop(getattr(self.criteria, "reason", None) or "CompletionCriteriaMet")
        return False

    def stop_all(self) -> bool:
        if self.end_reason is None and self.deadline is not None and time.time() >= self.deadline:
            self.request_stop("MaxRuntimeExceeded")
        if self.end_reason is None and self.stop_file.exists():
            self.request_stop("Stopped")
        if self.end_reason is None and self.criteria is not None and self.criteria.stop_all():
            self.request_stop(getattr(self.criteria, "reason", None) or "CompletionCriteriaMet")
        return self.end_reason is not None


class _StopOnSignals:
    """First Ctrl-C / SIGTERM: stop cleanly (trials Stopped, job resumable); second: abort."""

    def __init__(self, control: JobControl):
        self.control = control
        self.saved: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig, reason in ((signal.SIGINT, "Interrupted"), (signal.SIGTERM, "Stopped")):
                self.saved[sig] = signal.signal(sig, self._handler(sig, reason))
        return self

    def _handler(self, sig, reason):
        def handle(signum, frame):
            self.control.request_stop(reason)
            signal.signal(sig, self.saved[sig])  # a second signal acts as usual
        return handle

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _prepare_resume(store: ExperimentStore, spec, root: Path) -> ResumePlan:
    if not store.exists():
        raise UserError(f"{root}: there is no tuning job named {spec.name!r} to resume; "
                        f"launch it without --resume")
    changed = search_changes(store.read_spec(), spec.to_frozen_dict())
    if changed:
        raise UserError(f"{spec.source_path}: {', '.join(changed)}: differ from the tuning job "
                        f"being resumed ({root / 'spec.json'}); a resumed job keeps its search "
                        f"space, objective and strategy: undo the change, or launch under a "
                        f"new --name")
    return plan_resume(trial_rows(list(read_journal(store.journal_path))))


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
                         if r["status"] == "Completed" and r.get("objective_value") is not None]
    return parents


def launch(spec, experiments_dir: Path, *, address: str | None = None, dashboard: bool = True,
           stream=None, resume: bool = False) -> LaunchResult:
    """Runs a whole tuning job (or resumes one) and returns where its table is and how it ended."""
    root = Path(experiments_dir).resolve() / spec.name
    store = ExperimentStore(root)
    max_trials = max_trials_of(spec)
    if resume:
        plan = _prepare_resume(store, spec, root)
    else:
        if store.exists():
            raise UserError(f"{root}: a tuning job named {spec.name!r} already exists; pass "
                            f"--name NEW_NAME to start another one, or --resume to continue it")
        parents = _warm_start_parents(spec, experiments_dir) if spec.warm_start else {}
        plan = ResumePlan(done=0, replay=(), next_number=1)
    store.create(spec.to_frozen_dict())
    began = time.time()
    runtime = spec.limits.max_runtime_seconds
    control = JobControl(root / STOP_FILE, make_stopper(spec),
                         began + runtime if runtime else None)
    (root / STOP_FILE).unlink(missing_ok=True)  # an old request must not stop this run
    store.append("job_resumed" if resume else "job_started", name=spec.name,
                 max_trials=max_trials, max_parallel=spec.limits.max_parallel,
                 strategy=spec.strategy, seed=spec.seed, pid=os.getpid(),
                 lost=[c["training_job_name"] for c in plan.replay])
    to_run = len(plan.replay) + max(0, max_trials - plan.done - len(plan.replay))
    view = LaunchView(spec.name, plan.done + to_run, spec.objective.type == "maximize",
                      stream=stream)
    if plan.replay:
        view.print(f"Resuming {spec.name}: {plan.done} training jobs kept, "
                   f"{len(plan.replay)} lost ones run again: "
                   f"{', '.join(c['training_job_name'] for c in plan.replay)}")

    dashboard_url = ensure_ray(address, dashboard)
    if dashboard_url:
        view.print(f"Ray dashboard: {dashboard_url} (token auth: the token is in "
                   f"~/.ray/auth_token)")
    study = open_study(spec, store.study_path)
    fail_orphans(study)
    if not resume and spec.warm_start:
        seeded = seed_from_parents(study, spec, parents)
        view.print(f"Warm start: {seeded} completed training jobs of "
                   f"{', '.join(spec.warm_start.parents)} seed the search")
    searcher = OptunaSearcher(spec, study, max_trials, done=plan.done, replay=plan.replay,
                              next_number=plan.next_number)
    trainer = spec.trainer
    resources = tune.PlacementGroupFactory(
        [{"CPU": trainer.cpus_per_host, "GPU": trainer.gpus_per_host}] * trainer.instance_count)
    trainable = tune.with_resources(
        tune.with_parameters(TrainingJobTrainable, spec_dict=spec.to_frozen_dict(),
                             experiment_dir=str(root)),
        resources)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=make_scheduler(spec), num_samples=max(1, to_run),
            max_concurrent_trials=spec.limits.max_parallel, reuse_actors=True),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(root / ".tune"), verbose=0, stop=control,
            callbacks=[JournalCallback(store, spec, view, control)],
            # A lost host or actor (never the script's own failure) is retried twice.
            failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
            # The model artifact is the training job's model.tar.gz, not a Tune checkpoint.
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
    view.print(f"Tuning job {spec.name}: up to {plan.done + to_run} training jobs, "
               f"{spec.limits.max_parallel} at a time, strategy {spec.strategy}; "
               f"experiment folder {root}")
    try:
        if to_run:
            with view, _StopOnSignals(control):
                tuner.fit()
    finally:
        elapsed = time.time() - began
        end_reason = control.end_reason or "MaxNumberOfTrainingJobsReached"
        _close_unfinished(store, f"{JOB_END_PREFIX} ({end_reason})")
        df = rebuild_table(store, spec)
        counts = df["TrainingJobStatus"].value_counts().to_dict()
        best = best_trial(root)
        store.append("job_ended", reason=end_reason, counts=counts,
                     best_training_job=best["TrainingJobName"] if best else None,
                     elapsed_seconds=elapsed)
        store.close()
    return LaunchResult(root, root / "table.parquet", counts, best, end_reason, elapsed)
