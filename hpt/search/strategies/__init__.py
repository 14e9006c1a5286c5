"""The search strategies, by the name space.yaml's `strategy:` gives them.

Adding one: a module here defining its `Strategy` (base.py: its sampler, the strategy_config
keys it reads with their checks, what it can do), and one line below. Nothing else changes:
the space file's `strategy:` choices, its strategy_config checks and its rules across
sections, the SageMaker export and the controllers ask this registry.
"""

from __future__ import annotations

from hpt.search.strategies.base import Strategy
from hpt.search.strategies.bayesian import BAYESIAN
from hpt.search.strategies.cmaes import CMAES
from hpt.search.strategies.grid import GRID
from hpt.search.strategies.hyperband import HYPERBAND
from hpt.search.strategies.nsga2 import NSGA2
from hpt.search.strategies.pbt import PBT
from hpt.search.strategies.random_search import RANDOM

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (BAYESIAN, RANDOM, GRID, HYPERBAND, CMAES,
                                                        NSGA2, PBT)}
