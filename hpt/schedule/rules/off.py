"""`early_stopping: off`: every training job runs to its end."""

from __future__ import annotations

from hpt.schedule.rules.base import EarlyStoppingRule


def scheduler(spec):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


OFF = EarlyStoppingRule("off", scheduler, sagemaker="Off", stops_jobs=False)
