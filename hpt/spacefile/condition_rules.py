"""The rules a space's conditional hyperparameters (`when:`) must follow: a parent is a
categorical range of the space, and no range is its own ancestor. What a condition means for
a training job is hpt/search/conditions.py's."""

from __future__ import annotations

from typing import Any

from hpt.search.conditions import among
from hpt.spacefile.fields import did_you_mean, show

Problem = tuple[tuple, str]


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
                    if not among(value, choices):
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
