"""What a search strategy is: its registration (hpt/search/strategies/<name>.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


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
    # The early-stopping rule the strategy brings (hyperband: asha's brackets); the space's
    # own early_stopping must then stay off.
    early_stopping: str | None = None
    # Rules of a space for this strategy, on its validated sections: [(field path, message)].
    problems: Callable[[dict[str, Any]], list[tuple[tuple, str]]] = no_problems

