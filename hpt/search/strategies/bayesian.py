"""`strategy: bayesian`: Optuna's TPE (or a Gaussian process, `strategy_config: {sampler: gp}`)."""

from __future__ import annotations

from hpt.search.strategies.base import Strategy


def sampler(spec, seed: int):
    import optuna

    if spec.strategy_config.get("sampler") == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    # constant_liar: running trials count as bad guesses, so parallel TPE spreads out.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=spec.limits.max_parallel > 1,
                                      multivariate=True)


BAYESIAN = Strategy("bayesian", sampler, sagemaker="Bayesian")
