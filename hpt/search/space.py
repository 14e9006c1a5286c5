"""SageMaker parameter ranges -> Optuna distributions (pure).

Built directly rather than through Ray Tune's search-space API: Tune's integer ranges
exclude the upper bound, SageMaker's and Optuna's include it.

`reverse_log` (SageMaker's ReverseLogarithmic, continuous ranges inside [0, 1)) has no Optuna
equivalent: hpt samples `1 - value` on a log scale under the parameter name `1-<name>` and
maps it back, which concentrates samples near 1 exactly as SageMaker does.

`auto` scaling: log when the range is positive and spans at least two orders of magnitude
(max / min >= 100), linear otherwise.

A conditional space (`when:`) is drawn define-by-run: parents first, and a range only when it
exists for the values drawn so far, so Optuna records a trial's conditional parameters only
where they exist. The values of ranges that do not exist are simply absent.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from optuna.trial import TrialState

from hpt.search.conditions import draw_order, exists, grid, grid_count

REVERSE_PREFIX = "1-"


def effective_scaling(rng) -> str:
    if rng.type == "categorical":
        return "none"
    if rng.scaling != "auto":
        return rng.scaling
    return "log" if rng.min > 0 and rng.max / rng.min >= 100 else "linear"


def optuna_param_name(name: str, rng) -> str:
    return REVERSE_PREFIX + name if effective_scaling(rng) == "reverse_log" else name


def to_distribution(rng) -> BaseDistribution:
    scaling = effective_scaling(rng)
    if rng.type == "categorical":
        return CategoricalDistribution(list(rng.values))
    if rng.type == "integer":
        return IntDistribution(int(rng.min), int(rng.max), log=scaling == "log")
    if scaling == "reverse_log":
        # value in [min, max] <=> 1 - value in [1 - max, 1 - min], sampled on a log scale.
        return FloatDistribution(1.0 - rng.max, 1.0 - rng.min, log=True)
    return FloatDistribution(float(rng.min), float(rng.max), log=scaling == "log")


def build_distributions(ranges: dict[str, Any]) -> dict[str, BaseDistribution]:
    """Optuna parameter name -> distribution, for every tuned hyperparameter."""
    return {optuna_param_name(name, rng): to_distribution(rng) for name, rng in ranges.items()}


def decode_params(params: dict[str, Any], ranges: dict[str, Any]) -> dict[str, Any]:
    """Optuna's parameter values -> hyperparameter values (undoes the reverse_log mapping)."""
    values = {}
    for name, rng in ranges.items():
        key = optuna_param_name(name, rng)
        if key not in params:
            continue  # a conditional range that does not exist in this trial
        value = params[key]
        if key != name:
            value = 1.0 - value
            # Float round-off must not push the value outside the user's inclusive range.
            value = min(max(value, rng.min), rng.max)
        values[name] = value
    return values


def in_user_terms(study, ranges: dict[str, Any]):
    """An in-memory copy of `study` whose trials carry the hyperparameters as the space names
    them (`momentum`, not the `1-momentum` a reverse_log range is searched as), for plots
    that read a study (Optuna's parallel coordinates, importances)."""
    import optuna

    copy = optuna.create_study(directions=study.directions)
    user = {name: FloatDistribution(rng.min, rng.max) if optuna_param_name(name, rng) != name
            else to_distribution(rng) for name, rng in ranges.items()}
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.RUNNING, TrialState.WAITING):
            continue  # create_trial takes finished trials only
        params = decode_params(trial.params, ranges)
        copy.add_trial(optuna.trial.create_trial(
            params=params, distributions={name: user[name] for name in params},
            values=trial.values, state=trial.state, user_attrs=trial.user_attrs,
            intermediate_values=trial.intermediate_values))
    return copy


def encode_params(values: dict[str, Any], ranges: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameter values -> Optuna's parameter values (for warm start / enqueued points)."""
    params = {}
    for name, rng in ranges.items():
        if name not in values:
            continue  # a conditional range that does not exist in this job
        key = optuna_param_name(name, rng)
        params[key] = 1.0 - values[name] if key != name else values[name]
    return params


def draw_conditional(trial, ranges: dict[str, Any]) -> dict[str, Any]:
    """Draws a conditional space on an Optuna trial (define-by-run): the hyperparameter
    values of the ranges that exist for it, parents first."""
    values: dict[str, Any] = {}
    for name in draw_order(ranges):
        rng = ranges[name]
        if not exists(rng, values):
            continue
        key, dist = optuna_param_name(name, rng), to_distribution(rng)
        if isinstance(dist, CategoricalDistribution):
            raw = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, IntDistribution):
            raw = trial.suggest_int(key, dist.low, dist.high, log=dist.log)
        else:
            raw = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
        values.update(decode_params({key: raw}, {name: rng}))
    return values


def grid_points(ranges: dict[str, Any]) -> list[dict[str, Any]]:
    """Grid strategy: every distinct point of the categorical ranges (hpt/search/conditions.py)."""
    return grid(ranges)


def grid_size(ranges: dict[str, Any]) -> int:
    return grid_count(ranges)
