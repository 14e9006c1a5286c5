"""SageMaker ranges -> Optuna distributions, and the sampler's reproducibility."""

from types import SimpleNamespace as Range

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpt.search.space import (build_distributions, decode_params, effective_scaling,
                              encode_params, grid_size)


def cont(lo, hi, scaling="linear"):
    return Range(type="continuous", min=lo, max=hi, scaling=scaling, when=None)


def integer(lo, hi, scaling="linear"):
    return Range(type="integer", min=lo, max=hi, scaling=scaling, when=None)


def cat(*values):
    return Range(type="categorical", values=list(values), when=None)


def test_distributions_match_sagemaker_ranges():
    dists = build_distributions({
        "lr": cont(1e-4, 1e-1, "log"), "bs": integer(16, 256, "log"), "d": cont(0.0, 0.5),
        "opt": cat("sgd", "adam"), "momentum": cont(0.5, 0.99, "reverse_log")})
    assert dists["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["bs"] == IntDistribution(16, 256, log=True)  # upper bound inclusive
    assert dists["d"] == FloatDistribution(0.0, 0.5)
    assert dists["opt"] == CategoricalDistribution(["sgd", "adam"])
    assert "momentum" not in dists
    assert dists["1-momentum"].low == pytest.approx(0.01)
    assert dists["1-momentum"].high == pytest.approx(0.5)
    assert dists["1-momentum"].log


def test_auto_scaling_rule():
    assert effective_scaling(cont(1e-4, 1e-1, "auto")) == "log"
    assert effective_scaling(cont(1.0, 50.0, "auto")) == "linear"
    assert effective_scaling(cont(0.0, 1000.0, "auto")) == "linear"


def test_integer_bounds_are_both_reachable():
    dist = build_distributions({"n": integer(1, 3)})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {study.ask(dist).params["n"] for _ in range(60)}
    assert seen == {1, 2, 3}


def test_reverse_log_round_trips_and_stays_inside_the_range():
    ranges = {"momentum": cont(0.5, 0.99, "reverse_log")}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = [decode_params(study.ask(build_distributions(ranges)).params, ranges)["momentum"]
              for _ in range(200)]
    assert all(0.5 <= v <= 0.99 for v in values)
    assert sum(v > 0.9 for v in values) > sum(v < 0.6 for v in values)  # dense near 1
    assert decode_params(encode_params({"momentum": 0.9}, ranges), ranges)["momentum"] == pytest.approx(0.9)


def test_grid_size_is_the_cross_product():
    assert grid_size({"a": cat(1, 2, 3), "b": cat("x", "y")}) == 6
