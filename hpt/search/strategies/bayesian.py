"""`strategy: bayesian`: Optuna's TPE (or a Gaussian process, `strategy_config: {sampler: gp}`).

Both take several objectives (TPE as MOTPE) and the constraint values the searcher sets on
each trial (Optuna's `Trial.set_constraint`); a conditional space uses TPE's
`group` mode, which models each set of hyperparameters that occur together on its own."""

from __future__ import annotations

import warnings

from hpt.core.checks import choice
from hpt.search.strategies.base import Strategy

# The keys its sampler reads (also hyperband's, whose sampler this is).
CONFIG = {"sampler": choice("tpe", "gp")}


def sampler(spec, seed: int):
    import optuna

    if spec.strategy_config.get("sampler") == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    with warnings.catch_warnings():  # `group` is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: running trials count as bad guesses, so parallel TPE spreads out.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=spec.limits.max_parallel > 1,
                                          multivariate=True, group=spec.conditional)


BAYESIAN = Strategy("bayesian", sampler, sagemaker="Bayesian", multi_objective=True,
                    config=CONFIG)
