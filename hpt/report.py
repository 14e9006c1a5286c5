"""Reading a tuning job back: the table, its status summary, the best trial, text formats."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hpt.experiment.store import JOURNAL, read_journal
from hpt.experiment.table import experiments_dir as experiments_dir_of
from hpt.experiment.table import OVERHEAD_COLUMNS, load_table, resolve_experiment

FORMATS = ("table", "csv", "json", "markdown")


def load_experiment(name_or_path: str | os.PathLike,
                    experiments_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The experiment table as a DataFrame: SageMaker analytics columns first, then hpt's."""
    return load_table(resolve_experiment(name_or_path, experiments_dir))


def load_metrics(name_or_path: str | os.PathLike,
                 experiments_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every metric data point of every training job, long format: TrainingJobName,
    TrialNumber, metric, step, value, timestamp (UTC) — learning curves, in pandas."""
    root = resolve_experiment(name_or_path, experiments_dir)
    rows = []
    table = load_table(root)
    for job, number, log in zip(table["TrainingJobName"], table["TrialNumber"], table["LogPath"]):
        path = Path(log).parent / "metrics.jsonl" if isinstance(log, str) else None
        if path is None or not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                point = json.loads(line)
            except ValueError:  # a torn last line of a job that was killed
                continue
            rows.append((job, number, point["metric"], point["step"], point["value"],
                         point["timestamp"]))
    df = pd.DataFrame(rows, columns=["TrainingJobName", "TrialNumber", "metric", "step",
                                     "value", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    return df


def list_experiments(experiments_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per tuning job under the experiments folder: status, trials, best, times."""
    root = experiments_dir_of(experiments_dir)
    rows = []
    for spec_file in sorted(root.glob("*/spec.json")) if root.is_dir() else []:
        folder = spec_file.parent
        events = list(read_journal(folder / JOURNAL))
        status, reason, _ = run_state(events)
        best = best_trial(folder)
        first = next((e["time"] for e in events), None)
        last_end = next((e["time"] for e in reversed(events) if e["event"] == "job_ended"), None)
        rows.append({
            "TuningJobName": folder.name, "Status": status, "EndReason": reason,
            "TrainingJobs": sum(1 for _ in {e.get("training_job_name") for e in events
                                            if e["event"] == "trial_started"}),
            "BestObjective": best["FinalObjectiveValue"] if best else None,
            "ObjectiveMetric": _spec_of(folder)["objective"]["metric"],
            "CreationTime": pd.Timestamp(first, unit="s", tz="UTC") if first else None,
            "EndTime": pd.Timestamp(last_end, unit="s", tz="UTC")
            if last_end and status != "InProgress" else None,
        })
    return pd.DataFrame(rows, columns=["TuningJobName", "Status", "EndReason", "TrainingJobs",
                                       "BestObjective", "ObjectiveMetric", "CreationTime",
                                       "EndTime"])


def _spec_of(root: Path) -> dict[str, Any]:
    return json.loads((root / "spec.json").read_text())


def _maximize(spec: dict[str, Any]) -> bool:
    return spec["objective"]["type"] == "maximize"


def best_trial(name_or_path: str | os.PathLike,
               experiments_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The best completed training job: name, objective, hyperparameters, model path."""
    root = resolve_experiment(name_or_path, experiments_dir)
    spec = _spec_of(root)
    df = load_table(root)
    done = df[(df["TrainingJobStatus"] == "Completed") & df["FinalObjectiveValue"].notna()]
    if done.empty:
        return None
    column = done["FinalObjectiveValue"]
    row = done.loc[column.idxmax() if _maximize(spec) else column.idxmin()]
    hyperparameters = {name: _plain(row[name]) for name in spec["hyperparameters"]}
    return {
        "TrainingJobName": row["TrainingJobName"],
        "FinalObjectiveValue": float(row["FinalObjectiveValue"]),
        "ObjectiveMetric": spec["objective"]["metric"],
        "HyperParameters": hyperparameters,
        "StaticHyperParameters": spec.get("static_hyperparameters", {}),
        "ModelArtifact": row["ModelArtifact"],
        "LogPath": row["LogPath"],
    }


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not a running launcher
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def run_state(events: list[dict[str, Any]]) -> tuple[str, str | None, dict[str, Any]]:
    """(status, end reason, the latest job_started/job_resumed event) of a tuning job.

    Status as SageMaker names a tuning job's: InProgress while its launcher runs, Completed
    or Stopped once it ended; a launcher that died without ending the job leaves it
    Stopped with reason LauncherLost (`hpt launch --resume` continues it).
    """
    starts = [i for i, e in enumerate(events) if e["event"] in ("job_started", "job_resumed")]
    if not starts:
        return "InProgress", None, {}
    start = events[starts[-1]]
    ended = next((e for e in events[starts[-1]:] if e["event"] == "job_ended"), None)
    if ended is not None:
        stopped = ended["reason"] in ("Stopped", "Interrupted")
        return ("Stopped" if stopped else "Completed"), ended["reason"], start
    if _pid_alive(start.get("pid")):
        return "InProgress", None, start
    return "Stopped", "LauncherLost", start


def job_status(name_or_path: str | os.PathLike,
               experiments_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Counts by status, best so far, running trials, and how the job ended (if it did)."""
    root = resolve_experiment(name_or_path, experiments_dir)
    df = load_table(root)
    status, reason, started = run_state(list(read_journal(root / JOURNAL)))
    return {
        "TuningJobName": _spec_of(root)["name"],
        "Status": status,
        "EndReason": reason,
        "MaxTrials": started.get("max_trials"),
        "Counts": {k: int(v) for k, v in df["TrainingJobStatus"].value_counts().items()},
        "Best": best_trial(root),
        "Running": df.loc[df["TrainingJobStatus"] == "InProgress", "TrainingJobName"].tolist()
        if status == "InProgress" else [],
        "ExperimentDir": str(root),
        "Overhead": overhead_summary(df),
    }


def overhead_summary(df: pd.DataFrame) -> dict[str, float]:
    """hpt's per-trial cost around the scripts: totals and the mean per finished trial."""
    done = df[df[OVERHEAD_COLUMNS].notna().any(axis=1)]
    if done.empty:
        return {}
    per_trial = done[OVERHEAD_COLUMNS].fillna(0).sum(axis=1)
    summary = {f"Total{c}": round(float(done[c].sum()), 3) for c in OVERHEAD_COLUMNS}
    summary["MeanPerTrialSeconds"] = round(float(per_trial.mean()), 4)
    # The median is the typical trial: the first ones also wait for their actors to start.
    summary["MedianPerTrialSeconds"] = round(float(per_trial.median()), 4)
    return summary


def format_table(df: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", date_format="iso", indent=2) + "\n"
    shown = df.drop(columns=["LogPath", "ModelArtifact", "FailureReason"], errors="ignore")
    if fmt == "markdown":
        return _markdown(df) + "\n"
    with pd.option_context("display.max_columns", None, "display.width", 200):
        return shown.to_string(index=False) + "\n"


def _markdown(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        text = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, df.columns)) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values, for JSON."""
    return value.item() if hasattr(value, "item") else value
