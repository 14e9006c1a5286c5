"""What a search strategy is: its registration (hpt/search/strategies/<name>.py), with the
`strategy_config` keys it reads and what it can do. The space file asks these, never the
strategy's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hpt.core.checks import Check


def no_problems(values: dict[str, Any]) -> list[tuple[tuple, str]]:
    return []


@dataclass(frozen=True)
class Strategy:
    name: str
    # The Optuna sampler of a space (optuna imported inside: `hpt validate` never loads it).
    sampler: Callable[[Any, int], Any]
    # SageMaker's name (CreateHyperParameterTuningJob's Strategy); None: SageMaker has none,
    # exported as Bayesian with the name kept in the request's hpt: tags.
    sagemaker: str | None = None
    # Offers every point of its space once (grid): max_trials may be left out.
    enumerates: bool = False
    # Searches several objectives at once (its sampler ranks by a Pareto front).
    multi_objective: bool = False
    # The early-stopping rule the strategy brings (hyperband: asha's brackets); the space's
    # own early_stopping must then stay off.
    early_stopping: str | None = None
    # The strategy_config keys its sampler reads, each with its check (hpt/core/checks.py).
    # A key another strategy or rule also reads is declared with the same check object.
    config: Mapping[str, Check] = field(default_factory=dict)
    # Rules of a space for this strategy, on its validated sections: [(field path, message)].
    problems: Callable[[dict[str, Any]], list[tuple[tuple, str]]] = no_problems
