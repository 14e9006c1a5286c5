"""The Pareto front of a multi-objective tuning job, and choosing one job from it by a rule
(`hpt best --pick/--weights`, `hpt serve --pick/--weights`, `hpt.pareto_front`).

A rule is `--pick "METRIC<=X,METRIC>=Y"` (filters: `<=`, `>=`, `<`, `>`) and/or
`--weights "METRIC=W,..."` (both: filter, then weigh). Only the front's jobs are candidates:
a job off the front is worse on some objective than one on it. Among the front's jobs that
pass the filters, the one with the
best weighted sum of its objectives (each scaled over those jobs to 0..1, 1 the best) wins;
without weights, the best on the first objective the filters do not name (so "the most
accurate model under 5 MB" is `--pick "model:size_mb<=5"`). Ties go to the earlier trial.
A single-objective job has no front: its candidates are its feasible Completed jobs.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import pandas as pd

from hpt.core.errors import UserError
from hpt.core.schema import Column
from hpt.experiment.table import PARETO_OPTIMAL, load_table, metric_column, resolve_experiment
from hpt.core.trial import TrialStatus

_RULE = re.compile(r"^\s*(?P<metric>.+?)\s*(?P<op><=|>=|<|>)\s*(?P<value>[^<>=]+?)\s*$")
_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b, ">": lambda a, b: a > b}


def pareto_front(name_or_path: str | os.PathLike,
                 experiments_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The Pareto-optimal training jobs of a multi-objective tuning job (experiment table
    rows), best first on the first objective (a tie broken by the next ones)."""
    root = resolve_experiment(name_or_path, experiments_dir)
    spec = _frozen(root)
    return front_of(load_table(root), spec)


def front_of(table: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    objectives = objectives_of(spec)
    if PARETO_OPTIMAL in table.columns:
        front = table[table[PARETO_OPTIMAL].fillna(False).astype(bool)]
    else:
        front = _single_objective_candidates(table)
    # Best first on the first objective, a tie broken by the next ones (as hpt.experiment.best).
    columns = [metric_column(o["metric"], spec["hyperparameters"]) for o in objectives]
    return front.sort_values(columns + [Column.TRIAL_NUMBER],
                             ascending=[o["type"] != "maximize" for o in objectives] + [True]
                             ).reset_index(drop=True)


def objectives_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("objectives") or [spec["objective"]]


def _single_objective_candidates(table: pd.DataFrame) -> pd.DataFrame:
    done = table[table[Column.TRAINING_JOB_STATUS] == TrialStatus.COMPLETED]
    if Column.FEASIBLE in done.columns:
        done = done[done[Column.FEASIBLE].fillna(False).astype(bool)]
    return done[done[Column.FINAL_OBJECTIVE_VALUE].notna()]


def parse_pick(text: str, metrics: list[str], flag: str = "--pick") -> list[tuple[str, str, float]]:
    rules = []
    for part in [p for p in text.split(",") if p.strip()]:
        found = _RULE.match(part)
        if "=<" in part or "=>" in part:
            raise UserError(f"{flag} {text!r}: {part.strip()!r}: write the comparison as <= or "
                            f">= (not =< or =>); e.g. {flag} 'model:size_mb<=5'")
        if found is None:
            raise UserError(f"{flag} {text!r}: {part.strip()!r} is not METRIC<=VALUE (or >=, <, "
                            f">); e.g. {flag} 'model:size_mb<=5'")
        metric, op, value = found["metric"], found["op"], found["value"]
        if metric not in metrics:
            raise UserError(f"{flag} {text!r}: {metric!r} is not a metric of this tuning job "
                            f"(metrics: {', '.join(metrics)}); name one of them")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UserError(f"{flag} {text!r}: {value!r} is not a finite number; e.g. "
                            f"{flag} '{metric}{op}5'")
        rules.append((metric, op, number))
    if not rules:
        raise UserError(f"{flag}: give at least one rule, e.g. {flag} 'model:size_mb<=5'")
    return rules


def parse_weights(text: str, objectives: list[str], flag: str = "--weights") -> dict[str, float]:
    weights = {}
    for part in [p for p in text.split(",") if p.strip()]:
        metric, eq, value = part.rpartition("=")
        metric = metric.strip()
        try:
            weight = float(value) if eq else math.nan
        except ValueError:
            weight = math.nan
        if not eq or metric not in objectives or not math.isfinite(weight) or weight < 0:
            raise UserError(f"{flag} {text!r}: {part.strip()!r} must be OBJECTIVE=WEIGHT with an "
                            f"objective of this job ({', '.join(objectives)}) and a weight >= 0;"
                            f" e.g. {flag} '{objectives[0]}=1'")
        weights[metric] = weight
    if not weights or sum(weights.values()) <= 0:
        raise UserError(f"{flag} {text!r}: the weights sum to 0; give an objective a weight > 0")
    return weights


def choose(front: pd.DataFrame, spec: dict[str, Any], pick: str | None = None,
           weights: str | None = None) -> pd.Series | None:
    """The one job a rule picks from the front (None: no job passes the filters)."""
    objectives = objectives_of(spec)
    metrics = [m["name"] for m in spec["metric_definitions"]]
    rules = parse_pick(pick, metrics) if pick is not None else []
    scale = parse_weights(weights, [o["metric"] for o in objectives]) \
        if weights is not None else None
    kept = front
    for metric, op, value in rules:
        column = kept[metric_column(metric, spec["hyperparameters"])]
        kept = kept[column.notna() & _OPS[op](column, value)]
    if kept.empty:
        return None
    if scale is None:
        named = {metric for metric, _, _ in rules}
        target = next((o for o in objectives if o["metric"] not in named), objectives[0])
        scale = {target["metric"]: 1.0}
    score = pd.Series(0.0, index=kept.index)
    for o in objectives:
        weight = scale.get(o["metric"], 0.0)
        if not weight:
            continue
        values = kept[metric_column(o["metric"], spec["hyperparameters"])].astype(float)
        span = values.max() - values.min()
        scaled = (values - values.min()) / span if span > 0 else values * 0 + 1.0
        score += weight * (scaled if o["type"] == "maximize" else 1.0 - scaled)
    ranked = kept.assign(_score=score).sort_values(["_score", Column.TRIAL_NUMBER],
                                                   ascending=[False, True])
    return ranked.iloc[0].drop("_score")


def _frozen(root) -> dict[str, Any]:
    import json

    from hpt.experiment.store import SPEC

    return json.loads((root / SPEC).read_text())
