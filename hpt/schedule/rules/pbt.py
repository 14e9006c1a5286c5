"""`strategy: pbt`: population-based training, decided by Ray Tune's PBT scheduler.

Every `perturbation_interval` objective steps, a trial in the bottom `quantile_fraction` of the
running population exploits one of the top: it restarts from the donor's checkpoint (its
`checkpoints/` and its steps so far) with the donor's hyperparameters, those named in
`hyperparam_mutations` perturbed (×0.8 / ×1.2, or a neighbour in a list) or, with
`resample_probability`, drawn again. The script reads them at start as always. Ray Tune's
vocabulary.

What hpt knows of PBT is here: the strategy_config keys and their checks, the space's rules
(mutations over tuned hyperparameters, one objective), that only Ray Tune's controller runs
it, that SageMaker cannot, that its jobs have a lineage. Beside it: the Optuna side
(hpt/search/strategies/pbt.py: the first population is random, and it brings this rule) and
Ray Tune's scheduler, which records the lineage (pbt_lineage.py, importing Ray: loaded only
when a job runs).
"""

from __future__ import annotations

from typing import Any, Callable

from hpt.core.checks import integer, mapping, number, problem, show
from hpt.schedule.rules.base import EarlyStoppingRule, mode_of

DEFAULTS = {"perturbation_interval": 2, "quantile_fraction": 0.25, "resample_probability": 0.25,
            "burn_in_period": 0}


def _share(most: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        value = number(ge=0)(value)
        if value > most:
            raise problem(f"must be <= {most:g} (got {show(value)})")
        return value
    return check


def _mutations(value: Any) -> dict[str, Any]:
    """name -> true (its range in hyperparameters) | [values] | {min, max, scaling}."""
    value = mapping(value, "name: how", "hyperparam_mutations: {lr: true, batch_size: [32, 64]}")
    for name, how in value.items():
        if not (how is True or (isinstance(how, list) and how) or (
                isinstance(how, dict) and set(how) <= {"min", "max", "scaling"})):
            raise problem(f"{name}: must be true (its range in hyperparameters), a list of "
                          f"values, or {{min, max, scaling}} (got {show(how)})")
    return value


# The strategy_config keys PBT reads: intervals in objective steps, shares of the population.
CONFIG = {"perturbation_interval": integer(ge=1), "quantile_fraction": _share(0.5),
          "resample_probability": _share(1), "hyperparam_mutations": _mutations,
          "burn_in_period": integer(ge=0)}


def mutations(spec) -> dict[str, Any]:
    """Ray Tune's hyperparam_mutations for hpt's config (the tuned values sit under
    `hyperparameters`): a list stays a list of choices; a range (`{min, max, scaling}`, or
    `true`: the hyperparameter's own range) becomes a Tune domain to resample from."""
    from ray import tune

    limits, out = bounds(spec), {}
    for name, given in spec.strategy_config["hyperparam_mutations"].items():
        rng = spec.hyperparameters[name]
        if name not in limits:  # a list of choices: the given one, or the categorical's
            out[name] = list(given) if isinstance(given, list) else list(rng.values)
            continue
        low, high = limits[name]
        log = (given if isinstance(given, dict) else {}).get("scaling", rng.scaling) == "log"
        if rng.type == "integer":
            out[name] = tune.lograndint(low, high + 1) if log else tune.randint(low, high + 1)
        else:
            out[name] = tune.loguniform(low, high) if log else tune.uniform(low, high)
    return {"hyperparameters": out}


def bounds(spec) -> dict[str, tuple[float, float]]:
    """Each numeric mutated hyperparameter's range (its own, or the mutation's min/max)."""
    out = {}
    for name, given in spec.strategy_config["hyperparam_mutations"].items():
        rng = spec.hyperparameters[name]
        if isinstance(given, list) or rng.type == "categorical":
            continue
        own = given if isinstance(given, dict) else {}
        out[name] = (own.get("min", rng.min), own.get("max", rng.max))
    return out


def scheduler(spec):
    from hpt.schedule.rules.pbt_lineage import LineagePBT
    from hpt.core.trial import OBJECTIVE, OBJECTIVE_STEP

    config = {**DEFAULTS, **spec.strategy_config}
    return LineagePBT(time_attr=OBJECTIVE_STEP, metric=OBJECTIVE, mode=mode_of(spec),
                      perturbation_interval=config["perturbation_interval"],
                      burn_in_period=config["burn_in_period"],
                      quantile_fraction=config["quantile_fraction"],
                      resample_probability=config["resample_probability"],
                      hyperparam_mutations=mutations(spec), bounds=bounds(spec))


def problems(values: dict[str, Any]) -> list:
    """Mutations over tuned hyperparameters only, and one objective."""
    config = values["strategy_config"]
    tuned = values.get("hyperparameters") or {}
    found = []
    given = config.get("hyperparam_mutations")
    if not given:
        found.append((("strategy_config", "hyperparam_mutations"),
                      "required for strategy: pbt (which hyperparameters an exploiting trial "
                      "perturbs); e.g. hyperparam_mutations: {lr: true}"))
    for name in given or {}:
        if name not in tuned:
            found.append((("strategy_config", "hyperparam_mutations", name),
                          f"is not a tuned hyperparameter (tuned: {', '.join(tuned) or 'none'}); "
                          f"PBT perturbs the tuned ones: add it to hyperparameters or remove it"))
    if values.get("objectives"):
        found.append((("objectives",), "strategy: pbt ranks trials by one objective; use "
                                       "objective:, or another strategy"))
    return found


def inexpressible(config: dict[str, Any]) -> list[str]:
    return ["strategy: pbt: SageMaker's tuner has no population-based training (it never "
            "restarts a training job from another's checkpoint); export with strategy: "
            "bayesian or random"]


PBT = EarlyStoppingRule("pbt", scheduler, stops_jobs=True, strategy_only=True, config=CONFIG,
                        problems=problems, inexpressible=inexpressible, has_lineage=True,
                        tune_only="its PBT scheduler pauses, saves and restores trials")
