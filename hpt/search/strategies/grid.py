"""`strategy: grid`: every point of the cross-product of categorical ranges, once each (the
searcher enumerates them; the sampler only keeps Optuna's bookkeeping)."""

from __future__ import annotations

from hpt.search.strategies.base import Strategy
from hpt.search.strategies.random_search import sampler


def problems(values: dict) -> list[tuple[tuple, str]]:
    tuned = values.get("hyperparameters") or {}
    return [(("hyperparameters", name, "type"),
             f"must be categorical for strategy: grid (got {rng.type}); list the values to try "
             f"as {{type: categorical, values: [...]}}, or use strategy: random or bayesian")
            for name, rng in tuned.items() if rng.type != "categorical"]


GRID = Strategy("grid", sampler, sagemaker="Grid", enumerates=True, multi_objective=True,
                problems=problems)
