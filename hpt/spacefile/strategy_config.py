"""`strategy_config`: each key a registered strategy or early-stopping rule reads, checked by
the check its owner declares (hpt/search/strategies, hpt/schedule/rules); other keys pass
through, but one that looks like a misspelling of a known key is reported. Nothing here
names a strategy, a rule or a key: a new one declares its keys in its own file.

Every known key is checked whatever the space's strategy (the section is checked on its own,
before the strategy is known); which keys mean something with which rule is the rules'
(spacefile/across.py asks them)."""

from __future__ import annotations

from typing import Any

from hpt.core.checks import (Check, collect, did_you_mean, mapping, problems, show,
                             static_value_problem)
from hpt.schedule.rules import RULES
from hpt.search.strategies import STRATEGIES


def config_checks() -> dict[str, list[Check]]:
    """Every key a registered strategy or rule reads -> its checks (one, when its owners
    share the check), in the registries' order."""
    out: dict[str, list[Check]] = {}
    for owner in (*STRATEGIES.values(), *RULES.values()):
        for key, check in owner.config.items():
            checks = out.setdefault(key, [])
            if check not in checks:
                checks.append(check)
    return out


def config_keys() -> tuple[str, ...]:
    """The strategy_config keys hpt reads."""
    return tuple(config_checks())


def _checked(checks: list[Check]) -> Check:
    def check(value: Any) -> Any:
        for each in checks:
            value = each(value)
        return value
    return check


def check_strategy_config(value: Any) -> dict[str, Any]:
    value = mapping(value, "key: value", "strategy_config: {min_resource: 1, max_resource: 8}")
    known = config_checks()
    found: list = []
    out = {}
    for key, item in value.items():
        if not isinstance(key, str):
            found.append(((key,), f"keys must be strings (got {show(key)}); quote it"))
            continue
        if key in known:
            item = collect(found, (key,), _checked(known[key]), item)
        elif (guess := did_you_mean(key, known)) is not None:
            found.append(((key,), f"unknown key; did you mean {guess!r}?"))
        elif reason := static_value_problem(item):
            found.append(((key,), reason))
        out[key] = item
    if not found:
        for rule in RULES.values():
            found += rule.config_problems(out)
    if found:
        raise problems(found)
    return out
