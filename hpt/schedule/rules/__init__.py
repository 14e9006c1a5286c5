"""The early-stopping rules, by the name space.yaml's `early_stopping:` gives them.

Adding one: a module here defining its `EarlyStoppingRule` (base.py: its scheduler, the
strategy_config keys it reads with their checks, what it asks of the controllers, the export
and the report), and one line below. Nothing else changes: the space file's `early_stopping:`
choices and strategy_config checks, the SageMaker export, the controller's choice and the
report ask this registry.
"""

from __future__ import annotations

from hpt.schedule.rules.asha import ASHA
from hpt.schedule.rules.auto import AUTO
from hpt.schedule.rules.base import EarlyStoppingRule
from hpt.schedule.rules.off import OFF
from hpt.schedule.rules.pbt import PBT
from hpt.search.strategies import STRATEGIES

RULES: dict[str, EarlyStoppingRule] = {r.name: r for r in (OFF, AUTO, ASHA, PBT)}


def rule_of(strategy: str | None, early_stopping: str | None) -> EarlyStoppingRule | None:
    """The rule a space runs: the one its strategy brings (hyperband: asha), else its
    `early_stopping`; None for names not registered (a job recorded by another hpt)."""
    brought = STRATEGIES[strategy].early_stopping if strategy in STRATEGIES else None
    return RULES.get(brought or early_stopping)
