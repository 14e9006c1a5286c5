"""SageMaker's early-stopping rule (`early_stopping: auto`), an hpt scheduler
(schedule/scheduler_protocol.py; Ray Tune's controller gets it through schedule/tune_adapter.py).

SageMaker: stop a training job whose running average of the objective at step t is worse
than the median of the running averages of the other training jobs at step t. Here "the
other training jobs" are every other job of this tuning job that has reported step t —
finished or still running — and the rule acts from step `grace_steps` on, once at least
`min_samples` other jobs have reached step t (SageMaker does not publish its threshold; 3
keeps the first jobs from being judged against one or two peers).

A step is one report of the objective metric (one regex match).
"""

from __future__ import annotations

import statistics

from typing import Any

from hpt.core.trial import OBJECTIVE_STEP, STATUS
from hpt.schedule.scheduler_protocol import Decision, TrialScheduler


def should_stop(running_average: float, others: list[float], maximize: bool,
                min_samples: int) -> bool:
    """The median rule at one step: `others` are the other jobs' running averages there."""
    if len(others) < min_samples:
        return False
    median = statistics.median(others)
    return running_average < median if maximize else running_average > median


class MedianStoppingRule(TrialScheduler):
    def __init__(self, metric: str, mode: str, grace_steps: int = 1, min_samples: int = 3):
        self.objective = metric
        self.maximize = mode == "max"
        self.grace_steps = grace_steps
        self.min_samples = min_samples
        # trial id -> running average of the objective after steps 1, 2, ...
        self.averages: dict[str, list[float]] = {}
        self._sums: dict[str, float] = {}

    def on_result(self, trial_id: str, result: dict[str, Any]) -> Decision:
        if self.objective not in result or not result.get(OBJECTIVE_STEP) or STATUS in result:
            return Decision.CONTINUE  # the final result (the job already ended)
        step = int(result[OBJECTIVE_STEP])
        averages = self.averages.setdefault(trial_id, [])
        if step != len(averages) + 1:
            return Decision.CONTINUE  # a repeated report; each step counts once
        total = self._sums.get(trial_id, 0.0) + float(result[self.objective])
        self._sums[trial_id] = total
        averages.append(total / step)
        if step < self.grace_steps:
            return Decision.CONTINUE
        others = [a[step - 1] for tid, a in self.averages.items()
                  if tid != trial_id and len(a) >= step]
        if should_stop(averages[-1], others, self.maximize, self.min_samples):
            return Decision.STOP
        return Decision.CONTINUE

    def debug_string(self) -> str:
        return f"SageMaker median rule (grace {self.grace_steps}, min {self.min_samples} peers)"
