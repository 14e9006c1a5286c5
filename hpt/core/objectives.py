"""Several objectives and constraints, judged on final metric values (pure).

Defined once for the searcher (what Optuna is told), the table (`Feasible`, `ParetoOptimal`),
`hpt best`/`hpt serve --pick` and the reports. Objectives are `{metric, type}` and constraints
`{metric, min, max}` as in the frozen spec (spec.json).

- A job is feasible when every constrained metric has a final value within its bounds; a
  metric the job never printed is a violated constraint (nothing says the job met it).
- A job is Pareto-optimal when it is Completed, feasible, has every objective's value, and
  no other such job is at least as good on every objective and better on one.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

# The violation of a constraint whose metric has no final value: infeasible, by an amount
# that keeps Optuna's sums of violations finite.
MISSING_VIOLATION = 1.0e9


def violations(metrics: dict[str, float], constraints: Iterable[dict[str, Any]]) -> list[float]:
    """One value per constraint, <= 0 when met (Optuna's `constraints_func` convention):
    how far the final value is outside its bounds."""
    out = []
    for c in constraints:
        value = metrics.get(c["metric"])
        if value is None or not math.isfinite(value):
            out.append(MISSING_VIOLATION)
            continue
        below = c["min"] - value if c.get("min") is not None else -math.inf
        above = value - c["max"] if c.get("max") is not None else -math.inf
        out.append(float(max(below, above)))
    return out


def is_feasible(metrics: dict[str, float], constraints: Iterable[dict[str, Any]]) -> bool:
    return all(v <= 0 for v in violations(metrics, constraints))


def unmet(metrics: dict[str, float], constraints: Iterable[dict[str, Any]]) -> list[str]:
    """The constraints a job does not meet, said as `metric=value > max` for a reader."""
    constraints = list(constraints)
    said = []
    for c, v in zip(constraints, violations(metrics, constraints)):
        if v > 0:
            value = metrics.get(c["metric"])
            if value is None:
                said.append(f"{c['metric']} never printed")
            elif c.get("max") is not None and value > c["max"]:
                said.append(f"{c['metric']}={value:g} > {c['max']:g}")
            else:
                said.append(f"{c['metric']}={value:g} < {c['min']:g}")
    return said


def objective_values(metrics: dict[str, float], objectives: Sequence[dict[str, Any]]
                     ) -> list[float] | None:
    """The job's value of each objective, or None when one is missing."""
    values = [metrics.get(o["metric"]) for o in objectives]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    """`a` is at least as good as `b` on every objective and better on one."""
    signed_a = [x if up else -x for x, up in zip(a, maximize)]
    signed_b = [x if up else -x for x, up in zip(b, maximize)]
    return all(x >= y for x, y in zip(signed_a, signed_b)) and signed_a != signed_b


def pareto_optimal(points: Sequence[Sequence[float] | None], maximize: Sequence[bool]
                   ) -> list[bool]:
    """For each point (None: not a candidate), whether no other candidate dominates it.
    Vectorized: O(n^2) comparisons in numpy, fine for tens of thousands of jobs."""
    import numpy as np

    candidates = [i for i, p in enumerate(points) if p is not None]
    optimal = [False] * len(points)
    if not candidates:
        return optimal
    signs = np.array([1.0 if up else -1.0 for up in maximize])
    values = np.array([points[i] for i in candidates], dtype=float) * signs
    for row, i in enumerate(candidates):
        at_least = (values >= values[row]).all(axis=1)
        better = (values > values[row]).any(axis=1)
        optimal[i] = not bool((at_least & better).any())
    return optimal


def nondominated_ranks(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """The front each point is on (0: no point dominates it; 1: only points of front 0 do;
    ...), by NSGA-II's non-dominated sorting."""
    n = len(points)
    beaten_by = [sum(dominates(points[j], points[i], maximize) for j in range(n) if j != i)
                 for i in range(n)]
    beats = [[j for j in range(n) if j != i and dominates(points[i], points[j], maximize)]
             for i in range(n)]
    ranks, front, level = [0] * n, [i for i in range(n) if beaten_by[i] == 0], 0
    while front:
        following = []
        for i in front:
            ranks[i] = level
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        front, level = following, level + 1
    return ranks


def crowding_distances(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II's crowding distance of each point within its set: the sum over objectives of
    the gap between its neighbours, normalised by the objective's span; the extremes get
    infinity (a front's ends are kept first)."""
    n = len(points)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for k in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][k])
        span = points[order[-1]][k] - points[order[0]][k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if span <= 0:
            continue
        for before, i, after in zip(order, order[1:], order[2:]):
            distance[i] += (points[after][k] - points[before][k]) / span
    return distance


def best_first(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """The points' indices from best to worst with several objectives: by non-dominated
    front, then, within a front, the larger crowding distance first (it keeps the front
    spread, as NSGA-II and Syne Tune's MOASHA do); ties keep the points' order."""
    ranks = nondominated_ranks(points, maximize)
    crowding = [0.0] * len(points)
    for level in set(ranks):
        members = [i for i, r in enumerate(ranks) if r == level]
        for i, d in zip(members, crowding_distances([points[i] for i in members])):
            crowding[i] = d
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowding[i]))
