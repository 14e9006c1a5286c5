"""Conditional hyperparameters (`when:`), pure: which ranges a training job has, in which
order they are drawn, and the rules a space's conditions must follow.

A range with `when: {parent: [v, ...]}` exists in a training job only when every parent is
itself in the job and took one of the listed values; a job's script receives only the
hyperparameters that exist for it, as SageMaker passes only the ones it has.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hpt.spec.fields import did_you_mean, show

Problem = tuple[tuple, str]


def exists(rng, values: dict[str, Any]) -> bool:
    """Whether a range exists given the values drawn so far (its parents' values)."""
    return not rng.when or all(parent in values and _among(values[parent], allowed)
                               for parent, allowed in rng.when.items())


def _among(value: Any, allowed: list) -> bool:
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


# -- the rules (hpt.spec.across runs them) ----------------------------------------------------

def _parents_are_categorical(values: dict[str, Any]) -> list[Problem]:
    tuned, static = values.get("hyperparameters"), values.get("static_hyperparameters") or {}
    if tuned is None:
        return []
    found: list[Problem] = []
    for name, rng in tuned.items():
        for parent, allowed in (rng.when or {}).items():
            at = ("hyperparameters", name, "when", parent)
            if parent == name:
                found.append((at, "a range cannot depend on itself; name another "
                                  "categorical hyperparameter"))
            elif parent not in tuned:
                where = ("is a static hyperparameter, always the same" if parent in static
                         else "is not a tuned hyperparameter")
                guess = did_you_mean(parent, [n for n in tuned if n != name])
                found.append((at, f"{show(parent)} {where}; name a categorical range of "
                                  f"hyperparameters" + (f" (did you mean {guess!r}?)"
                                                        if guess else "")))
            elif tuned[parent].type != "categorical":
                found.append((at, f"{show(parent)} must be categorical to condition a range (got "
                                  f"type: {tuned[parent].type}); make it {{type: categorical, "
                                  f"values: [...]}} or remove the condition"))
            else:
                choices = tuned[parent].values
                for value in allowed:
                    if not _among(value, choices):
                        found.append((at, f"{show(value)} is not a value of {show(parent)} "
                                          f"({', '.join(map(show, choices))}); list values "
                                          f"it can take"))
    return found


def _no_cycles(values: dict[str, Any]) -> list[Problem]:
    tuned = values.get("hyperparameters")
    if tuned is None:
        return []
    found: list[Problem] = []
    done: set[str] = set()

    def parents(name: str) -> list[str]:
        return [p for p in (tuned[name].when or {}) if p in tuned and p != name]

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            found.append((("hyperparameters", cycle[0], "when"),
                          f"conditions form a cycle ({' -> '.join(cycle)}): no range of it "
                          f"could ever be drawn first; remove one of these conditions"))
            return
        if name in done:
            return
        for parent in parents(name):
            visit(parent, path + [name])
        done.add(name)

    for name in tuned:
        visit(name, [])
    return found


CONDITION_RULES = (_parents_are_categorical, _no_cycles)
