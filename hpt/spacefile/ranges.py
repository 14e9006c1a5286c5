"""Hyperparameter ranges: SageMaker's continuous, integer and categorical parameter ranges.

Bounds are inclusive. `scaling` follows SageMaker: `log` needs min > 0, `reverse_log` is for
continuous ranges inside [0, 1). Categorical values must be distinct as Python (and Optuna)
compares them, so `1` and `true` cannot both be choices.

`when: {parent: [values]}` (an hpt extension) makes a range conditional: it exists only in
training jobs whose categorical `parent` took one of those values (several parents: all must
hold). The range's own check is its shape; the parent's existence, type and values, and
cycles of conditions, are rules across ranges (hpt.spacefile.across).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from hpt.spacefile.fields import (SpecModel, aliased_choice, integer, number, optional, problem,
                             problems, show)

RANGE_TYPES = ("continuous", "integer", "categorical")
# SageMaker's ScalingType names -> hpt's.
SCALING_ALIASES = {"logarithmic": "log", "reverselogarithmic": "reverse_log"}


def _range_shape(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, list):
        raise problem(f"must be a range mapping, not a list (got {show(value)}); for choices "
                      f"write {{type: categorical, values: [...]}}")
    if not isinstance(value, dict):
        raise problem(f"must be a range such as {{type: continuous, min: 0.001, max: 0.1}} "
                      f"(got {show(value)}); a fixed value goes in static_hyperparameters")
    kind = value.get("type")
    if isinstance(kind, str) and kind.strip().lower() in RANGE_TYPES:
        return {**value, "type": kind.strip().lower()}
    return value


def _integer_bound(value: Any) -> int:
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        raise problem(f"must be an integer for type: integer (got {show(value)}); use a whole "
                      f"number, or type: continuous for a fractional range")
    return integer()(value)


def _integer_scaling(value: Any) -> str:
    if isinstance(value, str) and re.sub(r"[^a-z]", "", value.lower()) in ("reverselog",
                                                                          "reverselogarithmic"):
        raise problem("reverse_log is for continuous ranges inside [0, 1) only "
                      f"(got {show(value)}); use scaling: linear, log or auto")
    return aliased_choice(SCALING_ALIASES, "auto", "linear", "log")(value)


def _bounds_problems(lo: float, hi: float, scaling: str) -> list[tuple[tuple, str]]:
    found = []
    if lo > hi:
        found.append((("min",), f"must be <= max (got min {show(lo)} > max {show(hi)}); "
                                f"swap min and max"))
    if scaling == "log" and lo <= 0:
        found.append((("min",), f"must be > 0 for scaling: log (got {show(lo)}); "
                                f"use scaling: linear or a positive min"))
    if scaling == "reverse_log":
        if lo < 0:
            found.append((("min",), f"must be >= 0 for scaling: reverse_log (got {show(lo)}); "
                                    f"use a range inside [0, 1) or scaling: linear"))
        if hi >= 1:
            found.append((("max",), f"must be < 1 for scaling: reverse_log (got {show(hi)}); "
                                    f"use a max below 1 (e.g. 0.999) or scaling: linear"))
    return found


def _when(value: Any) -> dict[str, list]:
    example = "e.g. when: {optimizer: [sgd]}"
    if not isinstance(value, dict) or not value:
        raise problem(f"must map a categorical hyperparameter to the values this range exists "
                      f"for (got {show(value)}); {example}")
    found: list = []
    out: dict[str, list] = {}
    for parent, allowed in value.items():
        if not isinstance(parent, str) or not parent:
            found.append(((parent,), f"must name a hyperparameter (got {show(parent)}); {example}"))
            continue
        if not isinstance(allowed, list):
            allowed = [allowed]  # `when: {optimizer: sgd}` is one value
        if not allowed:
            found.append(((parent,), f"must list at least one value of {parent!r} (got []); "
                                     f"{example}"))
        elif bad := [v for v in allowed if not isinstance(v, (str, int, float))]:
            found.append(((parent,), f"values must be strings, numbers or bools (got "
                                     f"{show(bad[0])}); list values of {parent!r}"))
        out[parent] = allowed
    if found:
        raise problems(found)
    return out


When = Annotated[dict[str, list] | None, BeforeValidator(optional(_when))]


class _BoundedRange(SpecModel):
    """A range with min, max and scaling: its bounds are checked together, once they are
    read (one rule for continuous and integer ranges)."""

    @model_validator(mode="after")
    def _bounds(self) -> _BoundedRange:
        found = _bounds_problems(self.min, self.max, self.scaling)
        if found:
            raise problems(found)
        return self


class ContinuousRange(_BoundedRange):
    type: Literal["continuous"]
    min: Annotated[float, BeforeValidator(number())]
    max: Annotated[float, BeforeValidator(number())]
    scaling: Annotated[Literal["auto", "linear", "log", "reverse_log"],
                       BeforeValidator(aliased_choice(SCALING_ALIASES, "auto", "linear", "log",
                                                      "reverse_log"))] = "auto"
    when: When = None


class IntegerRange(_BoundedRange):
    type: Literal["integer"]
    min: Annotated[int, BeforeValidator(_integer_bound)]
    max: Annotated[int, BeforeValidator(_integer_bound)]
    scaling: Annotated[Literal["auto", "linear", "log"], BeforeValidator(_integer_scaling)] = "auto"
    when: When = None


def _categorical_values(value: Any) -> list:
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise problem(f"must be a list of choices (got {show(value)}); e.g. values: [16, 32, 64]")
    if not value:
        raise problem("must not be empty (got []); list at least one choice")
    found: list = []
    seen: dict = {}
    for i, item in enumerate(value):
        if isinstance(item, float) and not math.isfinite(item):
            found.append(((i,), f"must be a finite number (got {show(item)}); remove it"))
        elif not isinstance(item, (str, int, float)):
            found.append(((i,), f"must be a string, number or bool (got {show(item)}); quote it"))
        elif item in seen:
            first = value[seen[item]]
            same = "" if type(first) is type(item) else (
                f", which equals {show(first)} to Python and Optuna")
            found.append(((i,), f"duplicate of values[{seen[item]}] (got {show(item)}{same}); "
                                f"remove one"))
        else:
            seen[item] = i
    if found:
        raise problems(found)
    return value


class CategoricalRange(SpecModel):
    type: Literal["categorical"]
    values: Annotated[list[Union[str, bool, int, float]], BeforeValidator(_categorical_values)]
    when: When = None


Range = Annotated[
    Annotated[Union[ContinuousRange, IntegerRange, CategoricalRange], Field(discriminator="type")],
    BeforeValidator(_range_shape),
]
