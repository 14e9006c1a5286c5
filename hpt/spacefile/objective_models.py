"""The objectives, constraints and metric definitions of a space.yaml (pydantic models).

`objective:` is one metric to maximize or minimize; `objectives:` (an hpt extension) several,
judged together as a Pareto front; `constraints:` limits on final metric values that a job
must meet to be feasible. Each metric is read from the logs by its `metric_definitions` regex
and from the metrics file a script may write (that every objective and constraint has a
definition is a rule across sections, hpt.spacefile.across).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, model_validator

from hpt.spacefile.fields import SpecModel, choice, number, optional, problem, problems, show, text


class Objective(SpecModel):
    metric: Annotated[str, BeforeValidator(text)]
    type: Annotated[Literal["maximize", "minimize"], BeforeValidator(choice("maximize", "minimize"))]


def _objectives(value: Any) -> Any:
    # [] is the default (a single objective); the loader refuses a space.yaml's empty list.
    if not isinstance(value, list):
        raise problem(f"must be a list of {{metric, type}} (got {show(value)}); e.g. "
                      f"[{{metric: 'validation:accuracy', type: maximize}}, "
                      f"{{metric: 'model:size_mb', type: minimize}}]")
    return value


def _unique_objectives(value: list[Objective]) -> list[Objective]:
    found = [((i, "metric"), f"{show(o.metric)} is already objectives[{j}]; remove one")
             for i, o in enumerate(value)
             for j in [next(k for k, p in enumerate(value) if p.metric == o.metric)] if j != i]
    if found:
        raise problems(found)
    return value


class Constraint(SpecModel):
    """A limit a training job's final value of `metric` must respect to be feasible."""

    metric: Annotated[str, BeforeValidator(text)]
    min: Annotated[float | None, BeforeValidator(optional(number()))] = None
    max: Annotated[float | None, BeforeValidator(optional(number()))] = None

    @model_validator(mode="after")
    def _a_bound(self) -> Constraint:
        if self.min is None and self.max is None:
            raise problem(f"a constraint needs min, max or both (got neither for "
                          f"{show(self.metric)}); e.g. {{metric: {show(self.metric)}, min: 0.9}} "
                          f"or {{metric: {show(self.metric)}, max: 20}}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise problems([(("min",), f"must be <= max (got min {show(self.min)} > max "
                                       f"{show(self.max)}); no job could meet it, swap them")])
        return self


def _constraints(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise problem(f"must be a list of {{metric, min and/or max}} (got {show(value)}); "
                      f"e.g. [{{metric: 'latency:p99_ms', max: 20}}]")
    return value


def _unique_constraints(value: list[Constraint]) -> list[Constraint]:
    found = [((i, "metric"), f"{show(c.metric)} already has a constraint (constraints[{j}]); "
                             f"give one constraint with both min and max")
             for i, c in enumerate(value)
             for j in [next(k for k, p in enumerate(value) if p.metric == c.metric)] if j != i]
    if found:
        raise problems(found)
    return value


def _regex(value: Any) -> str:
    text(value)
    try:
        groups = re.compile(value).groups
    except re.error as exc:
        raise problem(f"is not a valid regular expression: {exc.msg} at position {exc.pos} "
                      f"(got {show(value)}); fix the pattern (quote it in YAML, "
                      f"e.g. 'loss=([0-9.]+)')") from None
    if groups != 1:
        raise problem(f"must have exactly one capture group around the value (got {groups} in "
                      f"{show(value)}); e.g. 'val_acc=([0-9.]+)', other groups as (?:...)")
    return value


class MetricDefinition(SpecModel):
    """A metric read from the logs by `regex`, and from the metrics file a script may write
    (hpt.runtime.pushed_metrics); without `regex`, from that file only."""

    name: Annotated[str, BeforeValidator(text)]
    regex: Annotated[str | None, BeforeValidator(optional(_regex))] = None


def _metric_definitions(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise problem(f"must be a non-empty list of {{name, regex}} (got {show(value)}); e.g. "
                      f"[{{name: 'validation:accuracy', regex: 'val_acc=([0-9.]+)'}}]")
    return value


def _unique_metric_names(value: list[MetricDefinition]) -> list[MetricDefinition]:
    first: dict[str, int] = {}
    found = []
    for i, metric in enumerate(value):
        j = first.setdefault(metric.name, i)
        if j != i:
            found.append(((i, "name"), f"duplicate metric name {metric.name!r} (also "
                                       f"metric_definitions[{j}]); rename or remove one"))
    if found:
        raise problems(found)
    return value


MetricDefinitions = Annotated[list[MetricDefinition], BeforeValidator(_metric_definitions),
                              AfterValidator(_unique_metric_names)]
Objectives = Annotated[list[Objective], BeforeValidator(_objectives),
                       AfterValidator(_unique_objectives)]
Constraints = Annotated[list[Constraint], BeforeValidator(_constraints),
                        AfterValidator(_unique_constraints)]
