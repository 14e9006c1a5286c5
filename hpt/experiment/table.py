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

from hpt.core.schema import (HPT_COLUMNS, OVERHEAD_COLUMNS, SAGEMAKER_COLUMNS, Column, Event,
                             File, Key)
from hpt.experiment.store import JOURNAL, SPEC, read_journal
from hpt.core.objectives import is_feasible, objective_values, pareto_optimal
from hpt.core.trial import TrialStatus

FEASIBLE, PARETO_OPTIMAL = Column.FEASIBLE, Column.PARETO_OPTIMAL


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
CARRIED_ACROSS_ATTEMPTS = ("rungs", Key.PROMOTED_FROM, "parent", Key.EXPLOIT_COUNT)


def trial_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Folds journal events into the latest state of each trial, in trial order."""
    trials: dict[str, dict[str, Any]] = {}
    for ev in events:
        kind = ev.get(Key.EVENT)
        name = ev.get(Key.TRAINING_JOB_NAME)
        if kind == Event.TRIAL_STARTED and ev.get(Key.CONTINUED) and name in trials:
            # A paused job continues (promoted, or resumed by Tune's PBT): not a retry; its
            # metrics so far stay, its hyperparameters are those it now runs with.
            row = trials[name]
            row.update(status=TrialStatus.IN_PROGRESS, failure_reason=None,
                       budget=ev.get(Key.BUDGET), hyperparameters=ev.get(Key.HYPERPARAMETERS, {}))
            if Key.PROMOTED_FROM in ev:
                row.setdefault(Key.PROMOTED_FROM, []).append(ev[Key.PROMOTED_FROM])
        elif kind == Event.TRIAL_STARTED:
            # A training job started again (a retry, or a resumed job's re-run) starts over;
            # the count of earlier attempts, and the rungs it reached, stay.
            earlier = trials.get(name, {})
            retries = earlier[Key.RETRIES] + 1 if name in trials else 0
            trials[name] = {
                Key.RETRIES: retries,
                Key.TRIAL_NUMBER: ev[Key.TRIAL_NUMBER], Key.TRAINING_JOB_NAME: name,
                Key.HYPERPARAMETERS: ev.get(Key.HYPERPARAMETERS, {}),
                Key.STATUS: TrialStatus.IN_PROGRESS,
                Key.START_TIME: ev[Key.TIME], Key.FINAL_METRICS: {}, Key.OBJECTIVE_VALUE: None,
                Key.LOG_PATH: ev.get(Key.LOG_PATH), Key.BUDGET: ev.get(Key.BUDGET),
                **{k: earlier[k] for k in CARRIED_ACROSS_ATTEMPTS if k in earlier},
            }
        elif kind == Event.TRIAL_EXPLOITED and name in trials:
            row = trials[name]
            row.update(parent=ev[Key.PARENT], exploit_count=row.get(Key.EXPLOIT_COUNT, 0) + 1)
        elif kind == Event.TRIAL_PAUSED and name in trials:
            paused = ev[Key.RECORD]
            trials[name].update(paused)
            trials[name].setdefault(Key.RUNGS, {})[ev[Key.RUNG]] = paused.get(Key.OBJECTIVE_VALUE)
            trials[name].setdefault(Key.RUNG_METRICS, {})[ev[Key.RUNG]] = \
                paused.get(Key.FINAL_METRICS) or {}
        elif kind == Event.TRIAL_PROGRESS and name in trials:
            trials[name][Key.OBJECTIVE_VALUE] = ev.get(Key.VALUE)
            trials[name][Key.OBJECTIVE_STEPS] = ev.get(Key.STEP)
        elif kind == Event.TRIAL_ENDED:
            record = ev[Key.RECORD]
            trials[name] = {**trials.get(name, {}), **record}
        elif kind == Event.TRIAL_UPLOADED and name in trials:
            trials[name][Key.S3_MODEL_ARTIFACT] = ev.get(Key.URIS, {}).get("model")
            trials[name][Key.UPLOAD_TIME] = ev.get(Key.TIME)
        elif kind == Event.TRIAL_UPLOAD_FAILED and name in trials:
            trials[name][Key.UPLOAD_FAILURE] = ev.get(Key.REASON)
    return sorted(trials.values(), key=lambda t: t[Key.TRIAL_NUMBER])


def judged(rows: list[dict[str, Any]], objectives: list[dict[str, Any]],
           constraints: list[dict[str, Any]]) -> tuple[list[bool], list[bool]]:
    """Each training job's feasibility and whether it is on the Pareto front (over the
    feasible Completed jobs that have every objective's value)."""
    metrics = [t.get(Key.FINAL_METRICS) or {} for t in rows]
    feasible = [is_feasible(m, constraints) for m in metrics]
    if len(objectives or []) < 2:
        return feasible, [False] * len(rows)
    points = [objective_values(m, objectives)
              if t[Key.STATUS] == TrialStatus.COMPLETED and ok else None
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
        values = t[Key.HYPERPARAMETERS]
        row: dict[str, Any] = {name: values.get(name) for name in hyperparameter_names}
        row.update(_analytics(t, waited[i]))
        for metric in metric_names:
            row[metric_column(metric, hyperparameter_names)] = t.get(Key.FINAL_METRICS,
                                                                     {}).get(metric)
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
    for col in (Column.TRAINING_START_TIME, Column.TRAINING_END_TIME):
        df[col] = pd.to_datetime(df[col], utc=True)
    for col in (Column.FINAL_OBJECTIVE_VALUE, Column.TRAINING_ELAPSED_TIME_SECONDS,
                *OVERHEAD_COLUMNS,
                Column.RESOURCE_WAIT_SECONDS):
        df[col] = pd.to_numeric(df[col])
    df[Column.RESUMED_FROM_STEP] = df[Column.RESUMED_FROM_STEP].astype("Int64")  # a step, or <NA>
    return df


def _analytics(t: dict[str, Any], waited: float) -> dict[str, Any]:
    """A training job's SageMaker and hpt columns, from its row; `waited`: its resource wait."""
    start = t.get(Key.START_TIME)
    end = t.get(Key.END_TIME)
    return {
        Column.TRAINING_JOB_NAME: t[Key.TRAINING_JOB_NAME],
        Column.TRAINING_JOB_STATUS: t[Key.STATUS],
        Column.FINAL_OBJECTIVE_VALUE: t.get(Key.OBJECTIVE_VALUE),
        Column.TRAINING_START_TIME: _timestamp(start),
        Column.TRAINING_END_TIME: _timestamp(end),
        Column.TRAINING_ELAPSED_TIME_SECONDS: (end - start) if start and end else None,
        Column.TRIAL_NUMBER: t[Key.TRIAL_NUMBER],
        Column.FAILURE_REASON: t.get(Key.FAILURE_REASON),
        Column.OBJECTIVE_STEPS: t.get(Key.OBJECTIVE_STEPS),
        Column.EXIT_CODE: t.get(Key.EXIT_CODE),
        Column.HOSTS: ",".join(t.get(Key.HOSTS) or []) or None,
        Column.GPU_IDS: ",".join(t.get(Key.GPU_IDS) or []) or None,
        Column.LOG_PATH: t.get(Key.LOG_PATH),
        Column.MODEL_ARTIFACT: t.get(Key.MODEL_ARTIFACT),
        Column.RETRIES: t.get(Key.RETRIES, 0),
        Column.RESUMED_FROM_STEP: t.get(Key.RESUMED_FROM_STEP),
        Column.PARENT_TRAINING_JOB: t.get(Key.PARENT),
        Column.EXPLOIT_COUNT: t.get(Key.EXPLOIT_COUNT, 0),
        Column.QUEUE_WAIT_SECONDS: t.get(Key.QUEUE_WAIT_SECONDS),
        Column.LAUNCH_SECONDS: t.get(Key.LAUNCH_SECONDS),
        Column.TEARDOWN_SECONDS: t.get(Key.TEARDOWN_SECONDS),
        Column.RESOURCE_WAIT_SECONDS:
            None if t.get(Key.QUEUE_WAIT_SECONDS) is None else waited,
        Column.S3_MODEL_ARTIFACT: t.get(Key.S3_MODEL_ARTIFACT),
    }


def resource_waits(trials: list[dict[str, Any]]) -> list[float]:
    """Per trial, how much of its queue wait (from the strategy's proposal to its start) was
    spent waiting for resources: until the last other training job that ended meanwhile
    freed its CPUs and GPUs (Ray Tune proposes a trial before it can place it; on 2 cores,
    a second ml.m5.large job waits for the first). The rest of the wait is hpt's own
    overhead."""
    import bisect

    ends = sorted(t[Key.END_TIME] for t in trials if t.get(Key.END_TIME))
    waits = []
    for t in trials:
        queued, start = t.get(Key.QUEUE_WAIT_SECONDS), t.get(Key.START_TIME)
        if queued is None or not start:
            waits.append(0.0)
            continue
        started = start - (t.get(Key.LAUNCH_SECONDS) or 0.0)
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
    parquet, csv = root / File.TABLE_PARQUET, root / File.TABLE_CSV
    tmp = csv.with_name(f"{File.TABLE_CSV}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, csv)
    tmp = parquet.with_name(f"{File.TABLE_PARQUET}.tmp")
    try:
        df.to_parquet(tmp, index=False)
    except (TypeError, ValueError, ImportError):
        # Mixed-type categorical columns (e.g. [1, "a"]) don't fit one Arrow type.
        mixed = {c: str for c in df.columns if df[c].dtype == object}
        df.astype(mixed).to_parquet(tmp, index=False)
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
