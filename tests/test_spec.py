"""space.yaml -> Spec: every validation rule, one mutation of a valid space at a time, plus
normalization, YAML quirks, overrides and the frozen round trip. No Ray, no processes."""

import copy
import datetime
import json
import os
from pathlib import Path

import pytest
import yaml

from hpt.spacefile import (RESERVED_HYPERPARAMETERS, CategoricalRange, Channel, ContinuousRange,
                      IntegerRange, Spec, SpecError, load_spec, spec_from_dict)

DELETE = object()
OBJ_ACC = {"metric": "validation:accuracy", "type": "maximize"}
OBJ_LOSS = {"metric": "train:loss", "type": "minimize"}

VALID = {
    "name": "digits-cnn",
    "trainer": {"source_dir": "../trainers/cnn", "entry_point": "train.py",
                "environment": {"OMP_NUM_THREADS": 2}},
    "channels": {"train": "../data/train",
                 "test": {"uri": "../data/test", "distribution": "FullyReplicated"}},
    "static_hyperparameters": {"epochs": 8},
    "hyperparameters": {
        "lr": {"type": "continuous", "min": 0.0005, "max": 0.05, "scaling": "log"},
        "batch_size": {"type": "integer", "min": 16, "max": 256, "scaling": "log"},
        "conv_channels": {"type": "categorical", "values": [16, 32, 64]},
        "momentum": {"type": "continuous", "min": 0.5, "max": 0.99, "scaling": "reverse_log"},
    },
    "objective": {"metric": "validation:accuracy", "type": "maximize"},
    "metric_definitions": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"},
                           {"name": "train:loss", "regex": "loss=([0-9.eE+-]+)"}],
    "strategy": "bayesian",
    "limits": {"max_trials": 24, "max_parallel": 2, "max_runtime_seconds": 3600},
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A real tree: trainers/cnn/train.py, data/{train,test}/, spaces/ (cwd = tmp_path)."""
    (tmp_path / "trainers" / "cnn").mkdir(parents=True)
    (tmp_path / "trainers" / "cnn" / "train.py").write_text("print('val_acc=1.0')\n")
    for channel in ("train", "test"):
        (tmp_path / "data" / channel).mkdir(parents=True)
    (tmp_path / "spaces").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _key(part: str):
    return int(part) if part.isdigit() else part


def mutate(data: dict, changes: dict) -> dict:
    """changes: {"a.b.0.c": value | DELETE} or {("a", "odd.key"): value}."""
    data = copy.deepcopy(data)
    for where, value in changes.items():
        path = [_key(p) for p in where.split(".")] if isinstance(where, str) else list(where)
        node = data
        for part in path[:-1]:
            node = node[part]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return data


def write(project: Path, data, name: str = "space.yaml") -> str:
    path = project / "spaces" / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return f"spaces/{name}"  # relative, as a user types it


def problems_of(path: str, overrides=None) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def cat(*values):
    return {"type": "categorical", "values": list(values)}


def cont(lo, hi, scaling="linear"):
    return {"type": "continuous", "min": lo, "max": hi, "scaling": scaling}


# (id, changes to VALID, field path, phrase): each must yield exactly that one problem.
# runtime: sagemaker with everything else it needs (image, s3 data, s3 output).
SAGEMAKER_READY = {"runtime": "sagemaker", "trainer.image": "1.dkr.ecr.us-east-1.amazonaws.com/x",
                   "output": "s3://bucket/out", "channels.train": "s3://bucket/train",
                   "channels.test": "s3://bucket/test"}

CASES = [
    # unknown keys, with a did-you-mean
    ("unknown-trainer-key", {"trainer.entry_pont": "train.py", "trainer.entry_point": DELETE},
     "trainer.entry_pont", "unknown field; did you mean 'entry_point'?"),
    ("unknown-top-key", {"stratgy": "random"}, "stratgy", "did you mean 'strategy'?"),
    ("unknown-range-key", {"hyperparameters.lr.scalng": "log"},
     "hyperparameters.lr.scalng", "did you mean 'scaling'?"),
    ("unknown-limits-key", {"limits.max_trails": 3}, "limits.max_trails",
     "did you mean 'max_trials'?"),
    ("unknown-channel-key", {"channels.test.distrib": "FullyReplicated"}, "channels.test.distrib",
     "did you mean 'distribution'?"),
    ("unknown-key-far-off", {"objective.zzz": 1}, "objective.zzz", "allowed here: metric, type"),
    # wrong types, bools, NaN / inf, quoted numbers
    ("int-from-text", {"limits.max_trials": "ten"}, "limits.max_trials",
     "must be an integer (got 'ten')"),
    ("int-from-fraction", {"limits.max_trials": 2.5}, "limits.max_trials",
     "must be an integer (got 2.5)"),
    ("bool-as-int", {"limits.max_parallel": True}, "limits.max_parallel",
     "must be an integer (got true)"),
    ("bool-as-number", {"trainer.cpus_per_host": True}, "trainer.cpus_per_host",
     "must be a number (got true)"),
    ("bool-as-bound", {"hyperparameters.lr.max": False}, "hyperparameters.lr.max",
     "must be a number (got false)"),
    ("nan-bound", {"hyperparameters.lr.max": float("nan")}, "hyperparameters.lr.max",
     "must be a finite number"),
    ("inf-target", {"completion": {"target_objective": float("inf")}},
     "completion.target_objective", "must be a finite number (got inf)"),
    ("quoted-number", {"hyperparameters.lr.min": "0.001"}, "hyperparameters.lr.min",
     "write the number without quotes"),
    ("string-as-mapping", {"trainer": "train.py"}, "trainer", "must be a mapping"),
    ("list-as-mapping", {"channels": ["../data/train"]}, "channels", "must be a mapping"),
    ("entry-point-not-string", {"trainer.entry_point": 5}, "trainer.entry_point",
     "must be a string (got 5)"),
    ("missing-required-top", {"objective": DELETE}, "objective", "required field is missing"),
    ("missing-required-nested", {"trainer.entry_point": DELETE}, "trainer.entry_point",
     "required field is missing; add entry_point"),
    ("missing-bound", {"hyperparameters.lr.max": DELETE}, "hyperparameters.lr.max",
     "required field is missing"),
    # names
    ("name-underscore", {"name": "digits_cnn"}, "name", "e.g. 'digits-cnn'"),
    ("name-too-long", {"name": "a" * 33}, "name", "1-32 letters, digits and inner hyphens"),
    ("name-leading-hyphen", {"name": "-cnn"}, "name", "inner hyphens (got '-cnn')"),
    ("name-empty", {"name": ""}, "name", "must not be empty"),
    ("name-traversal", {"name": "../evil"}, "name", "e.g. 'evil'"),  # the experiment folder
    ("name-absolute", {"name": "/etc/cron.d"}, "name", "e.g. 'etc-cron-d'"),
    ("name-not-string", {"name": 42}, "name", "must be a string (got 42)"),
    # ranges
    ("min-above-max", {"hyperparameters.lr.min": 0.1}, "hyperparameters.lr.min",
     "must be <= max (got min 0.1 > max 0.05)"),
    ("integer-fraction", {"hyperparameters.batch_size.min": 1.5},
     "hyperparameters.batch_size.min", "must be an integer for type: integer (got 1.5)"),
    ("log-zero-min", {"hyperparameters.lr.min": 0}, "hyperparameters.lr.min",
     "must be > 0 for scaling: log (got 0); use scaling: linear or a positive min"),
    ("log-negative-integer-min", {"hyperparameters.batch_size.min": -1},
     "hyperparameters.batch_size.min", "must be > 0 for scaling: log (got -1)"),
    ("reverse-log-max-1", {"hyperparameters.momentum.max": 1}, "hyperparameters.momentum.max",
     "must be < 1 for scaling: reverse_log (got 1)"),
    ("reverse-log-negative-min", {"hyperparameters.momentum.min": -0.5},
     "hyperparameters.momentum.min", "must be >= 0 for scaling: reverse_log"),
    ("reverse-log-integer", {"hyperparameters.batch_size.scaling": "reverse_log"},
     "hyperparameters.batch_size.scaling", "reverse_log is for continuous ranges"),
    ("unknown-scaling", {"hyperparameters.lr.scaling": "lgo"}, "hyperparameters.lr.scaling",
     "did you mean 'log'?"),
    ("empty-categorical", {"hyperparameters.conv_channels.values": []},
     "hyperparameters.conv_channels.values", "must not be empty"),
    ("duplicate-categorical", {"hyperparameters.conv_channels.values": [16, 32, 16]},
     "hyperparameters.conv_channels.values[2]", "duplicate of values[0] (got 16)"),
    ("bool-equals-int-categorical", {"hyperparameters.conv_channels.values": [1, True]},
     "hyperparameters.conv_channels.values[1]", "equals 1 to Python and Optuna"),
    ("nested-categorical", {"hyperparameters.conv_channels.values": [[16], 32]},
     "hyperparameters.conv_channels.values[0]", "must be a string, number or bool"),
    ("categorical-not-list", {"hyperparameters.conv_channels.values": "16, 32"},
     "hyperparameters.conv_channels.values", "must be a list of choices"),
    ("range-type-misspelt", {"hyperparameters.lr.type": "float"}, "hyperparameters.lr.type",
     "did you mean 'continuous'?"),
    ("range-type-missing", {"hyperparameters.lr.type": DELETE}, "hyperparameters.lr.type",
     "required field is missing; add type: continuous, integer or categorical"),
    ("range-is-a-value", {"hyperparameters.lr": 0.01}, "hyperparameters.lr",
     "a fixed value goes in static_hyperparameters"),
    ("no-ranges", {"hyperparameters": {}}, "hyperparameters", "at least one range"),
    # grid
    ("grid-non-categorical", {"strategy": "grid",
                              "hyperparameters": {"opt": cat("sgd", "adam"), "lr": cont(0.1, 1)}},
     "hyperparameters.lr.type", "must be categorical for strategy: grid (got continuous)"),
    ("grid-too-few-trials", {"strategy": "grid", "limits": {"max_trials": 4},
                             "hyperparameters": {"a": cat(1, 2, 3), "b": cat("x", "y")}},
     "limits.max_trials", "must be >= 6, the grid size"),
    # objective and metrics
    ("objective-not-defined", {"objective.metric": "validation:acc"}, "objective.metric",
     "not defined in metric_definitions (defined: 'validation:accuracy', 'train:loss')"),
    ("objective-type", {"objective.type": "maximise"}, "objective.type",
     "did you mean 'maximize'?"),
    ("duplicate-metric", {"metric_definitions.1.name": "validation:accuracy"},
     "metric_definitions[1].name", "duplicate metric name 'validation:accuracy'"),
    ("regex-does-not-compile", {"metric_definitions.1.regex": "loss=(["},
     "metric_definitions[1].regex", "is not a valid regular expression"),
    ("regex-no-group", {"metric_definitions.1.regex": "loss=[0-9.]+"},
     "metric_definitions[1].regex", "exactly one capture group around the value (got 0"),
    ("regex-two-groups", {"metric_definitions.1.regex": "(loss)=([0-9.]+)"},
     "metric_definitions[1].regex", "exactly one capture group around the value (got 2"),
    ("no-metrics", {"metric_definitions": []}, "metric_definitions", "non-empty list"),
    # trainer and files
    ("source-dir-missing", {"trainer.source_dir": "../trainers/nope"}, "trainer.source_dir",
     "folder not found"),
    ("source-dir-is-file", {"trainer.source_dir": "../trainers/cnn/train.py"},
     "trainer.source_dir", "is not a folder"),
    ("entry-point-missing", {"trainer.entry_point": "trian.py"}, "trainer.entry_point",
     "file not found in source_dir"),
    ("entry-point-escapes", {"trainer.entry_point": "../train.py"}, "trainer.entry_point",
     "relative to source_dir"),
    ("instance-count-zero", {"trainer.instance_count": 0}, "trainer.instance_count",
     "must be >= 1 (got 0)"),
    ("gpus-negative", {"trainer.gpus_per_host": -1}, "trainer.gpus_per_host", "must be >= 0"),
    ("distribution-unknown", {"trainer.distribution": "ddp"}, "trainer.distribution",
     "must be one of none, data_parallel, parameter_server, torchrun"),
    ("env-bad-name", {"trainer.environment": {"1BAD": "x"}}, "trainer.environment.1BAD",
     "not a valid environment variable name"),
    ("env-nul", {"trainer.environment": {"A": "x\0y"}}, "trainer.environment.A",
     "must not contain a NUL"),
    ("env-contract-name", {"trainer.environment": {"SM_MODEL_DIR": "/x"}},
     "trainer.environment.SM_MODEL_DIR", "set by hpt from the training contract"),
    ("env-null-value", {"trainer.environment": {"A": None}}, "trainer.environment.A",
     "must be a string, number or bool (got null)"),
    ("runtime-sagemaker-local-instance", SAGEMAKER_READY, "trainer.instance_type",
     "ml.m5.xlarge"),
    ("runtime-sagemaker-no-output", {**{k: v for k, v in SAGEMAKER_READY.items()
                                        if k != "output"}, "trainer.instance_type": "ml.m5.xlarge"},
     "output", "must be an s3:// URI"),
    ("runtime-docker-no-image", {"runtime": "docker"}, "trainer.image",
     "docker build -t my-trainer:latest"),
    # channels
    ("channel-missing", {"channels.train": "../data/nope"}, "channels.train", "path not found"),
    ("channel-missing-mapping", {"channels.test.uri": "../data/nope"}, "channels.test.uri",
     "path not found"),
    ("channel-slash", {("channels", "a/b"): "../data/train"}, "channels['a/b']",
     "the channel name must be"),
    ("channel-dotdot", {("channels", "a..b"): "../data/train"}, "channels['a..b']",
     "without '..'"),
    ("channel-scheme", {"channels.train": "gs://bucket/train"}, "channels.train.uri",
     "unsupported URI scheme 'gs'"),
    ("channel-bad-bucket", {"channels.train": "s3://"}, "channels.train.uri", "s3://bucket"),
    ("channel-distribution", {"channels.test.distribution": "Sharded"},
     "channels.test.distribution", "FullyReplicated, ShardedByS3Key"),
    ("channel-case-clash", {("channels", "Train"): "../data/test"}, "channels.Train",
     "SM_CHANNEL_TRAIN"),
    ("output-scheme", {"output": "gs://bucket/out"}, "output", "unsupported URI scheme"),
    # hyperparameter names
    ("hp-whitespace", {("hyperparameters", "my lr"): cont(0.1, 1)}, "hyperparameters['my lr']",
     "must not contain whitespace"),
    ("hp-equals", {("hyperparameters", "a=b"): cont(0.1, 1)}, "hyperparameters['a=b']",
     "'='"),
    ("hp-reserved-prefix", {("hyperparameters", "sagemaker_mpi_enabled"): cat(True, False)},
     "hyperparameters.sagemaker_mpi_enabled", "is reserved"),
    ("hp-reserved-key", {("hyperparameters", "_tuning_objective_metric"): cat("a")},
     "hyperparameters._tuning_objective_metric", "is reserved"),
    ("static-reserved", {"static_hyperparameters.sagemaker_program": "x.py"},
     "static_hyperparameters.sagemaker_program", "is reserved"),
    ("static-reserved-plain", {"static_hyperparameters.default_user_module_name": "x"},
     "static_hyperparameters.default_user_module_name", "is reserved"),
    ("hp-also-static", {"hyperparameters.epochs": {"type": "integer", "min": 1, "max": 9}},
     "hyperparameters.epochs", "also in static_hyperparameters"),
    ("hp-case-clash-static", {"hyperparameters.Epochs": {"type": "integer", "min": 1, "max": 9}},
     "hyperparameters.Epochs", "SM_HP_EPOCHS"),
    ("hp-case-clash", {"hyperparameters.LR": cont(0.1, 1)}, "hyperparameters.LR", "SM_HP_LR"),
    ("static-date", {"static_hyperparameters.since": datetime.date(2024, 1, 1)},
     "static_hyperparameters.since", "quote it"),
    # limits, completion, strategy
    ("parallel-above-trials", {"limits.max_parallel": 30}, "limits.max_parallel",
     "must be <= limits.max_trials (got 30 > 24)"),
    ("trials-zero", {"limits.max_trials": 0}, "limits.max_trials", "must be >= 1 (got 0)"),
    ("parallel-zero", {"limits.max_parallel": 0}, "limits.max_parallel", "must be >= 1 (got 0)"),
    ("runtime-zero", {"limits.max_runtime_seconds": 0}, "limits.max_runtime_seconds",
     "must be >= 1"),
    ("trials-missing", {"limits.max_trials": DELETE}, "limits.max_trials",
     "only strategy: grid may omit it"),
    ("early-stopping-true", {"early_stopping": True}, "early_stopping",
     "YAML reads an unquoted on/yes/true as true"),
    ("early-stopping-unknown", {"early_stopping": "median"}, "early_stopping",
     "must be one of off, auto, asha"),
    ("hyperband-early-stopping", {"strategy": "hyperband", "early_stopping": "auto"},
     "early_stopping", "must be off for strategy: hyperband"),
    ("strategy-misspelt", {"strategy": "grids"}, "strategy", "did you mean 'grid'?"),
    ("strategy-config-typo", {"strategy_config": {"min_resouce": 1}},
     "strategy_config.min_resouce", "did you mean 'min_resource'?"),
    ("strategy-config-order", {"strategy_config": {"min_resource": 5, "max_resource": 2}},
     "strategy_config.min_resource", "must be <= max_resource"),
    ("runtime-unknown", {"runtime": "kubernetes"}, "runtime", "local, docker, sagemaker"),
    ("seed-negative", {"seed": -1}, "seed", "must be >= 0"),
    ("convergence-not-bool", {"completion": {"convergence": "maybe"}}, "completion.convergence",
     "must be true or false"),
    ("not-improving-zero", {"completion": {"max_trials_not_improving": 0}},
     "completion.max_trials_not_improving", "must be >= 1"),
    # warm start
    ("warm-start-too-many", {"warm_start": {"parents": [f"p{i}" for i in range(6)],
                                            "type": "transfer_learning"}},
     "warm_start.parents", "1-5 parent tuning job names (got 6 names)"),
    ("warm-start-none", {"warm_start": {"parents": [], "type": "transfer_learning"}},
     "warm_start.parents", "1-5 parent"),
    ("warm-start-bad-name", {"warm_start": {"parents": ["ok", "not_ok"],
                                            "type": "transfer_learning"}},
     "warm_start.parents[1]", "letters, digits and inner hyphens"),
    ("warm-start-type", {"warm_start": {"parents": ["a"], "type": "identical"}},
     "warm_start.type", "did you mean 'identical_data_and_algorithm'?"),

    # several objectives, constraints, conditions
    ("objectives-and-objective", {"objectives": [OBJ_ACC, OBJ_LOSS]},
     "objectives", "either objective: (one metric) or objectives: (several metrics), not both"),
    ("objectives-empty", {"objective": DELETE, "objectives": []}, "objectives",
     "must list the objectives (got [])"),
    ("objectives-not-a-list", {"objective": DELETE, "objectives": OBJ_ACC}, "objectives",
     "must be a list of {metric, type}"),
    ("objectives-duplicate", {"objective": DELETE, "objectives": [OBJ_ACC, OBJ_LOSS, OBJ_ACC]},
     "objectives[2].metric", "'validation:accuracy' is already objectives[0]; remove one"),
    ("objectives-undefined", {"objective": DELETE, "objectives": [
        OBJ_ACC, {"metric": "model:size", "type": "minimize"}]},
     "objectives[1].metric", "'model:size' is not defined in metric_definitions"),
    ("objectives-bad-type", {"objective": DELETE, "objectives": [
        OBJ_ACC, {"metric": "train:loss", "type": "lower"}]},
     "objectives[1].type", "must be one of maximize, minimize"),
    ("objectives-hyperband", {"objective": DELETE, "objectives": [OBJ_ACC, OBJ_LOSS],
                              "strategy": "hyperband"},
     "strategy", "with several objectives (got hyperband); use strategy: nsga2 or bayesian"),
    ("objectives-cmaes", {"objective": DELETE, "objectives": [OBJ_ACC, OBJ_LOSS],
                          "strategy": "cmaes"}, "strategy", "with several objectives"),
    ("objectives-completion", {"objective": DELETE, "objectives": [OBJ_ACC, OBJ_LOSS],
                               "completion": {"target_objective": 0.99}},
     "completion.target_objective", "no meaning with several objectives"),
    ("constraint-unknown-metric", {"constraints": [{"metric": "latency", "max": 20}]},
     "constraints[0].metric", "'latency' is not defined in metric_definitions"),
    ("constraint-no-bound", {"constraints": [{"metric": "train:loss"}]},
     "constraints[0]", "a constraint needs min, max or both"),
    ("constraint-min-above-max", {"constraints": [{"metric": "train:loss", "min": 2, "max": 1}]},
     "constraints[0].min", "must be <= max (got min 2 > max 1)"),
    ("constraint-twice", {"constraints": [{"metric": "train:loss", "max": 1},
                                          {"metric": "train:loss", "min": 0}]},
     "constraints[1].metric", "give one constraint with both min and max"),
    ("constraint-not-a-list", {"constraints": {"metric": "train:loss", "max": 1}},
     "constraints", "must be a list of {metric, min and/or max}"),
    ("constraint-unknown-key", {"constraints": [{"metric": "train:loss", "maximum": 1}]},
     "constraints[0].maximum", "unknown field"),
    ("when-parent-undefined", {"hyperparameters.momentum.when": {"optimizer": ["sgd"]}},
     "hyperparameters.momentum.when.optimizer", "'optimizer' is not a tuned hyperparameter"),
    ("when-parent-static", {"hyperparameters.momentum.when": {"epochs": [8]}},
     "hyperparameters.momentum.when.epochs", "is a static hyperparameter"),
    ("when-parent-not-categorical", {"hyperparameters.momentum.when": {"lr": [0.01]}},
     "hyperparameters.momentum.when.lr", "'lr' must be categorical to condition a range"),
    ("when-value-not-among", {"hyperparameters.momentum.when": {"conv_channels": [16, 128]}},
     "hyperparameters.momentum.when.conv_channels",
     "128 is not a value of 'conv_channels' (16, 32, 64); list values it can take"),
    ("when-itself", {"hyperparameters.conv_channels.when": {"conv_channels": [16]}},
     "hyperparameters.conv_channels.when.conv_channels", "cannot depend on itself"),
    ("when-cycle", {("hyperparameters", "opt"): {"type": "categorical", "values": ["a", "b"],
                                                 "when": {"conv_channels": [16]}},
                    "hyperparameters.conv_channels.when": {"opt": ["a"]}},
     "hyperparameters.conv_channels.when",
     "conditions form a cycle (conv_channels -> opt -> conv_channels)"),
    ("when-empty", {"hyperparameters.momentum.when": {}},
     "hyperparameters.momentum.when", "must map a categorical hyperparameter to the values"),
    ("when-no-values", {"hyperparameters.momentum.when": {"conv_channels": []}},
     "hyperparameters.momentum.when.conv_channels", "must list at least one value"),
    ("nsga2-population", {"strategy": "nsga2", "strategy_config": {"population_size": 1}},
     "strategy_config.population_size", "must be >= 2"),
]


def test_torchrun_needs_a_python_entry_point(project):
    (project / "trainers" / "cnn" / "run.sh").write_text("echo hi\n")
    problems = problems_of(write(project, mutate(VALID, {
        "trainer.distribution": "torchrun", "trainer.entry_point": "run.sh"})))
    assert problems == ["spaces/space.yaml: trainer.entry_point: must be a Python script for "
                        "distribution: torchrun (got 'run.sh'); torchrun starts `python "
                        "<entry_point>` on every process, use a .py entry point or another "
                        "distribution"]


@pytest.mark.parametrize("changes, path, phrase", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_rule_reports_one_line_with_file_path_and_fix(project, changes, path, phrase):
    problems = problems_of(write(project, mutate(VALID, changes)))
    assert len(problems) == 1, "\n".join(problems)
    prefix = f"spaces/space.yaml: {path}: "
    assert problems[0].startswith(prefix), problems[0]
    assert phrase in problems[0], problems[0]
    assert "\n" not in problems[0] and "pydantic" not in problems[0]


def test_a_valid_space_is_normalized(project):
    spec = load_spec(write(project, mutate(VALID, {
        "objective.type": "Maximize", "hyperparameters.lr.scaling": "Logarithmic",
        "channels.extra": {"uri": "s3://bucket/extra", "distribution": "shardedbys3key"},
        "trainer.environment": {"N": 2, "FLAG": True, "X": 0.5, "S": "s"}})))
    assert spec.name == "digits-cnn" and spec.source_path == project / "spaces" / "space.yaml"
    assert spec.trainer.source_dir == project / "trainers" / "cnn"
    assert spec.trainer.source_dir.is_absolute()
    assert spec.trainer.environment == {"N": "2", "FLAG": "true", "X": "0.5", "S": "s"}
    assert spec.channels["train"] == Channel(uri=str(project / "data" / "train"))
    assert not spec.channels["train"].is_s3
    assert spec.channels["extra"].is_s3 and spec.channels["extra"].uri == "s3://bucket/extra"
    assert spec.channels["extra"].distribution == "ShardedByS3Key"
    assert spec.objective.type == "maximize"
    ranges = spec.hyperparameters
    assert isinstance(ranges["lr"], ContinuousRange) and ranges["lr"].scaling == "log"
    assert isinstance(ranges["batch_size"], IntegerRange) and ranges["batch_size"].max == 256
    assert isinstance(ranges["conv_channels"], CategoricalRange)
    assert (spec.strategy, spec.early_stopping, spec.seed, spec.runtime) == ("bayesian", "off", 0, "local")
    assert spec.output is None and spec.warm_start is None and spec.strategy_config == {}
    assert spec.completion.convergence is False and spec.limits.max_trials == 24


def test_defaults_for_omitted_fields(project):
    minimal = {key: VALID[key] for key in ("name", "trainer", "hyperparameters", "objective",
                                           "metric_definitions")}
    minimal["limits"] = {"max_trials": 3}
    spec = load_spec(write(project, minimal))
    assert spec.channels == {} and spec.static_hyperparameters == {}
    assert spec.limits.max_parallel == 1 and spec.limits.max_runtime_seconds is None
    t = spec.trainer
    assert (t.image, t.instance_count, t.instance_type, t.cpus_per_host, t.gpus_per_host,
            t.processes_per_host, t.distribution, t.max_runtime_seconds) == \
        (None, 1, "local", 1.0, 0.0, 1, "none", 86400)


def test_frozen_dict_round_trips_without_reading_files(project):
    spec = load_spec(write(project, mutate(VALID, {
        "warm_start": {"parents": ["old-job"], "type": "TransferLearning"},
        "completion": {"target_objective": 0.99, "convergence": True},
        "output": "s3://bucket/out", "static_hyperparameters.opt": {"name": "adam", "betas": [0.9]},
        "hyperparameters.conv_channels.values": ["a", 2, 2.5, True]})))
    frozen = json.loads(json.dumps(spec.to_frozen_dict()))  # JSON-serializable
    assert frozen["trainer"]["source_dir"] == str(project / "trainers" / "cnn")
    assert frozen["hyperparameters"]["lr"]["type"] == "continuous"
    (project / "trainers" / "cnn" / "train.py").unlink()  # from_frozen_dict checks no path
    (project / "data" / "train").rmdir()
    again = Spec.from_frozen_dict(frozen)
    assert again == spec
    assert again.hyperparameters["conv_channels"].values == ["a", 2, 2.5, True]
    assert [type(v) for v in again.hyperparameters["conv_channels"].values] == [str, int, float, bool]
    assert again.to_frozen_dict() == frozen


def test_relative_paths_resolve_against_the_yaml_folder_not_the_cwd(project, tmp_path_factory):
    path = project / "spaces" / "space.yaml"
    path.write_text(yaml.safe_dump(mutate(VALID, {"channels.test.uri": "file://../data/test"})))
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    spec = load_spec(path)
    assert spec.trainer.source_dir == project / "trainers" / "cnn"
    assert spec.channels["train"].uri == str(project / "data" / "train")
    assert spec.channels["test"].uri == str(project / "data" / "test")  # file:// -> plain path
    write(project, mutate(VALID, {"channels.test.uri": f"file://{project / 'data' / 'test'}"}))
    absolute = load_spec(path)
    assert absolute.channels["test"].uri == str(project / "data" / "test")


def test_yaml_1_1_quirks(project):
    text = yaml.safe_dump(mutate(VALID, {"hyperparameters.lr": "LR"}), sort_keys=False)
    text = text.replace("lr: LR", "lr: {type: continuous, min: 1e-4, max: 5E-2, scaling: log}")
    text += "early_stopping: off\ncompletion: {convergence: on}\n"
    (project / "spaces" / "quirks.yaml").write_text(text)
    spec = load_spec("spaces/quirks.yaml")
    assert spec.early_stopping == "off" and spec.completion.convergence is True
    assert spec.hyperparameters["lr"].min == pytest.approx(1e-4)  # not the string '1e-4'
    assert spec.hyperparameters["lr"].max == pytest.approx(0.05)


def test_duplicate_keys_are_rejected_with_their_lines(project):
    text = yaml.safe_dump(VALID, sort_keys=False) + "name: other\n"
    text = text.replace("  entry_point: train.py\n", "  entry_point: train.py\n  entry_point: x.py\n")
    (project / "spaces" / "dup.yaml").write_text(text)
    problems = problems_of("spaces/dup.yaml")
    assert len(problems) == 2
    assert all(p.startswith("spaces/dup.yaml: line ") for p in problems)
    assert "duplicate key 'entry_point'" in problems[0]
    assert "duplicate key 'name' (first at line 1)" in problems[1]


@pytest.mark.parametrize("text, phrase", [
    ("name: x\ntrainer: [a\n", "line 3, column 1: YAML syntax error"),
    ("name: a: b\n", "line 1, column 8: YAML syntax error: mapping values are not allowed"),
    ("name: x\ntrainer:\n\tsource_dir: x\n", "indent with spaces, not tabs"),
    ("- name: x\n", "the top level must be a mapping of fields"),
    ("", "the file is empty"),
    ("just text\n", "the top level must be a mapping of fields"),
], ids=["unclosed", "colon", "tab", "list", "empty", "scalar"])
def test_unreadable_files_are_one_clear_line(project, text, phrase):
    (project / "spaces" / "broken.yaml").write_text(text)
    problems = problems_of("spaces/broken.yaml")
    assert len(problems) == 1 and problems[0].startswith("spaces/broken.yaml: ")
    assert phrase in problems[0], problems[0]


def test_missing_file_and_folder(project):
    assert problems_of("spaces/nope.yaml") == [
        f"spaces/nope.yaml: file not found; check the path (relative paths start from the "
        f"working directory {project})"]
    assert "is a folder" in problems_of("spaces")[0]


def test_every_problem_is_reported_together_in_file_order(project):
    path = write(project, mutate(VALID, {
        "name": "bad_name", "trainer.entry_pont": "train.py", "trainer.entry_point": DELETE,
        "hyperparameters.lr.min": 0, "objective.metric": "nope",
        "limits.max_trials": "ten", "channels.train": "../data/nope"}))
    problems = problems_of(path)
    paths = [p.split(": ")[1] for p in problems]
    assert paths == ["name", "trainer.entry_pont", "channels.train", "hyperparameters.lr.min",
                     "objective.metric", "limits.max_trials"]
    assert all(p.startswith("spaces/space.yaml: ") for p in problems)


def test_overrides_apply_before_validation(project):
    path = write(project, mutate(VALID, {"limits": DELETE, "trainer.image": "hpt-cnn:latest"}))
    spec = load_spec(path, {"limits.max_trials": 3, "runtime": "docker", "name": "x"})
    assert (spec.limits.max_trials, spec.runtime, spec.name) == (3, "docker", "x")
    problems = problems_of(path, {"limits.max_trials": 0})
    assert problems == ["spaces/space.yaml: limits.max_trials: must be >= 1 (got 0) (the value "
                        "came from an override, e.g. a command-line option)"]


def test_grid_max_trials_defaults_to_the_grid_size(project):
    spec = load_spec(write(project, mutate(VALID, {
        "strategy": "grid", "limits": {"max_parallel": 2},
        "hyperparameters": {"a": cat(1, 2, 3), "b": cat("x", "y")}})))
    assert spec.limits.max_trials == 6


def test_spec_from_dict_names_the_given_source(project):
    with pytest.raises(SpecError) as info:
        spec_from_dict(mutate(VALID, {"seed": "x"}), Path("spaces/space.yaml"))
    assert info.value.problems == ["spaces/space.yaml: seed: must be an integer (got 'x')"]
    spec = spec_from_dict(copy.deepcopy(VALID), project / "spaces" / "space.yaml")
    assert spec.trainer.source_dir == project / "trainers" / "cnn"


def test_reserved_hyperparameters():
    assert {"sagemaker_program", "sagemaker_submit_directory", "sagemaker_container_log_level",
            "sagemaker_job_name", "sagemaker_region", "sagemaker_enable_cloudwatch_metrics",
            "sagemaker_s3_output", "default_user_module_name",
            "_tuning_objective_metric"} == RESERVED_HYPERPARAMETERS
    assert isinstance(RESERVED_HYPERPARAMETERS, frozenset)


def test_an_entry_point_written_with_dot_slash_is_the_same_file(write_space):
    from helpers import faulty_space

    space = faulty_space()
    space["trainer"]["entry_point"] = "./train.py"
    assert load_spec(write_space(space)).trainer.entry_point == "train.py"
