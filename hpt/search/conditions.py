"""Conditional hyperparameters (`when:`), pure: which ranges a training job has, in which
order they are drawn, and the grid's points. The rules a space's conditions must follow
are the space file's (hpt/spacefile/condition_rules.py).

A range with `when: {parent: [v, ...]}` exists in a training job only when every parent is
itself in the job and took one of the listed values; a job's script receives only the
hyperparameters that exist for it, as SageMaker passes only the ones it has.
"""

from __future__ import annotations

import itertools
import math
from typing import Any


def exists(rng, values: dict[str, Any]) -> bool:
    """Whether a range exists given the values drawn so far (its parents' values)."""
    return not rng.when or all(parent in values and among(values[parent], allowed)
                               for parent, allowed in rng.when.items())


def among(value: Any, allowed: list) -> bool:
    # 1 and true are equal to Python; a categorical's values never hold both (ranges.py).
    return any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed)


def draw_order(ranges: dict[str, Any]) -> list[str]:
    """The ranges' names, parents before the ranges they condition (else as written)."""
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str, path: tuple[str, ...]) -> None:
        if name in placed or name in path or name not in ranges:
            return
        for parent in (ranges[name].when or {}):
            place(parent, path + (name,))
        placed.add(name)
        order.append(name)

    for name in ranges:
        place(name, ())
    return order


def existing(ranges: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The values of the ranges that exist for this job (the others are dropped)."""
    kept: dict[str, Any] = {}
    for name in draw_order(ranges):
        if name in values and exists(ranges[name], kept):
            kept[name] = values[name]
    return kept


def grid(ranges: dict[str, Any]) -> list[dict[str, Any]]:
    """Every distinct point of the categorical ranges' cross-product, in the product's order.
    A conditional range that does not exist at a point is left out of it, so that point is
    offered once, not once per value of the absent range."""
    names = list(ranges)
    points: dict[tuple, dict[str, Any]] = {}
    for combo in itertools.product(*(ranges[n].values for n in names)):
        point = existing(ranges, dict(zip(names, combo)))
        points.setdefault(tuple((n, type(v).__name__, v) for n, v in point.items()), point)
    return list(points.values())


def grid_count(ranges: dict[str, Any]) -> int:
    """The number of points `grid` offers (without listing them when nothing is conditional)."""
    if not any(rng.when for rng in ranges.values()):
        return math.prod(len(rng.values) for rng in ranges.values())
    return len(grid(ranges))
