"""A strategy or an early-stopping rule is one file and one registration: it declares the
strategy_config keys it reads (with their checks) and what it can do, and the space file,
the controllers, the SageMaker export and the report ask the registries. The toys below are
registered with one line each (the registry dict) and no module of hpt/spacefile changes."""

import ast
from pathlib import Path

import pytest

from hpt.core.checks import integer, number
from hpt.schedule.rules import RULES, rule_of
from hpt.schedule.rules.base import EarlyStoppingRule
from hpt.search.searcher import make_sampler
from hpt.search.strategies import STRATEGIES
from hpt.search.strategies.base import Strategy
from hpt.spacefile import SpecError, load_spec
from hpt.spacefile.strategy_config import config_checks, config_keys

HPT = Path(__file__).resolve().parent.parent / "hpt"


def toy_sampler(spec, seed):
    return ("annealing", spec.strategy_config.get("temperature", 1.0), seed)


# A toy strategy: its own key, and several objectives.
ANNEALING = Strategy("annealing", toy_sampler, multi_objective=True,
                     config={"temperature": number(gt=0)})
# A toy rule: its own key, and a rule of the space (patience within max_trials).
PATIENT = EarlyStoppingRule(
    "patient", scheduler=lambda spec: None, config={"patience": integer(ge=1)},
    problems=lambda values: [(("strategy_config", "patience"), "must be < limits.max_trials; "
                              "lower patience")]
    if values["strategy_config"].get("patience", 0) >= values["limits"].max_trials else [])


@pytest.fixture
def annealing(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "annealing", ANNEALING)


@pytest.fixture
def patient(monkeypatch):
    monkeypatch.setitem(RULES, "patient", PATIENT)


def space(**fields) -> dict:
    data = {
        "name": "toy", "trainer": {"source_dir": ".", "entry_point": "train.py"},
        "hyperparameters": {"lr": {"type": "continuous", "min": 0.001, "max": 0.1}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "acc=([0-9.]+)"},
                               {"name": "loss", "regex": "loss=([0-9.]+)"}],
        "limits": {"max_trials": 8},
    }
    data.update(fields)
    return data


def load(write_space, data):
    path = write_space(data)
    (path.parent / "train.py").write_text("print('acc=1')\n")
    return load_spec(path)


def refusal(write_space, data) -> str:
    with pytest.raises(SpecError) as caught:
        load(write_space, data)
    return str(caught.value)


def test_a_strategy_is_unknown_until_it_is_registered(write_space):
    assert "strategy: must be one of" in refusal(write_space, space(strategy="annealing"))
    assert "unknown key; did you mean" not in refusal(
        write_space, space(strategy="annealing", strategy_config={"temperature": 0}))


def test_a_registered_strategy_is_a_choice_with_its_own_key_and_check(write_space, annealing):
    spec = load(write_space, space(strategy="annealing", strategy_config={"temperature": 0.5}))
    assert spec.strategy == "annealing" and spec.strategy_config == {"temperature": 0.5}
    assert make_sampler(spec) == ("annealing", 0.5, 0)  # the searcher asks the registry too
    said = refusal(write_space, space(strategy="annealing", strategy_config={"temperature": 0}))
    assert "strategy_config.temperature: must be > 0 (got 0)" in said
    said = refusal(write_space, space(strategy="annealing", strategy_config={"temprature": 1}))
    assert "strategy_config.temprature: unknown key; did you mean 'temperature'?" in said
    assert "temperature" in config_keys()


def test_a_registered_strategy_says_whether_it_takes_several_objectives(write_space, annealing,
                                                                        monkeypatch):
    two = [{"metric": "acc", "type": "maximize"}, {"metric": "loss", "type": "minimize"}]
    several = space(strategy="annealing", objectives=two)
    del several["objective"]
    assert load(write_space, several).multi_objective
    monkeypatch.setitem(STRATEGIES, "annealing", Strategy("annealing", toy_sampler))
    said = refusal(write_space, several)
    assert "strategy: must be one of bayesian" in said and "(got annealing)" in said


def test_a_registered_rule_is_a_choice_with_its_own_key_check_and_rules(write_space, patient):
    spec = load(write_space, space(early_stopping="patient", strategy_config={"patience": 3}))
    assert spec.early_stopping == "patient" and rule_of("bayesian", "patient") is PATIENT
    said = refusal(write_space, space(early_stopping="patient", strategy_config={"patience": 0}))
    assert "strategy_config.patience: must be >= 1 (got 0)" in said
    said = refusal(write_space, space(early_stopping="patient", strategy_config={"patience": 9}))
    assert "strategy_config.patience: must be < limits.max_trials; lower patience" in said


def test_a_rule_is_unknown_until_it_is_registered(write_space):
    assert "early_stopping: must be one of" in refusal(write_space,
                                                       space(early_stopping="patient"))


def test_a_key_two_owners_read_is_checked_once():
    """auto and asha both read min_resource: one check, one message."""
    assert all(len(checks) == 1 for checks in config_checks().values())


def test_a_key_only_one_rule_reads_is_refused_under_another(write_space):
    said = refusal(write_space, space(early_stopping="auto", strategy_config={"mode": "stop"}))
    assert "strategy_config.mode: is early_stopping: asha's (stop or promotion; got " \
           "early_stopping: auto); set early_stopping: asha, or remove mode" in said


def _named_in_comparisons(path: Path, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            found += [f"{path.relative_to(HPT)}:{node.lineno} compares with {c.value!r}"
                      for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in names]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            listed = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
            if len(listed) > 1:
                found.append(f"{path.relative_to(HPT)}:{node.lineno} lists {listed}")
    return found


def test_no_module_outside_the_registries_asks_for_a_strategy_or_rule_by_name():
    """Capabilities, not names: `if spec.strategy == "pbt"` or a list of strategies that can
    do something belongs in the strategy's (or rule's) own registration. `off` and `auto`
    are left out: a space's default and words hpt uses otherwise (a scaling, Ray's address)."""
    names = (set(STRATEGIES) | set(RULES)) - {"off", "auto"}
    registries = (HPT / "search" / "strategies", HPT / "schedule" / "rules")
    found = []
    for path in sorted(HPT.rglob("*.py")):
        if not any(folder in path.parents for folder in registries):
            found += _named_in_comparisons(path, names)
    assert found == []
