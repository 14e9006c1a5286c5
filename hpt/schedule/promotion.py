"""Promotion-based ASHA (`early_stopping: asha`, `strategy_config: {mode: promotion}`): trials
pause at rungs and the best are continued, instead of being stopped for good.

The rule of Li et al., "A System for Massively Parallel Hyperparameter Tuning" (ASHA, 2020),
Algorithm 2, as Syne Tune's promotion scheduler runs it: whenever a slot frees, look at the
rungs from the highest down; in each, the top 1/η of the trials that reached it are the
promotable ones; the best of those not promoted yet goes on to the next rung. When no trial
can be promoted, a new trial starts at the lowest rung.

A trial runs with its budget in a hyperparameter (`resource_hyperparameter`, default
`epochs`) set to its rung's level: the script trains that far, writes its checkpoint and
ends; a promoted trial starts again with the next level, from that checkpoint
(hpt/experiment/checkpoints.py), as the same training job. Pure: the controller does the I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hpt.core.schema import Key
from hpt.core.trial import (OBJECTIVE, OBJECTIVE_STEP, RECORD, FailureCategory, FailureReason,
                       TrialStatus)
from hpt.schedule.scheduler_protocol import Decision, TrialScheduler

PROMOTION = "promotion"  # strategy_config.mode of this rule ("stop", the default, stops)
STOP_MODE = "stop"
MODES = (STOP_MODE, PROMOTION)
DEFAULT_RESOURCE_HYPERPARAMETER = "epochs"


def rung_levels(min_resource: int, max_resource: int, reduction_factor: float) -> tuple[int, ...]:
    """min_resource * η^k below max_resource, then max_resource itself (the last rung, where
    a trial completes)."""
    if min_resource >= max_resource:
        return (max_resource,)
    levels, k = [], 0
    while True:
        level = int(round(min_resource * reduction_factor ** k))
        if level >= max_resource:
            break
        if not levels or level > levels[-1]:
            levels.append(level)
        k += 1
    return (*levels, max_resource)


@dataclass
class PromotionLedger:
    """Who reached which rung with which value, and who was promoted from it."""

    levels: tuple[int, ...]
    reduction_factor: float
    maximize: bool
    # rung level -> {trial id: objective value at that rung}, in arrival order
    reached: dict[int, dict[str, float]] = field(default_factory=dict)
    promoted: dict[int, set[str]] = field(default_factory=dict)
    # Several objectives: (metric, maximize) of each; a rung is then ranked by all of them
    # (multi-objective ASHA's rule, schedule/moasha.py) on `vectors`, each trial's values
    objectives: tuple[tuple[str, bool], ...] = ()
    vectors: dict[int, dict[str, list[float | None]]] = field(default_factory=dict)

    @property
    def first_level(self) -> int:
        return self.levels[0]

    @property
    def max_level(self) -> int:
        return self.levels[-1]

    def record(self, trial_id: str, level: int, value: float | None,
               metrics: dict[str, float] | None = None) -> None:
        """The trial reached `level` (its run ended there) with objective `value` (None: it
        reported none; it is never promoted), and with several objectives its final
        `metrics`."""
        worst = -math.inf if self.maximize else math.inf
        self.reached.setdefault(level, {})[trial_id] = worst if value is None else value
        if self.objectives:
            self.vectors.setdefault(level, {})[trial_id] = [
                None if value is None else (metrics or {}).get(metric)
                for metric, _ in self.objectives]

    def next_level(self, level: int) -> int | None:
        later = [lv for lv in self.levels if lv > level]
        return later[0] if later else None

    def next_promotion(self, eligible: set[str] | None = None,
                       exhausted: bool = False) -> tuple[str, int] | None:
        """(trial id, the level it is promoted to), or None: start a new trial. `eligible`:
        the trials that can run again now (paused ones), when not every one can.

        `exhausted`: no new trial will start and none runs. Then, until some trial reached
        max_resource, the best paused trial of the highest rung goes on anyway: a tuning job
        too small for its rungs (6 trials, η=3: a rung of 2 promotes none) still ends with
        a model trained to the full budget."""
        found = self._by_rank(eligible)
        if found is None and exhausted and not self.reached.get(self.max_level):
            found = self._best_of_highest(eligible)
        return found

    def _best_of_highest(self, eligible: set[str] | None) -> tuple[str, int] | None:
        for level in sorted(self.levels[:-1], reverse=True):
            if (candidate := self._candidate(level, eligible)) is not None:
                return candidate, self.next_level(level)
        return None

    def _by_rank(self, eligible: set[str] | None) -> tuple[str, int] | None:
        for level in sorted(self.levels[:-1], reverse=True):
            top = math.floor(len(self.reached.get(level, {})) / self.reduction_factor)
            if top >= 1 and (candidate := self._candidate(level, eligible, top)) is not None:
                return candidate, self.next_level(level)
        return None

    def _candidate(self, level: int, eligible: set[str] | None,
                   top: int | None = None) -> str | None:
        """The best trial of the rung (among its `top` best, when given) not promoted yet."""
        ranked = self._ranked(level)[:top]
        done = self.promoted.get(level, set())
        return next((t for t in ranked if t not in done and
                     (eligible is None or t in eligible)), None)

    def _ranked(self, level: int) -> list[str]:
        """The rung's trials, best first: by the objective, or by every objective."""
        values = self.reached.get(level, {})
        if not self.objectives:
            return sorted(values, key=values.__getitem__, reverse=self.maximize)
        from hpt.schedule.moasha import rank_rung

        vectors = self.vectors.get(level, {})
        never = [t for t in vectors if vectors[t][0] is None]  # reported nothing: last
        ranked = rank_rung({t: v for t, v in vectors.items() if t not in never},
                           [up for _, up in self.objectives])
        return ranked + never

    def mark_promoted(self, trial_id: str, from_level: int) -> None:
        self.promoted.setdefault(from_level, set()).add(trial_id)

    def rung_of(self, trial_id: str) -> int | None:
        """The highest level the trial reached."""
        return max((lv for lv, values in self.reached.items() if trial_id in values),
                   default=None)


class PromotionScheduler(TrialScheduler):
    """What the local controller asks in promotion mode: hpt's scheduler protocol (a trial
    is never stopped on a result: it ends at its budget), plus its rungs: the budget a
    trial runs to, whether it pauses where its run ended, and who is promoted next."""

    promotes = True

    def __init__(self, ledger: PromotionLedger, resource_hyperparameter: str):
        self.ledger = ledger
        self.resource_hyperparameter = resource_hyperparameter

    def budget(self, level: int) -> dict[str, int]:
        """The hyperparameter a trial runs with to stop at `level`."""
        return {self.resource_hyperparameter: level}

    def level_of(self, config: dict[str, Any]) -> int:
        """A new trial's rung: the lowest; a replayed one (resume) the one it was running to."""
        budget = config.get("budget") or {}
        return budget.get(self.resource_hyperparameter, self.ledger.first_level)

    def rung_reached(self, trial_id: str, level: int, value: float | None,
                     metrics: dict[str, float] | None = None) -> Decision:
        """The trial's run completed at rung `level` with objective `value` (and its final
        `metrics`): PAUSE, it waits there to be promoted; STOP, that was the last rung (its
        run ends it, Completed)."""
        self.ledger.record(trial_id, level, value, metrics)
        return Decision.PAUSE if level < self.ledger.max_level else Decision.STOP

    def next_promotion(self, eligible: set[str], exhausted: bool) -> tuple[str, int] | None:
        """(a paused trial, the rung it runs to next), or None: a new trial starts."""
        return self.ledger.next_promotion(eligible=eligible, exhausted=exhausted)

    def promoted(self, trial_id: str, from_level: int) -> None:
        self.ledger.mark_promoted(trial_id, from_level)


# -- the journal's side (pure): a paused trial's row, and a resumed job's ledger -----------

RUNG = "rung"  # a paused record's level (the journal's trial_paused event has it too)


def paused_record(record: dict[str, Any], level: int, ledger: PromotionLedger,
                  scheduler: PromotionScheduler) -> dict[str, Any]:
    """The row of a trial paused at `level`: Stopped, its reason saying so, its rung."""
    levels = ", ".join(map(str, ledger.levels))
    reason = FailureReason(FailureCategory.PAUSED, (
        f"at rung {level} of {levels} ({scheduler.resource_hyperparameter}={level}); "
        f"continued from its checkpoint if it ranks in its rung's top "
        f"1/{ledger.reduction_factor:g}"))
    return {**record, "status": str(TrialStatus.STOPPED), Key.FAILURE_REASON: reason.text(),
            RUNG: level}


def is_paused(row: dict[str, Any]) -> bool:
    reason = FailureReason.parse(row.get(Key.FAILURE_REASON))
    return row.get(Key.STATUS) == TrialStatus.STOPPED and reason is not None and \
        reason.category is FailureCategory.PAUSED


def seed_ledger(ledger: PromotionLedger, row: dict[str, Any]) -> str | None:
    """Puts a kept row's rungs and promotions (table.trial_rows' `rungs`, `promoted_from`)
    into the ledger; returns the trial id it goes by, or None when it has no rung."""
    rungs = row.get(Key.RUNGS) or {}
    if not rungs:
        return None
    trial_id = f"resumed {row[Key.TRAINING_JOB_NAME]}"
    metrics = row.get(Key.RUNG_METRICS) or {}
    for level, value in rungs.items():
        ledger.record(trial_id, int(level), value, metrics.get(level))
    for level in row.get(Key.PROMOTED_FROM) or ():
        ledger.mark_promoted(trial_id, int(level))
    if row.get(Key.STATUS) == TrialStatus.COMPLETED:
        ledger.record(trial_id, ledger.max_level, row.get(Key.OBJECTIVE_VALUE),
                      row.get(Key.FINAL_METRICS))
    return trial_id


def result_of_row(row: dict[str, Any]) -> dict[str, Any]:
    """The last result a paused row stands for (what the searcher is told at its end)."""
    result = {OBJECTIVE_STEP: row.get(Key.OBJECTIVE_STEPS) or 0, RECORD: dict(row)}
    if row.get(Key.OBJECTIVE_VALUE) is not None:
        result[OBJECTIVE] = row[Key.OBJECTIVE_VALUE]
    return result
