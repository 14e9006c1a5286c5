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

    @property
    def first_level(self) -> int:
        return self.levels[0]

    @property
    def max_level(self) -> int:
        return self.levels[-1]

    def record(self, trial_id: str, level: int, value: float | None) -> None:
        """The trial reached `level` (its run ended there) with objective `value` (None: it
        reported none; it is never promoted)."""
        worst = -math.inf if self.maximize else math.inf
        self.reached.setdefault(level, {})[trial_id] = worst if value is None else value

    def next_level(self, level: int) -> int | None:
        later = [lv for lv in self.levels if lv > level]
        return later[0] if later else None

    def next_promotion(self) -> tuple[str, int] | None:
        """(trial id, the level it is promoted to), or None: start a new trial."""
        for level in sorted(self.levels[:-1], reverse=True):
            values = self.reached.get(level, {})
            top = math.floor(len(values) / self.reduction_factor)
            if top < 1:
                continue
            ranked = sorted(values, key=lambda t: values[t], reverse=self.maximize)[:top]
            done = self.promoted.get(level, set())
            candidate = next((t for t in ranked if t not in done), None)
            if candidate is not None:
                return candidate, self.next_level(level)
        return None

    def mark_promoted(self, trial_id: str, from_level: int) -> None:
        self.promoted.setdefault(from_level, set()).add(trial_id)

    def rung_of(self, trial_id: str) -> int | None:
        """The highest level the trial reached."""
        return max((lv for lv, values in self.reached.items() if trial_id in values),
                   default=None)
