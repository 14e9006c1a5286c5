"""`strategy_config`: the keys hpt reads (hpt.search's strategies, hpt.schedule's rules), each
checked on its own; the rules that span sections are the strategy's and the rule's."""

from __future__ import annotations

from typing import Any, Callable

from hpt.schedule.promotion import MODES as ASHA_MODES
from hpt.schedule.rules.pbt import PBT_KEYS
from hpt.spacefile.fields import (choice, collect, did_you_mean, hyperparameter_name, integer,
                             mapping, number, problem, problems, show, static_value_problem)

# strategy_config keys hpt reads (hpt.search / hpt.schedule); other keys pass through,
# but one that looks like a misspelling of these is reported.
STRATEGY_CONFIG_KEYS = ("sampler", "min_resource", "max_resource", "reduction_factor",
                        "population_size", "mode", "resource_hyperparameter",
                        *PBT_KEYS)


def _share(most: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        value = number(ge=0)(value)
        if value > most:
            raise problem(f"must be <= {most:g} (got {show(value)})")
        return value
    return check


def _mutations(value: Any) -> dict[str, Any]:
    value = mapping(value, "name: how", "hyperparam_mutations: {lr: true, batch_size: [32, 64]}")
    for name, how in value.items():
        if not (how is True or (isinstance(how, list) and how) or (
                isinstance(how, dict) and set(how) <= {"min", "max", "scaling"})):
            raise problem(f"{name}: must be true (its range in hyperparameters), a list of "
                          f"values, or {{min, max, scaling}} (got {show(how)})")
    return value


def check_strategy_config(value: Any) -> dict[str, Any]:
    value = mapping(value, "key: value", "strategy_config: {min_resource: 1, max_resource: 8}")
    found: list = []
    out = {}
    for key, item in value.items():
        if not isinstance(key, str):
            found.append(((key,), f"keys must be strings (got {show(key)}); quote it"))
            continue
        if key == "sampler":
            item = collect(found, (key,), choice("tpe", "gp"), item)
        elif key in ("min_resource", "max_resource"):
            item = collect(found, (key,), integer(ge=1), item)
        elif key == "reduction_factor":
            item = collect(found, (key,), number(gt=1), item)
        elif key == "population_size":  # nsga2's generation size
            item = collect(found, (key,), integer(ge=2), item)
        elif key == "mode":  # asha: stop trials at rungs, or pause and promote them
            item = collect(found, (key,), choice(*ASHA_MODES), item)
        elif key == "resource_hyperparameter":  # asha's promotion mode: the budget's name
            item = collect(found, (key,), hyperparameter_name, item)
        elif key in ("perturbation_interval", "burn_in_period"):  # pbt, in objective steps
            item = collect(found, (key,), integer(ge=1 if key == "perturbation_interval"
                                                  else 0), item)
        elif key in ("quantile_fraction", "resample_probability"):  # pbt: shares
            item = collect(found, (key,), _share(0.5 if key == "quantile_fraction" else 1),
                           item)
        elif key == "hyperparam_mutations":  # pbt: name -> true | [values] | {min, max}
            item = collect(found, (key,), _mutations, item)
        elif (guess := did_you_mean(key, STRATEGY_CONFIG_KEYS)) is not None:
            found.append(((key,), f"unknown key; did you mean {guess!r}?"))
        elif reason := static_value_problem(item):
            found.append(((key,), reason))
        out[key] = item
    lo, hi = out.get("min_resource"), out.get("max_resource")
    if isinstance(lo, int) and isinstance(hi, int) and not found and lo > hi:
        found.append((("min_resource",), f"must be <= max_resource (got {lo} > {hi}); "
                                         f"swap them"))
    if found:
        raise problems(found)
    return out
