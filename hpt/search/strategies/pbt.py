"""`strategy: pbt`: population-based training. The first population is drawn at random from
the space (as Ray Tune's PBT does); Ray Tune's PBT scheduler then exploits and explores
(hpt/schedule/rules/pbt.py, which holds everything else hpt knows of PBT: its keys, its
rules, its controller)."""

from __future__ import annotations

from hpt.search.strategies.base import Strategy
from hpt.search.strategies.random_search import sampler

PBT = Strategy("pbt", sampler, early_stopping="pbt")
