"""`strategy: nsga2`: Optuna's NSGA-II, a genetic algorithm for several objectives (and
constraints, which the searcher sets on each trial: a feasible job always ranks above an
infeasible one).

Each generation is `strategy_config.population_size` jobs (default: a quarter of
max_trials, 4-50), so that a 20-job run has several generations to improve on rather than
one random population.
"""

from __future__ import annotations

from hpt.core.checks import integer
from hpt.search.strategies.base import Strategy

MAX_DEFAULT_POPULATION = 50


def population_size(spec) -> int:
    given = spec.strategy_config.get("population_size")
    if given is not None:
        return int(given)
    return max(4, min(MAX_DEFAULT_POPULATION, (spec.limits.max_trials or 0) // 4))


def sampler(spec, seed: int):
    import optuna

    return optuna.samplers.NSGAIISampler(population_size=population_size(spec), seed=seed)


NSGA2 = Strategy("nsga2", sampler, multi_objective=True,
                config={"population_size": integer(ge=2)})  # one generation's jobs
