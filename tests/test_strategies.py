"""Every strategy through hpt's searcher (no Ray needed): coverage and seeded reproducibility."""

import itertools

import optuna
import pytest

from hpt.search.searcher import OptunaSearcher, PARENT_ATTR, fail_orphans, make_sampler
from hpt.spacefile import load_spec


def space(strategy, **extra):
    hps = {"lr": {"type": "continuous", "min": 0.001, "max": 0.1, "scaling": "log"},
           "units": {"type": "integer", "min": 8, "max": 64},
           "momentum": {"type": "continuous", "min": 0.5, "max": 0.99, "scaling": "reverse_log"},
           "opt": {"type": "categorical", "values": ["sgd", "adam"]}}
    if strategy == "grid":
        hps = {"opt": {"type": "categorical", "values": ["sgd", "adam", "adamw"]},
               "layers": {"type": "categorical", "values": [1, 2]},
               "bn": {"type": "categorical", "values": [True, False]}}
    data = {"name": "s", "trainer": {"source_dir": ".", "entry_point": "train.py"},
            "hyperparameters": hps, "objective": {"metric": "m", "type": "maximize"},
            "metric_definitions": [{"name": "m", "regex": "m=([0-9.]+)"}],
            "strategy": strategy, "limits": {"max_trials": 12, "max_parallel": 1}, "seed": 11}
    if strategy == "grid":
        del data["limits"]["max_trials"]
    data.update(extra)
    return data


@pytest.fixture
def spec_of(write_space, tmp_path):
    (tmp_path / "train.py").write_text("print('m=1')\n")

    def make(strategy, **extra):
        return load_spec(write_space(space(strategy, **extra)))

    return make


def objective(values) -> float:
    """A smooth synthetic objective, so model-based samplers have something to learn."""
    if "lr" not in values:
        return {"sgd": 0.1, "adam": 0.2, "adamw": 0.3}[values["opt"]] + values["layers"] / 10
    return -abs(values["lr"] - 0.01) - abs(values["units"] - 32) / 100 + values["momentum"] / 10


def run(spec, n=None, study=None):
    """Sequential suggest/complete rounds; returns the suggested hyperparameters in order."""
    study = study or optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    from hpt.launcher.launch import max_trials_of
    searcher = OptunaSearcher(spec, study, max_trials_of(spec))
    seen = []
    for i in itertools.count():
        if n is not None and i >= n:
            break
        config = searcher.suggest(f"t{i}")
        if config in (None, "FINISHED"):
            break
        seen.append(config)
        searcher.on_trial_complete(f"t{i}", {"hpt_status": "Completed",
                                             "objective_value": objective(config["hyperparameters"])})
    return seen, study


def test_grid_enumerates_the_cross_product_exactly_once(spec_of):
    spec = spec_of("grid")
    seen, study = run(spec)
    points = [tuple(sorted(c["hyperparameters"].items())) for c in seen]
    expected = {tuple(sorted(dict(opt=o, layers=l, bn=b).items()))
                for o in ("sgd", "adam", "adamw") for l in (1, 2) for b in (True, False)}
    assert len(points) == 12 and set(points) == expected
    assert [c["trial_number"] for c in seen] == list(range(1, 13))


def test_grid_resumed_skips_the_journaled_points_and_offers_an_unjournaled_one_again(spec_of):
    spec = spec_of("grid")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    first, _ = run(spec, n=5, study=study)
    journaled = tuple(c["hyperparameters"] for c in first)
    # The launcher asked a sixth point, then died before it became a training job: the study
    # has it (RUNNING, then FAIL as an orphan), the tuning job's journal does not.
    orphan = OptunaSearcher(spec, study, 12, done=5, seen=journaled).suggest("o")
    assert fail_orphans(study) == 1
    searcher = OptunaSearcher(spec, study, 12, done=5, next_number=6, seen=journaled)
    rest = []
    while (config := searcher.suggest(f"r{len(rest)}")) not in (None, "FINISHED"):
        rest.append(config)
        searcher.on_trial_complete(f"r{len(rest) - 1}", {"hpt_status": "Completed",
                                                         "objective_value": 0.5})
    key = lambda c: tuple(sorted(c["hyperparameters"].items()))  # noqa: E731
    assert len(rest) == 7 and not {key(c) for c in first} & {key(c) for c in rest}
    assert key(orphan) in {key(c) for c in rest}  # not lost: every point runs exactly once


@pytest.mark.parametrize("strategy, extra", [
    ("random", {}), ("bayesian", {}), ("bayesian", {"strategy_config": {"sampler": "gp"}}),
    ("cmaes", {}), ("hyperband", {"strategy_config": {"min_resource": 1, "max_resource": 4}})])
def test_each_strategy_is_reproducible_from_its_seed_and_stays_in_range(spec_of, strategy, extra):
    spec = spec_of(strategy, **extra)
    n = 8 if extra.get("strategy_config", {}).get("sampler") == "gp" else 12
    first, _ = run(spec, n=n)
    second, _ = run(spec, n=n)
    assert [c["hyperparameters"] for c in first] == [c["hyperparameters"] for c in second]
    assert len({c["training_job_name"] for c in first}) == n
    for c in first:
        hp = c["hyperparameters"]
        assert 0.001 <= hp["lr"] <= 0.1 and 8 <= hp["units"] <= 64 and isinstance(hp["units"], int)
        assert 0.5 <= hp["momentum"] <= 0.99 and hp["opt"] in ("sgd", "adam")
    other, _ = run(spec_of(strategy, seed=12, **extra), n=n)
    assert [c["hyperparameters"] for c in other] != [c["hyperparameters"] for c in first]


def test_failures_and_early_stops_reach_optuna_as_fail_and_pruned(spec_of):
    spec = spec_of("random")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    searcher = OptunaSearcher(spec, study, 3)
    for i, result in enumerate([{"hpt_status": "Completed", "objective_value": 0.5},
                                {"hpt_status": "Failed"},
                                {"hpt_status": "Stopped", "objective_value": 0.1}]):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", result)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "PRUNED"]
    assert searcher.suggest("t3") == "FINISHED"
    searcher2 = OptunaSearcher(spec, study, 5)
    searcher2.suggest("x")  # asked, never told: a launcher that died
    assert fail_orphans(study) == 1 and study.trials[-1].state.name == "FAIL"
    assert PARENT_ATTR not in study.trials[0].user_attrs


def test_a_step_reported_again_keeps_the_first_value_without_optunas_warning(spec_of):
    """A PBT recipient restarts from its donor's step, so a step comes again: Optuna warned
    `The reported value is ignored because this step=5 is already reported` in the output."""
    import warnings

    from hpt.core.trial import OBJECTIVE, OBJECTIVE_STEP

    spec = spec_of("random")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    searcher = OptunaSearcher(spec, study, 1)
    searcher.suggest("t0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for value, step in ((0.5, 5), (0.7, 5), (0.8, 6)):
            searcher.on_trial_result("t0", {OBJECTIVE: value, OBJECTIVE_STEP: step})
    assert study.trials[0].intermediate_values == {5: 0.5, 6: 0.8}
