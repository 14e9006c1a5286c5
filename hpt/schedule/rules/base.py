"""What an early-stopping rule is: its registration (hpt/schedule/rules/<name>.py), with the
`strategy_config` keys it reads and what it asks of the controllers, the SageMaker export and
the report. They ask these, never the rule's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hpt.core.checks import Check, integer

Problem = tuple[tuple, str]

# A number of objective steps (a rung, a grace period): the check every rule reading one
# shares, so that a key two rules read is checked once.
STEPS: Check = integer(ge=1)


def nothing(values: dict[str, Any]) -> list:
    return []


def never(strategy_config: dict[str, Any]) -> bool:
    return False


@dataclass(frozen=True)
class EarlyStoppingRule:
    name: str
    # The scheduler of a space: hpt's (schedule/scheduler_protocol.py) or Ray Tune's;
    # schedule/scheduler.py hands each controller its own kind (Ray imported inside: `hpt validate`
    # never loads it).
    scheduler: Callable[[Any], Any]
    # SageMaker's TrainingJobEarlyStoppingType; None: SageMaker has none, exported as Auto
    # (its median rule) with the name kept in the request's hpt: tags.
    sagemaker: str | None = None
    stops_jobs: bool = True  # False: every job runs to its end (the scheduler only queues)
    # Only a strategy brings it (strategy: pbt); not a value of `early_stopping:`.
    strategy_only: bool = False
    # The strategy_config keys it reads, each with its check (hpt/core/checks.py).
    config: Mapping[str, Check] = field(default_factory=dict)
    # Rules across those keys, on a strategy_config whose keys each passed their check:
    # [(key path, message)]. Checked whatever rule the space runs, as each key is.
    config_problems: Callable[[dict[str, Any]], list[Problem]] = nothing
    # Keys no other rule gives a meaning to -> what they choose ("stop or promotion"): a
    # space that sets one under another rule is told whose it is.
    own_keys: Mapping[str, str] = field(default_factory=dict)
    # The rule's own checks of a space (spacefile/across.py's values -> [(path, message)]).
    problems: Callable[[dict[str, Any]], list] = nothing
    # Whether its trials pause and are continued by hpt (promotion), under a strategy_config:
    # only hpt's local controller does that so far.
    pauses_trials: Callable[[dict[str, Any]], bool] = never
    # Why only Ray Tune's controller can run it (its scheduler is Tune's own, pausing, saving
    # and restoring trials); None: either controller can.
    tune_only: str | None = None
    # What SageMaker's tuner cannot run of it, under a strategy_config: one line each, and
    # the export refuses the space.
    inexpressible: Callable[[dict[str, Any]], list[str]] = nothing
    # Its trials restart from others' checkpoints (PBT's exploits): the report draws the
    # lineage.
    has_lineage: bool = False


def mode_of(spec) -> str:
    """Ray Tune's name for the objective's direction."""
    return "max" if spec.objective.type == "maximize" else "min"
