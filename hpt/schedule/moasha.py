"""Multi-objective ASHA (`early_stopping: asha`, stop mode, with several `objectives`): the
asynchronous successive halving of schedule/rules/asha.py, whose rungs judge a job by all of
its objectives instead of the first one alone, as Syne Tune's MOASHA does (Schmucker et al.,
"Multi-objective Asynchronous Successive Halving", 2021).

At each rung (min_resource·η^k objective steps, below max_resource), a job that reaches it
is ranked among the jobs that reached it before, by non-dominated sorting, ties within a
front broken by crowding distance (hpt/core/objectives.best_first); it goes on when it is in
the top ⌈n/η⌉ of those n jobs, else it is stopped. A job alone at a rung goes on. The values
compared are each objective's latest value when the first objective reached the rung (a
script prints its objectives at each step for this to mean something); an objective some of
the jobs have not printed by then is left out of that comparison (unknown is not worse).
Pure: the controllers hand it results through hpt's scheduler protocol. Promotion mode ranks
its rungs by the same rule (`rank_rung`, hpt/schedule/promotion.py), on each run's final
values.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from hpt.core.objectives import best_first
from hpt.core.trial import OBJECTIVE_STEP, latest_objectives
from hpt.schedule.scheduler_protocol import Decision, TrialScheduler


def stop_rungs(min_resource: int, max_resource: int, reduction_factor: float) -> list[int]:
    """The steps a job is judged at: min_resource·η^k below max_resource (a job that reaches
    max_resource runs to its own end, as with the single-objective rule)."""
    rungs, k = [], 0
    while (level := int(round(min_resource * reduction_factor ** k))) < max_resource:
        if not rungs or level > rungs[-1]:
            rungs.append(level)
        k += 1
    return rungs


def _shared_objectives(reached: dict[str, list[float | None]], count: int) -> list[int]:
    """The objectives every job at the rung has a finite value of."""
    return [k for k in range(count) if all(
        v[k] is not None and math.isfinite(v[k]) for v in reached.values())]


def rank_rung(reached: dict[str, list[float | None]], maximize: Sequence[bool]) -> list[str]:
    """The jobs at a rung from best to worst (`reached`: each one's objective values, None
    where it printed none yet): by front, then crowding, on the objectives every one of them
    has; with none such, in their order."""
    names = list(reached)
    known = _shared_objectives(reached, len(maximize))
    if not known:
        return names
    points = [[reached[n][k] for k in known] for n in names]
    return [names[i] for i in best_first(points, [maximize[k] for k in known])]


def goes_on(candidate: str, reached: dict[str, list[float | None]], maximize: Sequence[bool],
            reduction_factor: float) -> bool:
    """Whether `candidate` is in the top ⌈n/η⌉ of the n jobs at a rung; a job alone, or
    among jobs with no objective in common, goes on (nothing tells them apart)."""
    if len(reached) <= 1 or not _shared_objectives(reached, len(maximize)):
        return True
    top = math.ceil(len(reached) / reduction_factor)
    return candidate in rank_rung(reached, maximize)[:top]


class MultiObjectiveASHA(TrialScheduler):
    """MOASHA's stop mode in hpt's scheduler protocol (both controllers take it)."""

    def __init__(self, rungs: Sequence[int], reduction_factor: float,
                 objectives: Sequence[tuple[str, bool]]):
        """`objectives`: (metric, maximize) of each, the first the one that streams."""
        self.rungs = sorted(rungs, reverse=True)
        self.reduction_factor = reduction_factor
        self.metrics = [metric for metric, _ in objectives]
        self.maximize = [up for _, up in objectives]
        self.reached: dict[int, dict[str, list[float | None]]] = {r: {} for r in self.rungs}

    def on_result(self, trial_id: str, result: dict[str, Any]) -> Decision:
        step = result.get(OBJECTIVE_STEP) or 0
        for rung in self.rungs:  # the highest rung reached and not judged at yet
            if step < rung or trial_id in self.reached[rung]:
                continue
            latest = latest_objectives(result)
            self.reached[rung][trial_id] = [latest.get(m) for m in self.metrics]
            if not goes_on(trial_id, self.reached[rung], self.maximize,
                           self.reduction_factor):
                return Decision.STOP
            break
        return Decision.CONTINUE
