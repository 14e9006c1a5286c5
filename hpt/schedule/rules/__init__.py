"""The early-stopping rules, by the name space.yaml's `early_stopping:` gives them.

Adding one: a module here defining its `EarlyStoppingRule` (base.py), and one line below.
The spec's `early_stopping:` choices and the SageMaker export come from this registry.
"""

from __future__ import annotations

from hpt.schedule.rules.asha import ASHA
from hpt.schedule.rules.auto import AUTO
from hpt.schedule.rules.base import EarlyStoppingRule
from hpt.schedule.rules.off import OFF
from hpt.schedule.rules.pbt import PBT

RULES: dict[str, EarlyStoppingRule] = {r.name: r for r in (OFF, AUTO, ASHA, PBT)}
