"""MLflow tracking, pure: which server and experiment, and what a tuning job and its training
jobs become there.

The tuning job is a parent run; each training job a child run (MLflow's `mlflow.parentRunId`
tag nests it) with its hyperparameters as params, every data point of its metrics.jsonl as a
metric point (same step, same time), and, once it ends, SageMaker's status and failure reason
as tags and the table's overhead columns as metrics. No I/O here: hpt/tracking/mlflow_sync.py
reads the experiment folder and talks to the server.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from hpt.core.errors import UserError
from hpt.core.schema import Column, Key, Point
from hpt.experiment.table import OVERHEAD_COLUMNS
from hpt.core.trial import TrialStatus

URI_VARIABLE = "MLFLOW_TRACKING_URI"  # honoured as MLflow's own clients do
# MLflow's run statuses for SageMaker's (a tuning job's statuses have the same names).
RUN_STATUS = {TrialStatus.COMPLETED: "FINISHED", TrialStatus.FAILED: "FAILED",
              TrialStatus.STOPPED: "KILLED", TrialStatus.IN_PROGRESS: "RUNNING"}
# MLflow's limits on one log_batch request.
MAX_METRICS_PER_BATCH = 1000
MAX_TAGS_PER_BATCH = 100
MAX_TAG_LENGTH = 8000


@dataclass(frozen=True)
class MlflowTarget:
    uri: str
    experiment: str


def mlflow_target(spec, cli_uri: str | None, environ: Mapping[str, str]) -> MlflowTarget | None:
    """Where the job is tracked: `--mlflow-uri`, else space.yaml's tracking.mlflow.uri, else
    MLFLOW_TRACKING_URI; None when neither the space nor the command asks for MLflow."""
    section = spec.tracking.mlflow
    if section is None and cli_uri is None:
        return None
    uri = cli_uri or (section.uri if section else None) or environ.get(URI_VARIABLE)
    if not uri:
        raise UserError(f"{spec.source_path}: tracking.mlflow.uri: no tracking server named; "
                        f"set uri: http://HOST:5000, pass --mlflow-uri or set {URI_VARIABLE}")
    experiment = section.experiment if section and section.experiment else spec.name
    return MlflowTarget(uri, experiment)


def run_status(status: str) -> str:
    return RUN_STATUS.get(str(status), "FAILED")


def parent_params(spec: Mapping[str, Any], start: Mapping[str, Any]) -> dict[str, str]:
    """The tuning job's settings (`spec`: the frozen spec; `start`: its job_started event)."""
    objective = spec["objective"]
    params = {"strategy": spec["strategy"], "seed": spec["seed"],
              "objective": objective["metric"], "objective_type": objective["type"],
              "early_stopping": spec["early_stopping"], "runtime": spec["runtime"],
              "max_parallel": spec["limits"]["max_parallel"],
              "max_trials": start.get("max_trials") or spec["limits"].get("max_trials")}
    params.update({f"static.{k}": v for k, v in spec.get("static_hyperparameters", {}).items()})
    params.update({f"range.{k}": json.dumps(v, sort_keys=True)
                   for k, v in spec["hyperparameters"].items()})
    return {k: str(v) for k, v in params.items()}


def parent_tags(name: str, folder: str) -> dict[str, str]:
    return {"mlflow.runName": name, "HyperParameterTuningJobName": name,
            "hpt.experiment_folder": folder}


def child_tags(row: Mapping[str, Any], parent_run_id: str) -> dict[str, str]:
    return {"mlflow.parentRunId": parent_run_id, "mlflow.runName": row[Key.TRAINING_JOB_NAME],
            Column.TRAINING_JOB_NAME: row[Key.TRAINING_JOB_NAME],
            Column.TRIAL_NUMBER: str(row[Key.TRIAL_NUMBER])}


def child_params(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in hyperparameters.items()}


def ended_tags(row: Mapping[str, Any]) -> dict[str, str]:
    """A training job's end, as tags: its status, why, its lineage, its model, and the
    hyperparameters it ended with (PBT changes them; MLflow's params are write-once)."""
    tags = {Column.TRAINING_JOB_STATUS: str(row[Key.STATUS]),
            Column.FAILURE_REASON: row.get(Key.FAILURE_REASON),
            Column.PARENT_TRAINING_JOB: row.get(Key.PARENT),
            Column.MODEL_ARTIFACT: row.get(Key.S3_MODEL_ARTIFACT) or row.get(Key.MODEL_ARTIFACT),
            "Hyperparameters": json.dumps(row.get(Key.HYPERPARAMETERS, {}), sort_keys=True)}
    return {k: str(v)[:MAX_TAG_LENGTH] for k, v in tags.items() if v is not None}


def ended_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """A training job's end, as metrics: the table's duration and overhead columns."""
    start, end = row.get(Key.START_TIME), row.get(Key.END_TIME)
    values = {Column.TRAINING_ELAPSED_TIME_SECONDS: (end - start) if start and end else None,
              Column.RETRIES: row.get(Key.RETRIES, 0),
              Column.EXPLOIT_COUNT: row.get(Key.EXPLOIT_COUNT, 0),
              Column.OBJECTIVE_STEPS: row.get(Key.OBJECTIVE_STEPS),
              Column.RESUMED_FROM_STEP: row.get(Key.RESUMED_FROM_STEP),
              **{column: row.get(_snake(column)) for column in OVERHEAD_COLUMNS}}
    return {k: float(v) for k, v in values.items() if _finite(v)}


def parent_end(state, counts: Mapping[str, int], best: str | None,
               best_value: float | None) -> tuple[str, dict[str, str], dict[str, float]]:
    """The tuning job's end (`state`: its job_state): MLflow status, tags, metrics."""
    tags = {"HyperParameterTuningJobStatus": state.status, "EndReason": state.reason or "",
            "BestTrainingJobName": best or ""}
    metrics = {f"TrainingJobs.{status}": float(n) for status, n in counts.items()}
    if _finite(best_value):
        metrics["BestFinalObjectiveValue"] = float(best_value)
    return run_status(state.status), {k: v for k, v in tags.items() if v}, metrics


def metric_key(name: str) -> str:
    """A metric name as MLflow takes it: characters it refuses (it allows letters, digits
    and `_-. :/`) become `_`; empty, `.` and `..` path segments are dropped."""
    parts = [p for p in re.sub(r"[^\w\-. :/]", "_", name).split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def point_key(point: Mapping[str, Any]) -> tuple[str, int, float, int]:
    """What makes a data point itself (sent once): metric, step, value, time in ms -- a
    point carried into a new attempt (a retry, a PBT exploit) is the same point again."""
    return (metric_key(point[Point.METRIC]), int(point[Point.STEP]), float(point[Point.VALUE]),
            timestamp_ms(point.get(Point.TIMESTAMP)))


def timestamp_ms(seconds: float | None) -> int:
    return int(round(float(seconds or 0.0) * 1000))


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _snake(column: str) -> str:
    """`QueueWaitSeconds` -> `queue_wait_seconds` (the record's field of a table column)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in column).lstrip("_")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)
