"""`early_stopping: auto`: SageMaker's median rule (schedule/median.py): stop a job whose
running average of the objective at step t is worse than the median of the other jobs'
running averages at t, from step `strategy_config.min_resource` (default 1)."""

from __future__ import annotations

from hpt.schedule.rules.base import STEPS, EarlyStoppingRule, mode_of


def scheduler(spec):
    from hpt.schedule.median import MedianStoppingRule
    from hpt.core.trial import OBJECTIVE

    return MedianStoppingRule(metric=OBJECTIVE, mode=mode_of(spec),
                              grace_steps=int(spec.strategy_config.get("min_resource", 1)))


AUTO = EarlyStoppingRule("auto", scheduler, sagemaker="Auto", config={"min_resource": STEPS})
