"""`strategy: random`: independent uniform draws (log-uniform on log scales)."""

from __future__ import annotations

from hpt.search.strategies.base import Strategy


def sampler(spec, seed: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


RANDOM = Strategy("random", sampler, sagemaker="Random", multi_objective=True)
