"""The rules of a space that span sections, one function each (pure). Each reads sections
that passed their own validation (a section that did not is None in `values`, and its rules
wait for it to be fixed). The runtime's and the strategy's own rules are theirs
(hpt/runtime/runtimes, hpt/search/strategies)."""

from __future__ import annotations

from typing import Any

from hpt.runtime.runtimes import RUNTIMES
from hpt.schedule.rules import RULES
from hpt.search.strategies import STRATEGIES
from hpt.search.conditions import grid_count
from hpt.spacefile.condition_rules import CONDITION_RULES
from hpt.spacefile.fields import did_you_mean, show

Problem = tuple[tuple, str]


def across_sections(values: dict[str, Any]) -> list[Problem]:
    """Every cross-section problem; may fill `values["limits"]` (a grid's implied size)."""
    found: list[Problem] = []
    for rule in (_static_and_tuned, _environment_and_hyperparameters, _objective_defined,
                 _objectives_defined, _constraints_defined, *CONDITION_RULES,
                 _several_objectives, _strategy, _early_stopping, _torchrun_entry_point,
                 _runtime):
        found += rule(values)
    return found


def _static_and_tuned(values: dict[str, Any]) -> list[Problem]:
    tuned, static = values.get("hyperparameters"), values.get("static_hyperparameters")
    if tuned is None or static is None:
        return []
    found = []
    static_upper = {name.upper(): name for name in static}
    for name in tuned:
        if name in static:
            found.append((("hyperparameters", name),
                          "is also in static_hyperparameters; a hyperparameter is either "
                          "static or tuned, remove one of the two"))
        elif name.upper() in static_upper:
            found.append((("hyperparameters", name),
                          f"would share the variable SM_HP_{name.upper()} with static "
                          f"hyperparameter {static_upper[name.upper()]!r} (names differ "
                          f"only in case); rename one"))
    return found


def _environment_and_hyperparameters(values: dict[str, Any]) -> list[Problem]:
    """SM_HP_<NAME> of a hyperparameter of the space is the contract's to set."""
    trainer = values.get("trainer")
    tuned, static = values.get("hyperparameters"), values.get("static_hyperparameters")
    if trainer is None or (tuned is None and static is None):
        return []
    ours = {f"SM_HP_{name.upper()}": name for name in [*(tuned or {}), *(static or {})]}
    return [(("trainer", "environment", key),
             f"is set by hpt from hyperparameter {ours[key]!r} (SM_HP_<NAME> of every "
             f"hyperparameter); remove it, or change the hyperparameter's value instead")
            for key in trainer.environment if key in ours]


def _undefined(metric: str, metrics) -> str | None:
    """Why `metric` cannot be read from the logs, or None when metric_definitions has it."""
    names = [m.name for m in metrics]
    if metric in names:
        return None
    guess = did_you_mean(metric, names)
    return (f"{show(metric)} is not defined in metric_definitions (defined: "
            f"{', '.join(map(show, names))}); "
            + (f"did you mean {guess!r}?" if guess else "add a metric definition with that name"))


def _objective_defined(values: dict[str, Any]) -> list[Problem]:
    objective, metrics = values.get("objective"), values.get("metric_definitions")
    if objective is None or metrics is None or values.get("objectives"):
        return []  # the multi-objective form is `_objectives_defined`'s
    reason = _undefined(objective.metric, metrics)
    return [(("objective", "metric"), reason)] if reason else []


def _objectives_defined(values: dict[str, Any]) -> list[Problem]:
    objectives, metrics = values.get("objectives"), values.get("metric_definitions")
    if not objectives or metrics is None:
        return []
    return [(("objectives", i, "metric"), reason) for i, o in enumerate(objectives)
            if (reason := _undefined(o.metric, metrics))]


def _constraints_defined(values: dict[str, Any]) -> list[Problem]:
    constraints, metrics = values.get("constraints"), values.get("metric_definitions")
    if not constraints or metrics is None:
        return []
    return [(("constraints", i, "metric"), reason) for i, c in enumerate(constraints)
            if (reason := _undefined(c.metric, metrics))]


def _several_objectives(values: dict[str, Any]) -> list[Problem]:
    """What has no meaning with several objectives: strategies that optimize one value, and
    completion criteria that compare one value."""
    objectives = values.get("objectives") or []
    if len(objectives) < 2:
        return []
    found: list[Problem] = []
    strategy = values.get("strategy")
    able = [name for name, s in STRATEGIES.items() if s.multi_objective]
    if strategy is not None and strategy not in able:
        found.append((("strategy",), f"must be one of {', '.join(able)} "
                                     f"with several objectives (got {strategy}); use strategy: "
                                     f"nsga2 or bayesian, or keep one objective"))
    completion = values.get("completion")
    if completion is not None:
        for name in ("target_objective", "max_trials_not_improving", "convergence"):
            if getattr(completion, name):
                found.append((("completion", name),
                              f"compares one objective value and has no meaning with several "
                              f"objectives (got {show(getattr(completion, name))}); remove it, "
                              f"and bound the job with limits.max_trials"))
    return found


def _strategy(values: dict[str, Any]) -> list[Problem]:
    """The strategy's own rules, its budget (max_trials, or a grid's size) and the
    early-stopping rule it may bring."""
    name, limits = values.get("strategy"), values.get("limits")
    strategy, tuned = STRATEGIES.get(name), values.get("hyperparameters")
    if strategy is None:
        return []
    found = strategy.problems(values) if tuned is not None else []
    if strategy.enumerates and tuned is not None and not found and limits is not None:
        size = grid_count(tuned)
        if limits.max_trials is None:
            # The grid's size is the implied max_trials; more slots than trials is no error
            # the user made, so the parallelism is capped at the grid size.
            values["limits"] = limits.model_copy(update={
                "max_trials": size, "max_parallel": min(limits.max_parallel, size)})
        elif limits.max_trials < size:
            found.append((("limits", "max_trials"),
                          f"must be >= {size}, the grid size of strategy: {name} (got "
                          f"{limits.max_trials}); remove max_trials to run the whole grid"))
    elif not strategy.enumerates and limits is not None and limits.max_trials is None:
        found.append((("limits", "max_trials"),
                      "required field is missing (only strategy: grid may omit it); add "
                      "limits: {max_trials: 20}"))
    early_stopping = values.get("early_stopping")
    if strategy.early_stopping and early_stopping not in (None, "off"):
        found.append((("early_stopping",),
                      f"must be off for strategy: {name}, which stops trials itself (got "
                      f"{early_stopping}); remove early_stopping, or use strategy: bayesian"))
    return found


def _early_stopping(values: dict[str, Any]) -> list[Problem]:
    """The early-stopping rule's own rules (the one the space names, or its strategy's)."""
    strategy = STRATEGIES.get(values.get("strategy"))
    name = (strategy.early_stopping if strategy is not None else None) or \
        values.get("early_stopping")
    rule, config = RULES.get(name), values.get("strategy_config")
    if rule is None or config is None:
        return []
    foreign = [(("strategy_config", key),
                f"is early_stopping: {other.name}'s ({chooses}; got early_stopping: {name}); "
                f"set early_stopping: {other.name}, or remove {key}")
               for other in RULES.values() if other is not rule
               for key, chooses in other.own_keys.items() if key in config]
    return foreign or rule.problems(values)


def _torchrun_entry_point(values: dict[str, Any]) -> list[Problem]:
    trainer = values.get("trainer")
    if trainer is None or trainer.distribution != "torchrun" or \
            trainer.entry_point.endswith(".py"):
        return []
    return [(("trainer", "entry_point"),
             f"must be a Python script for distribution: torchrun (got "
             f"{trainer.entry_point!r}); torchrun starts `python <entry_point>` on every "
             f"process, use a .py entry point or another distribution")]


def _runtime(values: dict[str, Any]) -> list[Problem]:
    runtime = RUNTIMES.get(values.get("runtime"))
    return runtime.problems(values) if runtime is not None else []
