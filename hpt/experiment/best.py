"""The best training job of a tuning job, one rule for every reader: the recorder (as jobs
end), the live view, the Ray metrics, `hpt best`, `hpt status` and the reports (pure). Each
holds a `BestSoFar`, seeded with the rows a resumed job kept, so all name the same job.

Only a Completed job with an objective value counts, and with constraints only a feasible
one; a better value wins, and of equal values the earlier trial number. With several
objectives this is the best on the first objective, a tie broken by the next objectives in
turn: always a job of the Pareto front (its first, as hpt.report.front orders it).
"""

from __future__ import annotations

from typing import Any, Iterable

from hpt.core.objectives import is_feasible
from hpt.core.schema import Column, Key
from hpt.core.trial import TrialStatus


def better(value: float, than: float | None, maximize: bool) -> bool:
    """Whether `value` beats the best so far (`than`; None when there is none)."""
    return than is None or (value > than if maximize else value < than)


class BestSoFar:
    """Fed journal rows or record dicts (`trial_rows`, `TrainingJobRecord.to_json()`) in
    any order; `record` is the best one seen."""

    def __init__(self, maximize: bool, constraints: list[dict[str, Any]] | None = None,
                 tie_breakers: list[dict[str, Any]] | None = None):
        self.maximize = maximize
        self.constraints = constraints or []  # the frozen spec's
        self.tie_breakers = tie_breakers or []  # the objectives after the first
        self.record: dict[str, Any] | None = None

    @classmethod
    def of(cls, frozen_spec: dict[str, Any]) -> BestSoFar:
        """The best of a tuning job, by its frozen spec's objectives and constraints."""
        return cls(frozen_spec["objective"]["type"] == "maximize",
                   frozen_spec.get("constraints"), (frozen_spec.get("objectives") or [])[1:])

    def seeded(self, rows: Iterable[dict[str, Any]]) -> BestSoFar:
        """This, offered `rows` (a resumed job's kept rows, a journal's trial rows)."""
        for row in rows:
            self.offer(row)
        return self

    @property
    def value(self) -> float | None:
        return None if self.record is None else self.record[Key.OBJECTIVE_VALUE]

    @property
    def name(self) -> str | None:
        return None if self.record is None else self.record[Key.TRAINING_JOB_NAME]

    def offer(self, record: dict[str, Any]) -> bool:
        """True when `record` is the new best."""
        value = record.get(Key.OBJECTIVE_VALUE)
        if record.get(Key.STATUS) != TrialStatus.COMPLETED or value is None:
            return False
        if self.constraints and not is_feasible(record.get(Key.FINAL_METRICS) or {},
                                                self.constraints):
            return False
        best = self.record
        if best is not None and value == best[Key.OBJECTIVE_VALUE]:
            order = self._tie(record, best)
            if order < 0 or (order == 0 and record[Key.TRIAL_NUMBER] >= best[Key.TRIAL_NUMBER]):
                return False
        elif not better(value, best[Key.OBJECTIVE_VALUE] if best else None, self.maximize):
            return False
        self.record = record
        return True

    def _tie(self, record: dict[str, Any], best: dict[str, Any]) -> int:
        """1 when `record` beats `best` on the first objective after the first where they
        differ, -1 when it loses, 0 when they are equal on all (or a value is missing)."""
        mine, theirs = record.get(Key.FINAL_METRICS) or {}, best.get(Key.FINAL_METRICS) or {}
        for objective in self.tie_breakers:
            a, b = mine.get(objective["metric"]), theirs.get(objective["metric"])
            if a is None or b is None or a == b:
                continue
            return 1 if better(a, b, objective["type"] == "maximize") else -1
        return 0


def summary(record: dict[str, Any], frozen_spec: dict[str, Any]) -> dict[str, Any]:
    """What `hpt best` prints and `hpt.best_trial` returns."""
    return {
        Column.TRAINING_JOB_NAME: record[Key.TRAINING_JOB_NAME],
        Column.FINAL_OBJECTIVE_VALUE: float(record[Key.OBJECTIVE_VALUE]),
        "ObjectiveMetric": frozen_spec["objective"]["metric"],
        # A conditional range that does not exist for this job is not among them.
        "HyperParameters": {name: record[Key.HYPERPARAMETERS][name]
                            for name in frozen_spec["hyperparameters"]
                            if name in record[Key.HYPERPARAMETERS]},
        "StaticHyperParameters": frozen_spec.get("static_hyperparameters", {}),
        Column.MODEL_ARTIFACT: record.get(Key.MODEL_ARTIFACT),
        Column.LOG_PATH: record.get(Key.LOG_PATH),
    }
