"""Fuzzed bad input: hundreds of seeded malformed space.yaml files. Each one is either valid
or rejected with SpecError: every line naming the file, no traceback, in bounded time, and
`hpt launch` exits 2 without creating any experiment folder."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpt.spacefile import SpecError, load_spec
from fuzz.mutate import corpus

SEED, COUNT = 20261130, 320
REPO_SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "digits-cnn.yaml"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "code").mkdir()
    (root / "code" / "train.py").write_text("print('val_acc=1')\n")
    (root / "data").mkdir()
    return root, {
        "name": "fuzzed",
        "trainer": {"source_dir": "code", "entry_point": "train.py", "cpus_per_host": 1,
                    "environment": {"A": "1"}},
        "channels": {"train": "data"},
        "static_hyperparameters": {"epochs": 3},
        "hyperparameters": {
            "lr": {"type": "continuous", "min": 0.001, "max": 0.1, "scaling": "log"},
            "units": {"type": "integer", "min": 8, "max": 64},
            "opt": {"type": "categorical", "values": ["sgd", "adam"]}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "bayesian", "limits": {"max_trials": 4, "max_parallel": 2}}


def multi_objective(space: dict) -> dict:
    """The valid space with two objectives, a constraint and a conditional range."""
    space = dict(space, objectives=[{"metric": "acc", "type": "maximize"},
                                    {"metric": "size", "type": "minimize"}],
                 constraints=[{"metric": "size", "max": 5}])
    del space["objective"]
    space["metric_definitions"] = space["metric_definitions"] + [
        {"name": "size", "regex": "size=([0-9.]+)"}]
    space["hyperparameters"] = dict(space["hyperparameters"], momentum={
        "type": "continuous", "min": 0.5, "max": 0.9, "when": {"opt": ["sgd"]}})
    return space


@pytest.mark.parametrize("form", ["single", "multi-objective"])
def test_every_malformed_space_is_rejected_cleanly_and_quickly(valid, form):
    root, space = valid
    if form != "single":
        space = multi_objective(space)
        load_spec(_write(root, "valid-multi.yaml", space))  # the unmutated space is valid
    rejected = accepted = 0
    slowest = 0.0
    for name, content in corpus(space, SEED, COUNT if form == "single" else COUNT // 3):
        path = root / f"{form}-{name}.yaml"
        path.write_bytes(content)
        began = time.perf_counter()
        try:
            load_spec(path)
            accepted += 1  # a mutation that happens to stay valid
        except SpecError as exc:
            rejected += 1
            for line in exc.problems:
                assert line.startswith(f"{path}: "), (name, line)
                assert "Traceback" not in line and "pydantic" not in line.lower(), (name, line)
                assert len(line) < 2000, (name, line[:300])
        slowest = max(slowest, time.perf_counter() - began)
        assert time.perf_counter() - began < 5, f"{name} took too long"
    print(f"fuzzed spaces: {rejected + accepted} tried, {rejected} rejected cleanly, "
          f"{accepted} still valid, slowest {slowest * 1000:.0f} ms")
    assert rejected >= (200 if form == "single" else 60)


def _write(root, name: str, space: dict):
    import yaml

    path = root / name
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def test_the_cli_exits_2_and_creates_nothing_for_malformed_spaces(valid, tmp_path):
    root, space = valid
    samples = [c for _, c in corpus(space, SEED + 1, 60)][:: 6]  # 10 across the kinds
    for i, content in enumerate(samples):
        path = root / f"cli-{i}.yaml"
        path.write_bytes(content)
        exp = tmp_path / f"exp-{i}"
        done = subprocess.run([sys.executable, "-m", "hpt", "launch", str(path),
                               "--experiments-dir", str(exp), "--no-dashboard"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            continue  # a still-valid mutation ran its job: fine
        assert done.returncode == 2, (content[:200], done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        assert not exp.exists() or not any(exp.iterdir()), list(exp.rglob("*"))[:5]


def test_every_malformed_sagemaker_request_is_refused_cleanly(valid, tmp_path, capsys):
    import json
    import math

    from fuzz.mutate import structured
    from hpt.cli.main import main
    from hpt.spacefile.sagemaker_json import to_request

    root, _ = valid
    request, _ = to_request(load_spec(REPO_SPACE, check_disk=False))
    import random
    rng = random.Random(SEED)
    refused = imported = 0
    for i in range(240):
        mutated = structured(request, rng)
        path = tmp_path / f"request-{i}.json"
        text = json.dumps(mutated, default=str)
        if rng.random() < 0.1:
            text = text[: rng.randrange(len(text))]  # truncated JSON
        path.write_text(text)
        code = main(["import-sagemaker", str(path)])
        err = capsys.readouterr().err
        assert code in (0, 2), (i, code, err[-500:])
        if code == 2:
            refused += 1
            lines = [ln for ln in err.splitlines() if ln]
            assert lines and all(str(path) in ln for ln in lines), err[-500:]
            assert "Traceback" not in err
        else:
            imported += 1
    print(f"fuzzed requests: {refused + imported} tried, {refused} refused cleanly, "
          f"{imported} still importable")
    assert refused >= 150 and not math.isnan(refused)
