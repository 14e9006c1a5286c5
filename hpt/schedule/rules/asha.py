"""`early_stopping: asha`: ASHA over objective steps (also the scheduler of `strategy:
hyperband`), rungs from `strategy_config.min_resource` to `max_resource`. `mode: stop` (the
default): Ray Tune's ASHA stops the trials below a rung's top 1/η for good, or with several
objectives hpt's multi-objective ASHA (hpt/schedule/moasha.py) ranks them by all of them;
`mode: promotion`: trials pause at every rung and the best (by every objective, with
several) are continued from their checkpoint (hpt/schedule/promotion.py)."""

from __future__ import annotations

from typing import Any

from hpt.core.checks import choice, hyperparameter_name, number
from hpt.schedule.promotion import (DEFAULT_RESOURCE_HYPERPARAMETER, MODES, PROMOTION,
                                    PromotionLedger, PromotionScheduler, rung_levels)
from hpt.schedule.rules.base import STEPS, EarlyStoppingRule, mode_of

# strategy_config's rungs when the space leaves them out (SageMaker's Hyperband needs both).
DEFAULT_RESOURCES = {"min_resource": 1, "max_resource": 100}
DEFAULT_REDUCTION_FACTOR = 3

# The strategy_config keys ASHA reads: its rungs (in objective steps), η, whether trials stop
# or pause at a rung, and promotion mode's budget (the hyperparameter it sets per rung).
CONFIG = {"min_resource": STEPS, "max_resource": STEPS, "reduction_factor": number(gt=1),
          "mode": choice(*MODES), "resource_hyperparameter": hyperparameter_name}


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
    objectives = tuple((o.metric, o.type == "maximize") for o in spec.all_objectives)
    several = objectives if len(objectives) > 1 else ()
    if promotes(config):
        return PromotionScheduler(
            PromotionLedger(rung_levels(low, high, eta), eta, mode_of(spec) == "max",
                            objectives=several), resource_hyperparameter(config))
    if several:
        from hpt.schedule.moasha import MultiObjectiveASHA, stop_rungs

        return MultiObjectiveASHA(stop_rungs(low, high, eta), eta, several)

    from ray.tune.schedulers import ASHAScheduler

    from hpt.core.trial import OBJECTIVE, OBJECTIVE_STEP

    # stop_last_trials=False: a job at max_resource finishes on its own (Tune would stop it
    # there, cutting it off at its last epoch before it saves its model).
    return ASHAScheduler(stop_last_trials=False, time_attr=OBJECTIVE_STEP, metric=OBJECTIVE,
                         mode=mode_of(spec), grace_period=low, max_t=high,
                         reduction_factor=eta)


def rungs_in_order(config: dict[str, Any]) -> list:
    lo, hi = config.get("min_resource"), config.get("max_resource")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        return [(("min_resource",), f"must be <= max_resource (got {lo} > {hi}); swap them")]
    return []


def inexpressible(config: dict[str, Any]) -> list[str]:
    if not promotes(config):
        return []
    return ["strategy_config.mode: promotion: SageMaker's early stopping only stops training "
            "jobs, it never pauses and continues one; export with mode: stop (or without mode)"]


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


ASHA = EarlyStoppingRule("asha", scheduler, config=CONFIG, config_problems=rungs_in_order,
                         own_keys={"mode": "stop or promotion"}, problems=problems,
                         pauses_trials=promotes, inexpressible=inexpressible)
