"""The scheduler and stopper of a space: its early-stopping rule (or the one its strategy
brings), for either controller, and its completion criteria.

A rule builds hpt's scheduler (schedule/scheduler_protocol.py) or Ray Tune's; each controller gets
it in its own terms: the local one hpt's protocol, Ray Tune's controller Tune's (through
schedule/tune_adapter.py either way).

Time is counted in objective reports (`objective_step`): one step = one match of the
objective metric's regex.
"""

from __future__ import annotations

from hpt.schedule.completion import CompletionCriteria, CompletionStopper
from hpt.schedule.scheduler_protocol import TrialScheduler
from hpt.schedule.rules import rule_of


def early_stopping_rule(spec):
    """The space's early-stopping rule, or the one its strategy brings (hyperband: ASHA); a
    validated space always has one."""
    return rule_of(spec.strategy, spec.early_stopping)


def make_scheduler(spec):
    """The rule's scheduler as a Ray Tune TrialScheduler, for Ray Tune's controller."""
    scheduler = early_stopping_rule(spec).scheduler(spec)
    if not isinstance(scheduler, TrialScheduler):
        return scheduler
    from hpt.schedule.tune_adapter import ForTune

    return ForTune(scheduler)


def local_scheduler(spec) -> TrialScheduler:
    """The rule's scheduler in hpt's protocol, for the local controller (Ray Tune imported
    only for a Tune scheduler: ASHA's stop mode)."""
    scheduler = early_stopping_rule(spec).scheduler(spec)
    if isinstance(scheduler, TrialScheduler):
        return scheduler
    from hpt.schedule.tune_adapter import FromTune

    return FromTune(scheduler)


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
