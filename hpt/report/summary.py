"""Reading a tuning job back: the table, its status summary, the best trial, text formats."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hpt.core.schema import POINT_KEYS, Column, Event, File, Key, Point
from hpt.experiment.data_points import read_points
from hpt.experiment.best import BestSoFar, summary
from hpt.experiment.job_state import IN_PROGRESS, RESUMABLE, JobState, job_state
from hpt.experiment.lock import holder
from hpt.experiment.store import JOURNAL, read_journal
from hpt.experiment.table import experiments_dir as experiments_dir_of
from hpt.experiment.table import (FEASIBLE, OVERHEAD_COLUMNS, PARETO_OPTIMAL, load_table,
                                  metric_column, resolve_experiment, trial_rows)
from hpt.core.trial import TrialStatus

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
    for job, number in zip(table[Column.TRAINING_JOB_NAME], table[Column.TRIAL_NUMBER]):
        # Found in the job's folder, not at the journal's absolute paths: a copied or moved
        # experiment folder (shared storage, another machine) keeps its curves.
        for point in read_points(root / job / File.METRICS):
            rows.append((job, number, *(point.get(key) for key in POINT_KEYS)))
    df = pd.DataFrame(rows,
                      columns=[Column.TRAINING_JOB_NAME, Column.TRIAL_NUMBER, *POINT_KEYS])
    df[Point.TIMESTAMP] = pd.to_datetime(df[Point.TIMESTAMP], unit="s", utc=True)
    return df


def list_experiments(experiments_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per tuning job under the experiments folder: status, trials, best, times."""
    root = experiments_dir_of(experiments_dir)
    rows = []
    for spec_file in sorted(root.glob(f"*/{File.SPEC}")) if root.is_dir() else []:
        folder = spec_file.parent
        events = list(read_journal(folder / JOURNAL))
        state = state_of(folder, events)
        best = best_trial(folder, events=events)
        first = next((e[Key.TIME] for e in events), None)
        last_end = next((e[Key.TIME] for e in reversed(events) if e[Key.EVENT] == Event.JOB_ENDED),
                        None)
        rows.append({
            "TuningJobName": folder.name, "Status": state.status, "EndReason": state.reason,
            "TrainingJobs": sum(1 for _ in {e.get(Key.TRAINING_JOB_NAME) for e in events
                                            if e[Key.EVENT] == Event.TRIAL_STARTED}),
            "BestObjective": best[Column.FINAL_OBJECTIVE_VALUE] if best else None,
            "ObjectiveMetric": _spec_of(folder)["objective"]["metric"],
            "CreationTime": pd.Timestamp(first, unit="s", tz="UTC") if first else None,
            "EndTime": pd.Timestamp(last_end, unit="s", tz="UTC")
            if last_end and state.status != IN_PROGRESS else None,
        })
    from hpt.experiment.api_requests import unlaunched_tuning_jobs

    for job in unlaunched_tuning_jobs(root):  # asked of hpt api, no experiment folder
        rows.append({"TuningJobName": job["TuningJobName"], "Status": job["Status"],
                     "EndReason": job["Failure"], "TrainingJobs": 0,
                     "BestObjective": None, "ObjectiveMetric": None,
                     "CreationTime": pd.Timestamp(job["CreationTime"], unit="s", tz="UTC"),
                     "EndTime": None})
    df = pd.DataFrame(rows, columns=["TuningJobName", "Status", "EndReason", "TrainingJobs",
                                     "BestObjective", "ObjectiveMetric", "CreationTime",
                                     "EndTime"])
    for column in ("CreationTime", "EndTime"):
        df[column] = pd.to_datetime(df[column], utc=True)
    return df


def list_api_jobs(experiments_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per training or transform job hpt api ran on their own under the experiments
    folder: its kind, name, status, reason and times."""
    from hpt.experiment.api_requests import jobs_on_their_own

    df = pd.DataFrame(jobs_on_their_own(experiments_dir_of(experiments_dir)),
                      columns=["Kind", "Name", "Status", "Reason", "CreationTime", "EndTime"])
    for column in ("CreationTime", "EndTime"):
        df[column] = pd.to_datetime(df[column], unit="s", utc=True)
    return df


def _spec_of(root: Path) -> dict[str, Any]:
    return json.loads((root / File.SPEC).read_text())


def _maximize(spec: dict[str, Any]) -> bool:
    return spec["objective"]["type"] == "maximize"


def best_trial(name_or_path: str | os.PathLike,
               experiments_dir: str | os.PathLike | None = None,
               events: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The best completed training job: name, objective, hyperparameters, model path.
    `events`: the journal, when the caller has read it already."""
    root = resolve_experiment(name_or_path, experiments_dir)
    spec = _spec_of(root)
    if events is None:
        events = list(read_journal(root / JOURNAL))
    best = BestSoFar.of(spec).seeded(trial_rows(events))
    return summary(best.record, spec) if best.record is not None else None


def front_trials(name_or_path: str | os.PathLike,
                 experiments_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The Pareto front of a multi-objective job as `hpt best` prints it, best first on the
    first objective."""
    from hpt.report.front import front_of

    root = resolve_experiment(name_or_path, experiments_dir)
    spec = _spec_of(root)
    return _summaries(root, spec, front_of(load_table(root), spec)[Column.TRAINING_JOB_NAME])


def said_front(front: list[dict[str, Any]], most: int = 10) -> str:
    """The front in one line, for a message: each job's name and objective values."""
    return "; ".join(f"{t[Column.TRAINING_JOB_NAME]} {json.dumps(t['ObjectiveValues'])}"
                     for t in front[:most]) or "none yet"


def picked_trial(name_or_path: str | os.PathLike, experiments_dir: str | os.PathLike | None,
                 pick: str | None, weights: str | None) -> dict[str, Any] | None:
    """The one job `--pick`/`--weights` choose from the front (None: none passes)."""
    from hpt.report.front import choose, front_of

    root = resolve_experiment(name_or_path, experiments_dir)
    spec = _spec_of(root)
    chosen = choose(front_of(load_table(root), spec), spec, pick, weights)
    return None if chosen is None else _summaries(root, spec, [chosen[Column.TRAINING_JOB_NAME]])[0]


def _summaries(root: Path, spec: dict[str, Any], names) -> list[dict[str, Any]]:
    from hpt.report.front import objectives_of

    rows = {r[Key.TRAINING_JOB_NAME]: r for r in trial_rows(list(read_journal(root / JOURNAL)))}
    out = []
    for name in names:
        row = rows[name]
        metrics = row.get(Key.FINAL_METRICS) or {}
        out.append({**summary(row, spec), "ObjectiveValues": {
            o["metric"]: metrics.get(o["metric"]) for o in objectives_of(spec)}})
    return out


def state_of(root: Path, events: list[dict[str, Any]] | None = None) -> JobState:
    """The tuning job's state: its journal and whether a live launcher holds its lock."""
    if events is None:
        events = list(read_journal(root / JOURNAL))
    return job_state(events, holder(root))


def job_status(name_or_path: str | os.PathLike,
               experiments_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Counts by status, best so far, running trials, and how the job ended (if it did)."""
    root = resolve_experiment(name_or_path, experiments_dir)
    events = list(read_journal(root / JOURNAL))  # read once: 12 MB at 10 000 trials
    df = load_table(root, events)
    state = state_of(root, events)
    return {
        "TuningJobName": _spec_of(root)["name"],
        "Status": state.status,
        "EndReason": state.reason,
        Column.FAILURE_REASON: state.failure,
        "Description": state.describe(),
        "LauncherPid": (state.writer or {}).get("pid"),
        "MaxTrials": state.start.get("max_trials"),
        # The command that continues a job stopped before its end, as its launch was typed.
        "ResumeCommand": state.start.get(Key.RESUME_COMMAND)
        if state.status != IN_PROGRESS and state.reason in RESUMABLE else None,
        "Counts": {k: int(v) for k, v in df[Column.TRAINING_JOB_STATUS].value_counts().items()},
        "Best": best_trial(root, events=events),
        "ParetoFrontSize": int(df[Column.PARETO_OPTIMAL].fillna(False).astype(bool).sum())
        if Column.PARETO_OPTIMAL in df.columns else None,
        "Running": df.loc[df[Column.TRAINING_JOB_STATUS] == TrialStatus.IN_PROGRESS,
                          Column.TRAINING_JOB_NAME].tolist()
        if state.status == IN_PROGRESS else [],
        "ExperimentDir": str(root),
        "Overhead": overhead_summary(df),
        "Gpus": gpu_utilisation(df, _spec_of(root)["trainer"].get("gpus_per_host", 0)),
    }


def gpu_utilisation(df: pd.DataFrame, gpus_per_host: float) -> dict[str, dict[str, float]]:
    """Per GPU id: the training jobs that ran on it and its busy share of the job's span
    (a host on a fraction of a device counts its share: 1/⌊1/f⌋, controller/slots.py)."""
    from hpt.core.gpu_share import device_share

    ran = df[df[Column.GPU_IDS].notna() & df[Column.TRAINING_START_TIME].notna() &
             df[Column.TRAINING_END_TIME].notna()]
    if ran.empty:
        return {}
    span = (
        ran[Column.TRAINING_END_TIME].max() - ran[Column.TRAINING_START_TIME].min()).total_seconds()
    share = float(device_share(gpus_per_host))
    seconds = (ran[Column.TRAINING_END_TIME] - ran[Column.TRAINING_START_TIME]).dt.total_seconds()
    found: dict[str, dict[str, float]] = {}
    for ids, busy in zip(ran[Column.GPU_IDS], seconds):
        for gpu in str(ids).split(","):
            entry = found.setdefault(gpu, {"TrainingJobs": 0, "BusySeconds": 0.0})
            entry["TrainingJobs"] += 1
            entry["BusySeconds"] += busy * share
    for entry in found.values():
        entry["BusySeconds"] = round(entry["BusySeconds"], 3)
        entry["Utilisation"] = round(entry["BusySeconds"] / span, 3) if span > 0 else 0.0
    return dict(sorted(found.items()))


def overhead_summary(df: pd.DataFrame) -> dict[str, float]:
    """hpt's per-trial cost around the scripts: totals and the mean per finished trial. The
    wait for resources (ResourceWaitSeconds, inside the queue wait) is not hpt's: it is
    left out of the per-trial figures and totalled apart."""
    done = df[df[OVERHEAD_COLUMNS].notna().any(axis=1)]
    if done.empty:
        return {}
    waited = done[Column.RESOURCE_WAIT_SECONDS].fillna(0)
    per_trial = done[OVERHEAD_COLUMNS].fillna(0).sum(axis=1) - waited
    summary = {f"Total{c}": round(float(done[c].sum()), 3) for c in OVERHEAD_COLUMNS}
    summary["TotalResourceWaitSeconds"] = round(float(waited.sum()), 3)
    summary["MeanPerTrialSeconds"] = round(float(per_trial.mean()), 4)
    # The median is the typical trial: the first ones also wait for their actors to start.
    summary["MedianPerTrialSeconds"] = round(float(per_trial.median()), 4)
    return summary


def readable_table(df: pd.DataFrame, spec: dict[str, Any], width: int) -> str:
    """What `hpt report NAME` prints on a terminal: one line per training job, best first,
    the columns a reader compares (status, objective, the tuned hyperparameters, duration,
    the reason shortened), cut to `width` characters. `--all-columns` prints every column."""
    objective = spec["objective"]["metric"]
    done = df[Column.TRAINING_JOB_STATUS].eq(TrialStatus.COMPLETED) & df[
        Column.FINAL_OBJECTIVE_VALUE].notna()
    ranked = df.assign(_done=~done).sort_values(
        ["_done", Column.FINAL_OBJECTIVE_VALUE, Column.TRIAL_NUMBER],
        ascending=[True, not _maximize(spec), True], na_position="last")
    hyperparameters = spec["hyperparameters"]
    # Several objectives: each one's value, and whether the job is on the front / feasible.
    judged = {o["metric"]: metric_column(o["metric"], hyperparameters)
              for o in (spec.get("objectives") or [])[1:]}
    judged.update({label: column for label, column in (("front", PARETO_OPTIMAL),
                                                       ("feasible", FEASIBLE))
                   if column in df.columns})
    columns = {"#": Column.TRIAL_NUMBER, "status": Column.TRAINING_JOB_STATUS,
               objective: Column.FINAL_OBJECTIVE_VALUE, **judged,
               **{name: name for name in hyperparameters},
               "seconds": Column.TRAINING_ELAPSED_TIME_SECONDS, "reason": Column.FAILURE_REASON}
    # Column by column (iterrows builds a Series per row: 0.5 s at 10 000 rows).
    cells = [[_cell(value, column) for value in ranked[column].tolist()]
             for column in columns.values()]
    rows = [list(row) for row in zip(*cells)]
    return render_rows(list(columns), rows, width)


def render_rows(headers: list[str], rows: list[list[str]], width: int) -> str:
    """A plain-text table of at most `width` characters a line. When it would be wider, it
    gives up room in this order: the last column (a reason) down to 12 characters, then
    headers longer than their values (abbreviated), then, widest first, the values
    themselves; a cut cell ends in '…'."""
    n = len(headers)
    cells = [max([len(r[i]) for r in rows], default=0) for i in range(n)]
    widths = [max(len(h), c) for h, c in zip(headers, cells)]
    excess = sum(widths) + 2 * (n - 1) - width
    floors = [min(w, max(4, c)) for w, c in zip(widths, cells)]
    if n:
        floors[-1] = min(widths[-1], 12)
    for floor in (floors, [min(w, 3) for w in widths]):
        if n and floor is floors:
            cut = max(0, min(excess, widths[-1] - floor[-1]))
            widths[-1] -= cut
            excess -= cut
        while excess > 0:
            wide = [i for i in range(n) if widths[i] > floor[i]]
            if not wide:
                break
            widths[max(wide, key=lambda i: widths[i])] -= 1
            excess -= 1

    def line(row: list[str]) -> str:
        return "  ".join(_fit(c, w) for c, w in zip(row, widths)).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    return "\n".join(out) + "\n"


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[:width - 1] + "…"


def _cell(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == Column.FAILURE_REASON:  # its first line and its last (a stderr tail's exception)
        lines = [line.strip() for line in str(value).splitlines() if line.strip()]
        return " … ".join(lines[:1] + lines[1:][-1:])
    if column == Column.TRAINING_ELAPSED_TIME_SECONDS:
        return f"{value:.1f}"
    if column in (PARETO_OPTIMAL, FEASIBLE):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(df: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        # json, not DataFrame.to_json: that rounds floats to 10 digits, and a value copied
        # from the report must be the one the trial ran with.
        records = [{k: _json_value(v) for k, v in row.items()} for row in df.to_dict("records")]
        return json.dumps(records, indent=2) + "\n"
    shown = df.drop(columns=[Column.LOG_PATH, Column.MODEL_ARTIFACT, Column.FAILURE_REASON],
                    errors="ignore")
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


def _json_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return _plain(value)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values, for JSON."""
    return value.item() if hasattr(value, "item") else value
