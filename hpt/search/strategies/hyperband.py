"""`strategy: hyperband`: TPE proposes, Ray Tune's ASHA brackets stop and keep trials by their
objective at rungs of `strategy_config.min_resource` .. `max_resource` steps."""

from __future__ import annotations

from hpt.search.strategies import bayesian
from hpt.search.strategies.base import Strategy

HYPERBAND = Strategy("hyperband", bayesian.sampler, sagemaker="Hyperband",
                     early_stopping="asha", config=bayesian.CONFIG)
