"""Early stopping as Ray Tune schedulers (Optuna pruners do not act under Tune).

Time is counted in objective reports (`objective_step`): one step = one match of the
objective metric's regex.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from hpt.schedule.completion import CompletionCriteria, CompletionStopper
from hpt.schedule.median import MedianStoppingRule
from hpt.trial import OBJECTIVE, OBJECTIVE_STEP


def make_scheduler(spec) -> TrialScheduler:
    mode = "max" if spec.objective.type == "maximize" else "min"
    config = dict(spec.strategy_config)
    if spec.early_stopping == "auto":
        # SageMaker's median rule: stop a job whose running average at step t is worse than
        # the median of the other jobs' running averages at t.
        return MedianStoppingRule(metric=OBJECTIVE, mode=mode,
                                  grace_steps=int(config.get("min_resource", 1)))
    if spec.early_stopping == "asha" or spec.strategy == "hyperband":
        # stop_last_trials=False: a job at max_resource finishes on its own (Tune would stop
        # it there, cutting it off at its last epoch before it saves its model).
        return ASHAScheduler(stop_last_trials=False, time_attr=OBJECTIVE_STEP, metric=OBJECTIVE,
                             mode=mode,
                             grace_period=int(config.get("min_resource", 1)),
                             max_t=int(config.get("max_resource", 100)),
                             reduction_factor=float(config.get("reduction_factor", 3)))
    return FIFOScheduler()


def make_stopper(spec) -> CompletionStopper | None:
    """The completion criteria of the space, or None when it sets none."""
    c = spec.completion
    if c.target_objective is None and c.max_trials_not_improving is None and not c.convergence:
        return None
    from hpt.search.space import grid_size

    max_trials = spec.limits.max_trials or grid_size(spec.hyperparameters)
    return CompletionStopper(CompletionCriteria(
        spec.objective.type == "maximize", c.target_objective, c.max_trials_not_improving,
        c.convergence, max_trials))
