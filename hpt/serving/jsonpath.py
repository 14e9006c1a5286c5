"""The JSONPath that SageMaker batch transform accepts in `DataProcessing`'s InputFilter and
OutputFilter, and nothing more: `$` (the record), `.name` and `['name', 'other']` (members of
an object), `[n]` and `[n, m]` (elements of an array, negative from the end), `[a:b]` (a slice,
either end left out), `*` / `[*]` (every member or element), and lists mixing indexes and
slices (`$[0,5:]`). A selection of several members or elements is a list (an object when the
members were named), one of a single index or name is that value itself: `$[1:]` of a CSV row
is the row without its first column, `$.features` of a JSON object is its features.

Pure: `compile_path` checks an expression once (a malformed one is refused when the job is
created, with what is wrong), `select` applies it to a parsed record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 63  # DataProcessing's own limit on an expression


class PathError(ValueError):
    """A malformed expression, or one that does not fit the record it is applied to."""


@dataclass(frozen=True)
class Step:
    """One step of a path: members by name, elements by index or slice, or every child."""
    names: tuple[str, ...] = ()
    picks: tuple[int | slice, ...] = ()
    every: bool = False

    @property
    def single(self) -> bool:
        """A step that selects one value, not a list of them."""
        if self.every:
            return False
        if self.names:
            return len(self.names) == 1
        return len(self.picks) == 1 and isinstance(self.picks[0], int)


_DOT_NAME = re.compile(r"\.([A-Za-z_][\w-]*|\*)")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_QUOTED = re.compile(r"""\s*(['"])(.*?)\1\s*$""")
_INDEX = re.compile(r"\s*(-?\d+)\s*$")
_SLICE = re.compile(r"\s*(-?\d+)?\s*:\s*(-?\d+)?\s*$")


def compile_path(expression: str) -> tuple[Step, ...]:
    """The steps of `expression`; PathError saying what is wrong with it."""
    text = (expression or "$").strip()
    if len(text) > MAX_LENGTH:
        raise PathError(f"{expression!r} is longer than {MAX_LENGTH} characters")
    if not text.startswith("$"):
        raise PathError(f"{expression!r} must start with $ (the record)")
    steps, at = [], 1
    while at < len(text):
        dotted = _DOT_NAME.match(text, at)
        bracket = _BRACKET.match(text, at)
        if dotted:
            name = dotted.group(1)
            steps.append(Step(every=True) if name == "*" else Step(names=(name,)))
            at = dotted.end()
        elif bracket:
            steps.append(_bracket_step(bracket.group(1), expression))
            at = bracket.end()
        else:
            raise PathError(f"{expression!r}: cannot read {text[at:]!r} (supported: $, .name, "
                            f"['name', ...], [n, ...], [a:b], *)")
    return tuple(steps)


def _bracket_step(inside: str, expression: str) -> Step:
    if inside.strip() == "*":
        return Step(every=True)
    parts = inside.split(",")
    quoted = [_QUOTED.match(p) for p in parts]
    if all(quoted):
        return Step(names=tuple(q.group(2) for q in quoted))
    picks: list[int | slice] = []
    for part in parts:
        index, cut = _INDEX.match(part), _SLICE.match(part)
        if index:
            picks.append(int(index.group(1)))
        elif cut:
            picks.append(slice(*(int(g) if g is not None else None for g in cut.groups())))
        else:
            raise PathError(f"{expression!r}: [{inside}] is neither names in quotes nor "
                            f"indexes and slices")
    return Step(picks=tuple(picks))


def select(value: Any, steps: tuple[Step, ...]) -> Any:
    """`value` (a parsed JSON value or a CSV row as a list) through the steps."""
    for step in steps:
        value = _apply(value, step)
    return value


def _apply(value: Any, step: Step) -> Any:
    if step.every:
        if isinstance(value, dict):
            return list(value.values())
        if isinstance(value, list):
            return list(value)
        raise PathError(f"* needs an object or an array, not {_kind(value)}")
    if step.names:
        if not isinstance(value, dict):
            raise PathError(f"member {step.names[0]!r} asked of {_kind(value)}")
        missing = [n for n in step.names if n not in value]
        if missing:
            raise PathError(f"no member {missing[0]!r} (members: {', '.join(value) or 'none'})")
        if step.single:
            return value[step.names[0]]
        return {n: value[n] for n in step.names}
    if not isinstance(value, list):
        raise PathError(f"an index or slice asked of {_kind(value)}")
    picked: list[Any] = []
    for pick in step.picks:
        if isinstance(pick, slice):
            picked.extend(value[pick])
        elif -len(value) <= pick < len(value):
            picked.append(value[pick])
        else:
            raise PathError(f"index {pick} is outside the {len(value)} elements")
    return picked[0] if step.single else picked


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a number")
