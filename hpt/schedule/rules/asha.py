"""`early_stopping: asha`: Ray Tune's ASHA over objective steps (also the scheduler of
`strategy: hyperband`), rungs from `strategy_config.min_resource` to `max_resource`."""

from __future__ import annotations

from hpt.schedule.rules.base import EarlyStoppingRule, mode_of

# strategy_config's rungs when the space leaves them out (SageMaker's Hyperband needs both).
DEFAULT_RESOURCES = {"min_resource": 1, "max_resource": 100}


def scheduler(spec):
    from ray.tune.schedulers import ASHAScheduler

    from hpt.trial import OBJECTIVE, OBJECTIVE_STEP

    config = spec.strategy_config
    # stop_last_trials=False: a job at max_resource finishes on its own (Tune would stop it
    # there, cutting it off at its last epoch before it saves its model).
    return ASHAScheduler(stop_last_trials=False, time_attr=OBJECTIVE_STEP, metric=OBJECTIVE,
                         mode=mode_of(spec),
                         grace_period=int(config.get("min_resource",
                                                     DEFAULT_RESOURCES["min_resource"])),
                         max_t=int(config.get("max_resource", DEFAULT_RESOURCES["max_resource"])),
                         reduction_factor=float(config.get("reduction_factor", 3)))


ASHA = EarlyStoppingRule("asha", scheduler)
