"""Resuming a tuning job from its journal: what is kept, what runs again (pure functions).

A training job counts as finished when it ended on its own: Completed, Failed, or Stopped by
early stopping. A training job that was running when the launcher died (still InProgress in
the journal) or that the end of the tuning job stopped (`hpt stop`, Ctrl-C, a completion
criterion) did not get its chance: it is lost, and runs again first, under the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpt.core.schema import JOB_STARTS, Key
from hpt.core.trial import FailureCategory, FailureReason, TrialStatus


# The events that begin a run of a tuning job.

# Spec fields that define the search: a resumed job must keep them.
_SEARCH_FIELDS = ("hyperparameters", "static_hyperparameters", "objective", "objectives",
                  "constraints", "strategy", "strategy_config", "seed", "warm_start")


@dataclass(frozen=True)
class ResumePlan:
    done: int  # finished training jobs: they count toward max_trials and are kept as they are
    replay: tuple[dict[str, Any], ...]  # lost training jobs, to run again first
    next_number: int  # the number of the next new training job
    # The hyperparameters of every training job the journal knows (kept or replayed): a grid
    # offers each point once, judged by this journal rather than by the study, which can hold
    # a point asked just before the launcher died that never became a training job.
    seen: tuple[dict[str, Any], ...] = ()
    kept: tuple[dict[str, Any], ...] = ()  # the finished rows, as they are (for the live view)


def is_lost(row: dict[str, Any]) -> bool:
    if row[Key.STATUS] == TrialStatus.IN_PROGRESS:
        return True
    reason = FailureReason.parse(row.get(Key.FAILURE_REASON))
    return row[Key.STATUS] == TrialStatus.STOPPED and reason is not None and \
        reason.category is FailureCategory.JOB_ENDED


def plan_resume(rows: list[dict[str, Any]]) -> ResumePlan:
    """`rows` = `table.trial_rows(journal events)`, one per training job."""
    lost = [r for r in rows if is_lost(r)]
    # A lost job runs again with the budget it had (promotion mode: the rung it ran to).
    replay = tuple({Key.TRIAL_NUMBER: r[Key.TRIAL_NUMBER],
                    Key.TRAINING_JOB_NAME: r[Key.TRAINING_JOB_NAME],
                    "hyperparameters": dict(r[Key.HYPERPARAMETERS]),
                    **({"budget": r[Key.BUDGET]} if r.get(Key.BUDGET) else {})} for r in lost)
    next_number = 1 + max((r[Key.TRIAL_NUMBER] for r in rows), default=0)
    return ResumePlan(done=len(rows) - len(lost), replay=replay, next_number=next_number,
                      seen=tuple(dict(r[Key.HYPERPARAMETERS]) for r in rows),
                      kept=tuple(r for r in rows if not is_lost(r)))


def resumed_max_trials(latest_start: dict[str, Any], from_space: int,
                       from_cli: int | None) -> int:
    """How many training jobs a resumed job may have in all: `--max-trials` when given; else
    the maximum of its latest run (`latest_start`: its job_started / job_resumed event), so a
    plain `--resume` neither grows a job launched with `--max-trials 10` to the space's 20
    nor shrinks one an earlier `--max-trials` extended; the space's own value only when the
    space was edited since that run (it recorded the space's value then)."""
    if from_cli is not None:
        return from_cli
    current = latest_start.get("max_trials")
    if current is None:
        return from_space
    space_then = latest_start.get(Key.SPACE_MAX_TRIALS)
    if space_then is not None and space_then != from_space:
        return from_space
    return current


def latest_start(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The job_started / job_resumed event of the job's latest run ({} for none)."""
    for event in reversed(events):
        if event.get(Key.EVENT) in JOB_STARTS:
            return event
    return {}


def search_changes(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The search-defining fields that differ between the stored spec and the new one. A
    field a release added is compared at its default where the stored spec lacks it (a
    range's `when: null`, no `objectives`), so folders of earlier releases still resume."""
    stored, new = _unset_dropped(stored), _unset_dropped(new)
    return [name for name in _SEARCH_FIELDS if stored.get(name) != new.get(name)]


def _unset_dropped(value: Any) -> Any:
    """`value` without the mapping entries that say nothing (null, an empty list)."""
    if isinstance(value, dict):
        return {k: _unset_dropped(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [_unset_dropped(v) for v in value]
    return value
