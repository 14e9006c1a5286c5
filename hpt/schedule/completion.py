"""Tuning-job completion criteria (SageMaker's TuningJobCompletionCriteria) as a stopper
(the shape of a Ray Tune Stopper: `__call__` per result, `stop_all`).

Only completed (and, with constraints, feasible) training jobs count, by their final
objective value:
- `target_objective`: a job reached the target -> TargetObjectiveMetricValueReached;
- `max_trials_not_improving: N`: N completed jobs in a row did not improve on the best ->
  BestObjectiveNotImproving;
- `convergence: true`: over the last K completed jobs (K = max(5, max_trials // 10)) the
  best improved by less than 0.1% of its magnitude -> ConvergenceDetected (checked once
  at least 2K jobs completed).
When one fires, no new job starts and the running ones are stopped.
"""

from __future__ import annotations

from hpt.experiment.job_state import CONVERGED, NOT_IMPROVING, TARGET_REACHED
from hpt.core.objectives import is_feasible
from hpt.core.trial import OBJECTIVE, STATUS, TrialStatus, final_metrics

CONVERGENCE_TOLERANCE = 1e-3


class CompletionCriteria:
    """The pure part: feed final objectives in order; returns the reason once one fires."""

    def __init__(self, maximize: bool, target: float | None = None,
                 not_improving: int | None = None, convergence: bool = False,
                 max_trials: int = 0):
        self.maximize = maximize
        self.target = target
        self.not_improving = not_improving
        self.window = max(5, max_trials // 10) if convergence else None
        self.best_after: list[float] = []  # the best objective after each completed job
        self.since_best = 0

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    def observe(self, value: float) -> str | None:
        best = self.best_after[-1] if self.best_after else None
        if best is None or self._better(value, best):
            best, self.since_best = value, 0
        else:
            self.since_best += 1
        self.best_after.append(best)
        if self.target is not None and not self._better(self.target, value):
            return TARGET_REACHED
        if self.not_improving is not None and self.since_best >= self.not_improving:
            return NOT_IMPROVING
        if self.window is not None and len(self.best_after) >= 2 * self.window:
            earlier = self.best_after[-1 - self.window]
            gain = abs(best - earlier)
            if gain < CONVERGENCE_TOLERANCE * max(abs(earlier), 1e-12):
                return CONVERGED
        return None


class CompletionStopper:
    def __init__(self, criteria: CompletionCriteria, constraints: list[dict] | None = None):
        self.criteria = criteria
        self.constraints = constraints or []  # the frozen spec's: an infeasible job never counts
        self.reason: str | None = None

    def __call__(self, trial_id, result) -> bool:
        if self.reason is None and result.get(STATUS) == TrialStatus.COMPLETED \
                and result.get(OBJECTIVE) is not None and (
                    not self.constraints
                    or is_feasible(final_metrics(result), self.constraints)):
            self.reason = self.criteria.observe(float(result[OBJECTIVE]))
        return False

    def stop_all(self) -> bool:
        return self.reason is not None
