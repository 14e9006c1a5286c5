"""The Ray Tune scheduler and stopper of a space: its early-stopping rule (or the one its
strategy brings) and its completion criteria.

Time is counted in objective reports (`objective_step`): one step = one match of the
objective metric's regex.
"""

from __future__ import annotations

from hpt.schedule.completion import CompletionCriteria, CompletionStopper
from hpt.schedule.rules import RULES
from hpt.search.strategies import STRATEGIES


def early_stopping_rule(spec):
    """The space's early-stopping rule, or the one its strategy brings (hyperband: ASHA)."""
    return RULES[STRATEGIES[spec.strategy].early_stopping or spec.early_stopping]


def make_scheduler(spec):
    """The rule's Ray Tune TrialScheduler (Ray Tune imported: only when one is needed)."""
    return early_stopping_rule(spec).scheduler(spec)


def stops_jobs(spec) -> bool:
    """Whether the rule ever stops a job early (`off` does not: no scheduler is needed)."""
    return early_stopping_rule(spec).stops_jobs


def make_stopper(spec) -> CompletionStopper | None:
    """The completion criteria of the space, or None when it sets none."""
    c = spec.completion
    if c.target_objective is None and c.max_trials_not_improving is None and not c.convergence:
        return None
    from hpt.search.space import grid_size

    max_trials = spec.limits.max_trials or grid_size(spec.hyperparameters)
    return CompletionStopper(CompletionCriteria(
        spec.objective.type == "maximize", c.target_objective, c.max_trials_not_improving,
        c.convergence, max_trials), [c.model_dump() for c in spec.constraints])
