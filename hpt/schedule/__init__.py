"""Early stopping as Ray Tune schedulers (Optuna pruners do not act under Tune).

Time is counted in objective reports (`objective_step`): one step = one match of the
objective metric's regex, as interface.md defines a step.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

from hpt.search.searcher import OBJECTIVE

STEP = "objective_step"


def make_scheduler(spec) -> TrialScheduler:
    mode = "max" if spec.objective.type == "maximize" else "min"
    config = dict(spec.strategy_config)
    if spec.early_stopping == "auto":
        # SageMaker's median rule: stop a job whose running average at step t is worse than
        # the median of the other jobs' running averages at t.
        return MedianStoppingRule(time_attr=STEP, metric=OBJECTIVE, mode=mode,
                                  grace_period=int(config.get("min_resource", 1)),
                                  min_samples_required=3)
    if spec.early_stopping == "asha" or spec.strategy == "hyperband":
        return ASHAScheduler(time_attr=STEP, metric=OBJECTIVE, mode=mode,
                             grace_period=int(config.get("min_resource", 1)),
                             max_t=int(config.get("max_resource", 100)),
                             reduction_factor=float(config.get("reduction_factor", 3)))
    return FIFOScheduler()
