"""`strategy: cmaes`: Optuna's CMA-ES (random draws for what it cannot model: categoricals)."""

from __future__ import annotations

from hpt.search.strategies.base import Strategy


def sampler(spec, seed: int):
    import optuna

    return optuna.samplers.CmaEsSampler(
        seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed))


CMAES = Strategy("cmaes", sampler)
