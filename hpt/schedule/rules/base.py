"""What an early-stopping rule is: its registration (hpt/schedule/rules/<name>.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class EarlyStoppingRule:
    name: str
    # The Ray Tune scheduler of a space (Ray imported inside: `hpt validate` never loads it).
    scheduler: Callable[[Any], Any]
    # SageMaker's TrainingJobEarlyStoppingType; None: SageMaker has none, exported as Auto
    # (its median rule) with the name kept in the request's hpt: tags.
    sagemaker: str | None = None
    stops_jobs: bool = True  # False: every job runs to its end (the scheduler only queues)
    # Only a strategy brings it (strategy: pbt); not a value of `early_stopping:`.
    strategy_only: bool = False
    # The rule's own checks of a space (spec/across.py's values -> [(path, message)]).
    problems: Callable[[dict[str, Any]], list] = lambda values: []


def mode_of(spec) -> str:
    """Ray Tune's name for the objective's direction."""
    return "max" if spec.objective.type == "maximize" else "min"
