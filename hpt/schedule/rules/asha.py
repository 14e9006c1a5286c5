"""`early_stopping: asha`: ASHA over objective steps (also the scheduler of `strategy:
hyperband`), rungs from `strategy_config.min_resource` to `max_resource`. `mode: stop` (the
default): Ray Tune's ASHA stops the trials below a rung's top 1/η for good; `mode: promotion`:
trials pause at every rung and the best are continued from their checkpoint
(hpt/schedule/promotion.py)."""

from __future__ import annotations

from typing import Any

from hpt.schedule.promotion import (DEFAULT_RESOURCE_HYPERPARAMETER, PROMOTION,
                                    PromotionLedger, PromotionScheduler, rung_levels)
from hpt.schedule.rules.base import EarlyStoppingRule, mode_of

# strategy_config's rungs when the space leaves them out (SageMaker's Hyperband needs both).
DEFAULT_RESOURCES = {"min_resource": 1, "max_resource": 100}
DEFAULT_REDUCTION_FACTOR = 3


def _resources(config: dict[str, Any]) -> tuple[int, int, float]:
    return (int(config.get("min_resource", DEFAULT_RESOURCES["min_resource"])),
            int(config.get("max_resource", DEFAULT_RESOURCES["max_resource"])),
            float(config.get("reduction_factor", DEFAULT_REDUCTION_FACTOR)))


def promotes(strategy_config: dict[str, Any]) -> bool:
    """Whether trials pause and are promoted (`mode: promotion`) rather than stopped."""
    return strategy_config.get("mode") == PROMOTION


def resource_hyperparameter(strategy_config: dict[str, Any]) -> str:
    return strategy_config.get("resource_hyperparameter", DEFAULT_RESOURCE_HYPERPARAMETER)


def scheduler(spec):
    config = spec.strategy_config
    low, high, eta = _resources(config)
    if promotes(config):
        return PromotionScheduler(
            PromotionLedger(rung_levels(low, high, eta), eta, mode_of(spec) == "max"),
            resource_hyperparameter(config))

    from ray.tune.schedulers import ASHAScheduler

    from hpt.core.trial import OBJECTIVE, OBJECTIVE_STEP

    # stop_last_trials=False: a job at max_resource finishes on its own (Tune would stop it
    # there, cutting it off at its last epoch before it saves its model).
    return ASHAScheduler(stop_last_trials=False, time_attr=OBJECTIVE_STEP, metric=OBJECTIVE,
                         mode=mode_of(spec), grace_period=low, max_t=high,
                         reduction_factor=eta)


def problems(values: dict[str, Any]) -> list:
    """Promotion mode's rules: rungs to pause at, and a budget hpt may set."""
    config = values["strategy_config"]
    if not promotes(config):
        return []
    found = []
    low, high, eta = _resources(config)
    name = resource_hyperparameter(config)
    if "max_resource" not in config:
        found.append((("strategy_config", "max_resource"),
                      f"required for mode: promotion (the {name} a trial that is never "
                      f"paused trains); e.g. max_resource: 15"))
    elif len(rung_levels(low, high, eta)) < 2:
        found.append((("strategy_config", "min_resource"),
                      f"must be < max_resource for mode: promotion (got {low} >= {high}): "
                      f"there is no rung to pause at; lower min_resource"))
    if name in (values.get("hyperparameters") or {}):
        found.append((("hyperparameters", name),
                      f"is the budget promotion mode sets ({name} = each rung's level); "
                      f"remove it from hyperparameters (or name another budget in "
                      f"strategy_config.resource_hyperparameter)"))
    static = values.get("static_hyperparameters") or {}
    if name in static and "max_resource" in config and static[name] != high:
        found.append((("static_hyperparameters", name),
                      f"is {static[name]!r} but strategy_config.max_resource is {high}: "
                      f"promotion mode sets {name} to each rung's level up to max_resource; "
                      f"set them equal (or remove {name} here)"))
    return found


ASHA = EarlyStoppingRule("asha", scheduler, problems=problems)
