"""The experiment table: one row per training job, rebuilt from the journal.

Columns follow `HyperparameterTuningJobAnalytics.dataframe()` (docs/sagemaker-contract.md §11):
the tuned hyperparameters, then SageMaker's analytics columns, then hpt's own, then each
metric's final value. A space with constraints adds `Feasible`; one with several objectives
also `ParetoOptimal` (hpt.core.objectives says what both mean).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from hpt.experiment.store import JOURNAL, SPEC, read_journal
from hpt.core.objectives import is_feasible, objective_values, pareto_optimal
from hpt.core.trial import TrialStatus

SAGEMAKER_COLUMNS = [
    "TrainingJobName",
    "TrainingJobStatus",
    "FinalObjectiveValue",
    "TrainingStartTime",
    "TrainingEndTime",
    "TrainingElapsedTimeSeconds",
]
HPT_COLUMNS = [
    "TrialNumber",
    "FailureReason",
    "ObjectiveSteps",
    "ExitCode",
    "Hosts",
    "GpuIds",
    "LogPath",
    "ModelArtifact",
    "Retries",
    "ResumedFromStep",
    "ParentTrainingJob",
    "ExploitCount",
    "QueueWaitSeconds",
    "LaunchSeconds",
    "TeardownSeconds",
    "ResourceWaitSeconds",
    "S3ModelArtifact",
]
# What hpt adds around a training job, less ResourceWaitSeconds: the part of its queue wait
# spent waiting for another job to free CPUs or GPUs, the machine's, reported apart.
OVERHEAD_COLUMNS = ["QueueWaitSeconds", "LaunchSeconds", "TeardownSeconds"]
FEASIBLE, PARETO_OPTIMAL = "Feasible", "ParetoOptimal"


def experiments_dir(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get("HPT_EXPERIMENTS_DIR") or "experiments")


def resolve_experiment(name_or_path: str | os.PathLike,
                       experiments_dir_: str | os.PathLike | None = None) -> Path:
    """A tuning job's folder, absolute, from its name (under the experiments dir) or a path to
    it. Absolute because what reads it may hand paths inside it to processes that run
    elsewhere (a trial's tree, a serving program)."""
    candidate = Path(name_or_path)
    if (candidate / SPEC).is_file():
        return candidate.resolve()
    root = experiments_dir(experiments_dir_) / str(name_or_path)
    if (root / SPEC).is_file():
        return root.resolve()
    raise FileNotFoundError(
        f"no tuning job {str(name_or_path)!r}: neither {candidate} nor {root} holds a {SPEC}; "
        f"pass the experiment folder or set --experiments-dir / HPT_EXPERIMENTS_DIR")


# What a job's row keeps when it starts over (a retry): its rungs and lineage so far.
CARRIED_ACROSS_ATTEMPTS = ("rungs", "promoted_from", "parent", "exploit_count")


def trial_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Folds journal events into the latest state of each trial, in trial order."""
    trials: dict[str, dict[str, Any]] = {}
    for ev in events:
        kind = ev.get("event")
        name = ev.get("training_job_name")
        if kind == "trial_started" and ev.get("continued") and name in trials:
            # A paused job continues (promoted, or resumed by Tune's PBT): not a retry; its
            # metrics so far stay, its hyperparameters are those it now runs with.
            row = trials[name]
            row.update(status=TrialStatus.IN_PROGRESS, failure_reason=None,
                       budget=ev.get("budget"), hyperparameters=ev.get("hyperparameters", {}))
            if "promoted_from" in ev:
                row.setdefault("promoted_from", []).append(ev["promoted_from"])
        elif kind == "trial_started":
            # A training job started again (a retry, or a resumed job's re-run) starts over;
            # the count of earlier attempts, and the rungs it reached, stay.
            earlier = trials.get(name, {})
            retries = earlier["retries"] + 1 if name in trials else 0
            trials[name] = {
                "retries": retries,
                "trial_number": ev["trial_number"], "training_job_name": name,
                "hyperparameters": ev.get("hyperparameters", {}),
                "status": TrialStatus.IN_PROGRESS,
                "start_time": ev["time"], "final_metrics": {}, "objective_value": None,
                "log_path": ev.get("log_path"), "budget": ev.get("budget"),
                **{k: earlier[k] for k in CARRIED_ACROSS_ATTEMPTS if k in earlier},
            }
        elif kind == "trial_exploited" and name in trials:
            row = trials[name]
            row.update(parent=ev["parent"], exploit_count=row.get("exploit_count", 0) + 1)
        elif kind == "trial_paused" and name in trials:
            trials[name].update(ev["record"])
            trials[name].setdefault("rungs", {})[ev["rung"]] = ev["record"].get("objective_value")
        elif kind == "trial_progress" and name in trials:
            trials[name]["objective_value"] = ev.get("value")
            trials[name]["objective_steps"] = ev.get("step")
        elif kind == "trial_ended":
            record = ev["record"]
            trials[name] = {**trials.get(name, {}), **record}
        elif kind == "trial_uploaded" and name in trials:
            trials[name]["s3_model_artifact"] = ev.get("uris", {}).get("model")
        elif kind == "trial_upload_failed" and name in trials:
            trials[name]["upload_failure"] = ev.get("reason")
    return sorted(trials.values(), key=lambda t: t["trial_number"])


def judged(rows: list[dict[str, Any]], objectives: list[dict[str, Any]],
           constraints: list[dict[str, Any]]) -> tuple[list[bool], list[bool]]:
    """Each training job's feasibility and whether it is on the Pareto front (over the
    feasible Completed jobs that have every objective's value)."""
    metrics = [t.get("final_metrics") or {} for t in rows]
    feasible = [is_feasible(m, constraints) for m in metrics]
    if len(objectives or []) < 2:
        return feasible, [False] * len(rows)
    points = [objective_values(m, objectives)
              if t["status"] == TrialStatus.COMPLETED and ok else None
              for t, m, ok in zip(rows, metrics, feasible)]
    return feasible, pareto_optimal(points, [o["type"] == "maximize" for o in objectives])


def build_table(events: list[dict[str, Any]], hyperparameter_names: list[str],
                metric_names: list[str], objectives: list[dict[str, Any]] | None = None,
                constraints: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """`objectives` (when several) and `constraints` are the frozen spec's."""
    trials = trial_rows(events)
    several, constraints = len(objectives or []) > 1, constraints or []
    # Judged only when the table shows it: a single-objective table (rebuilt every few
    # seconds while a job runs) pays nothing for the front.
    feasible, optimal = judged(trials, objectives, constraints) if several or constraints \
        else ([], [])
    rows = []
    waited = resource_waits(trials)
    for i, t in enumerate(trials):
        start = t.get("start_time")
        end = t.get("end_time")
        row: dict[str, Any] = {name: t["hyperparameters"].get(name) for name in hyperparameter_names}
        row.update({
            "TrainingJobName": t["training_job_name"],
            "TrainingJobStatus": t["status"],
            "FinalObjectiveValue": t.get("objective_value"),
            "TrainingStartTime": _timestamp(start),
            "TrainingEndTime": _timestamp(end),
            "TrainingElapsedTimeSeconds": (end - start) if start and end else None,
            "TrialNumber": t["trial_number"],
            "FailureReason": t.get("failure_reason"),
            "ObjectiveSteps": t.get("objective_steps"),
            "ExitCode": t.get("exit_code"),
            "Hosts": ",".join(t.get("hosts") or []) or None,
            "GpuIds": ",".join(t.get("gpu_ids") or []) or None,
            "LogPath": t.get("log_path"),
            "ModelArtifact": t.get("model_artifact"),
            "Retries": t.get("retries", 0),
            "ResumedFromStep": t.get("resumed_from_step"),
            "ParentTrainingJob": t.get("parent"),
            "ExploitCount": t.get("exploit_count", 0),
            "QueueWaitSeconds": t.get("queue_wait_seconds"),
            "LaunchSeconds": t.get("launch_seconds"),
            "TeardownSeconds": t.get("teardown_seconds"),
            "ResourceWaitSeconds": None if t.get("queue_wait_seconds") is None else waited[i],
            "S3ModelArtifact": t.get("s3_model_artifact"),
        })
        for metric in metric_names:
            row[metric_column(metric, hyperparameter_names)] = t.get("final_metrics", {}).get(metric)
        if several or constraints:
            row[FEASIBLE] = feasible[i]
        if several:
            row[PARETO_OPTIMAL] = optimal[i]
        rows.append(row)
    judged_columns = ([FEASIBLE] if several or constraints else []) + \
        ([PARETO_OPTIMAL] if several else [])
    columns = (hyperparameter_names + SAGEMAKER_COLUMNS + HPT_COLUMNS
               + [metric_column(m, hyperparameter_names) for m in metric_names] + judged_columns)
    df = pd.DataFrame(rows, columns=columns)
    for col in ("TrainingStartTime", "TrainingEndTime"):
        df[col] = pd.to_datetime(df[col], utc=True)
    for col in ("FinalObjectiveValue", "TrainingElapsedTimeSeconds", *OVERHEAD_COLUMNS,
                "ResourceWaitSeconds"):
        df[col] = pd.to_numeric(df[col])
    df["ResumedFromStep"] = df["ResumedFromStep"].astype("Int64")  # a step, or <NA>
    return df


def resource_waits(trials: list[dict[str, Any]]) -> list[float]:
    """Per trial, how much of its queue wait (from the strategy's proposal to its start) was
    spent waiting for resources: until the last other training job that ended meanwhile
    freed its CPUs and GPUs (Ray Tune proposes a trial before it can place it; on 2 cores,
    a second ml.m5.large job waits for the first). The rest of the wait is hpt's own
    overhead."""
    import bisect

    ends = sorted(t["end_time"] for t in trials if t.get("end_time"))
    waits = []
    for t in trials:
        queued, start = t.get("queue_wait_seconds"), t.get("start_time")
        if queued is None or not start:
            waits.append(0.0)
            continue
        started = start - (t.get("launch_seconds") or 0.0)
        proposed = started - queued
        last = bisect.bisect_right(ends, started) - 1  # the last end before it started
        freed = ends[last] if last >= 0 and ends[last] > proposed else None
        waits.append(round(max(0.0, min(freed, started) - proposed), 4) if freed else 0.0)
    return waits


def metric_column(metric: str, hyperparameter_names) -> str:
    """The column of a metric's final value: its name, or "<name> (metric)" when a tuned
    hyperparameter has that name."""
    return f"{metric} (metric)" if metric in hyperparameter_names else metric


def _timestamp(ts: float | None):
    return pd.Timestamp(ts, unit="s", tz="UTC") if ts else None


def load_table(root: Path, events: list[dict] | None = None) -> pd.DataFrame:
    """The experiment table of one experiment folder, from its journal (works while running);
    `events`: the journal, when the caller has read it already."""
    import json

    spec = json.loads((root / SPEC).read_text())
    if events is None:
        events = list(read_journal(root / JOURNAL))
    return build_table(events, list(spec["hyperparameters"]),
                       [m["name"] for m in spec["metric_definitions"]],
                       spec.get("objectives"), spec.get("constraints"))


def write_table(df: pd.DataFrame, root: Path) -> tuple[Path, Path]:
    """Writes table.parquet and table.csv atomically."""
    parquet, csv = root / "table.parquet", root / "table.csv"
    tmp = csv.with_name("table.csv.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, csv)
    tmp = parquet.with_name("table.parquet.tmp")
    try:
        df.to_parquet(tmp, index=False)
    except (TypeError, ValueError, ImportError):
        # Mixed-type categorical columns (e.g. [1, "a"]) don't fit one Arrow type.
        df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(tmp, index=False)
    os.replace(tmp, parquet)
    return parquet, csv


def rebuild_table(store, spec) -> pd.DataFrame:
    """The table of the store's journal, written to table.parquet / table.csv."""
    events = list(read_journal(store.journal_path))
    frozen = spec.to_frozen_dict()
    df = build_table(events, list(spec.hyperparameters), [m.name for m in spec.metric_definitions],
                     frozen["objectives"], frozen["constraints"])
    write_table(df, store.root)
    return df
