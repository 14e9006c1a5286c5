"""`hpt launch`: a tuning job = Optuna proposes, Ray Tune schedules, the journal records.

The launching process is the single writer of the experiment journal: a Tune callback
appends every trial event as Tune reports it, and the table is rebuilt after each trial.
"""

from __future__ import annotations

import logging
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
# A local Ray binds 127.0.0.1 rather than the first network interface.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from hpt.errors import UserError
from hpt.experiment.store import ExperimentStore, read_journal
from hpt.experiment.table import build_table, trial_rows, write_table
from hpt.report import best_trial
from hpt.schedule import make_scheduler
from hpt.search.searcher import OptunaSearcher, open_study
from hpt.search.space import grid_size
from hpt.trainable import TrainingJobTrainable
from hpt.view import LaunchView


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

    def __init__(self, store: ExperimentStore, spec, view: LaunchView):
        self.store = store
        self.spec = spec
        self.view = view
        self.started: dict[str, float] = {}

    def __getstate__(self):
        # Tune pickles its config into tuner.pkl for Tuner.restore, which hpt never uses (hpt
        # resumes from its own journal); open files and the terminal are not part of that state.
        return {k: v for k, v in self.__dict__.items() if k not in ("store", "view")}

    def on_trial_start(self, iteration, trials, trial, **info):
        cfg = trial.config
        name = cfg["training_job_name"]
        self.started[name] = time.time()
        trial_dir = self.store.root / name
        self.store.append("trial_started", trial_number=cfg["trial_number"],
                          training_job_name=name, hyperparameters=cfg["hyperparameters"],
                          log_path=str(trial_dir / "algo-1.log"))
        self.view.trial_started(name)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "hpt_status" in result or "objective" not in result:
            return
        name = trial.config["training_job_name"]
        self.store.append("trial_progress", training_job_name=name,
                          value=result["objective"], step=result.get("objective_step"))
        self.view.trial_progress(name, result["objective"])

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        record = last.get("hpt_record") or self._stopped_record(trial, last,
                                                                 "Stopped by early stopping")
        self._ended(record)

    def on_trial_error(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        error = getattr(trial, "error_msg", None) or "the trial's Ray actor failed"
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
        self.store.append("trial_ended", training_job_name=record["training_job_name"],
                          record=record)
        rebuild_table(self.store, self.spec)
        self.view.trial_ended(record["training_job_name"], record["status"],
                              record.get("objective_value"),
                              record["end_time"] - record["start_time"],
                              record.get("failure_reason"))


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


def launch(spec, experiments_dir: Path, *, address: str | None = None, dashboard: bool = True,
           stream=None) -> LaunchResult:
    """Runs a whole tuning job and returns where its table is and how it ended."""
    root = Path(experiments_dir).resolve() / spec.name
    store = ExperimentStore(root)
    if store.exists():
        raise UserError(f"{root}: a tuning job named {spec.name!r} already exists; "
                        f"pass --name NEW_NAME to start another one, or --resume to continue it")
    max_trials = max_trials_of(spec)
    store.create(spec.to_frozen_dict())
    began = time.time()
    store.append("job_started", name=spec.name, max_trials=max_trials,
                 max_parallel=spec.limits.max_parallel, strategy=spec.strategy, seed=spec.seed)
    view = LaunchView(spec.name, max_trials, spec.objective.type == "maximize", stream=stream)

    dashboard_url = ensure_ray(address, dashboard)
    if dashboard_url:
        view.print(f"Ray dashboard: {dashboard_url} (token auth: the token is in "
                   f"~/.ray/auth_token)")
    study = open_study(spec, store.study_path)
    searcher = OptunaSearcher(spec, study, max_trials)
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
            search_alg=searcher, scheduler=make_scheduler(spec), num_samples=max_trials,
            max_concurrent_trials=spec.limits.max_parallel, reuse_actors=True,
            time_budget_s=spec.limits.max_runtime_seconds),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(root / ".tune"), verbose=0,
            callbacks=[JournalCallback(store, spec, view)],
            failure_config=tune.FailureConfig(max_failures=0),
            # The model artifact is the training job's model.tar.gz, not a Tune checkpoint.
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
    view.print(f"Tuning job {spec.name}: up to {max_trials} training jobs, "
               f"{spec.limits.max_parallel} at a time, strategy {spec.strategy}; "
               f"experiment folder {root}")
    end_reason = "MaxNumberOfTrainingJobsReached"
    try:
        with view:
            tuner.fit()
    except KeyboardInterrupt:
        end_reason = "Interrupted"
        raise
    finally:
        elapsed = time.time() - began
        if end_reason == "MaxNumberOfTrainingJobsReached" and spec.limits.max_runtime_seconds \
                and elapsed >= spec.limits.max_runtime_seconds:
            end_reason = "MaxRuntimeExceeded"
        _close_unfinished(store, f"Stopped: the tuning job ended ({end_reason})")
        df = rebuild_table(store, spec)
        counts = df["TrainingJobStatus"].value_counts().to_dict()
        best = best_trial(root)
        store.append("job_ended", reason=end_reason, counts=counts,
                     best_training_job=best["TrainingJobName"] if best else None,
                     elapsed_seconds=elapsed)
        store.close()
    return LaunchResult(root, root / "table.parquet", counts, best, end_reason, elapsed)
