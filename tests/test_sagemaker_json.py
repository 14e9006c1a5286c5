"""space.yaml -> CreateHyperParameterTuningJob (valid for botocore's sagemaker model) -> back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest

from hpt.core.errors import UserError
import yaml
from botocore.validate import ParamValidator

from hpt.spacefile import load_spec
from hpt.spacefile.sagemaker_json import from_request, to_request

REPO = Path(__file__).resolve().parent.parent
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


def validate(request):
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateHyperParameterTuningJob").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


def resolved_view(spec) -> dict:
    """The spec with every path resolved (the loaded spec's are absolute already; so are the
    words of its prepare command that name a file or folder next to its yaml): two views are
    equal when both spaces point at the same files, wherever each yaml is."""
    data = spec.to_frozen_dict()
    base = Path(spec.source_path).parent
    data.pop("source_path")
    if data.get("prepare"):
        data["prepare"] = [os.path.normpath(base / w) if i and (base / w).exists() else w
                           for i, w in enumerate(data["prepare"])]
    return data


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_every_bundled_space_exports_a_valid_request_and_comes_back_equal(path, tmp_path):
    spec = load_spec(path, check_disk=False)
    if spec.strategy == "pbt" or spec.strategy_config.get("mode") == "promotion":
        # What SageMaker's tuner cannot do (restart a job from a checkpoint) is refused.
        with pytest.raises(UserError, match="pbt|promotion"):
            to_request(spec, None, False)
        return
    # A multi-objective, constrained or conditional space exports as the single-objective job
    # of its first objective, with flat ranges (what SageMaker can express); that comes back.
    reduced = spec.multi_objective or bool(spec.constraints) or spec.conditional
    request, report = to_request(spec, spec.objective.metric if reduced else None, reduced)
    if reduced:
        spec = spec.model_copy(update={
            "objectives": [], "constraints": [],
            "hyperparameters": {name: rng.model_copy(update={"when": None})
                                for name, rng in spec.hyperparameters.items()}})
    validate(request)
    json.dumps(request)  # plain JSON
    assert all(isinstance(v, str) for v in
               request["TrainingJobDefinition"]["StaticHyperParameters"].values())
    if spec.trainer.image is None:  # placeholders are said
        assert any(line.startswith("trainer.image") for line in report)
    space, _ = from_request(json.loads(json.dumps(request)))
    # Written anywhere (here: a folder of its own, far from the original's), it is the same.
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    imported = tmp_path / "elsewhere" / "deeper" / path.name
    imported.write_text(yaml.safe_dump(space, sort_keys=False))
    assert resolved_view(load_spec(imported, check_disk=False)) == resolved_view(spec)


def test_hpt_only_settings_are_reported_and_survive_the_round_trip(write_space, tmp_path):
    (tmp_path / "train.py").write_text("")
    space = {"name": "odd", "trainer": {"source_dir": ".", "entry_point": "train.py",
                                        "cpus_per_host": 0.5, "warm_start": True,
                                        "distribution": "parameter_server",
                                        "processes_per_host": 2},
             "hyperparameters": {"x": {"type": "continuous", "min": 0.1, "max": 0.9},
                                 "flag": {"type": "categorical", "values": [True, False]},
                                 "width": {"type": "categorical", "values": [1.5, 2.5]}},
             "objective": {"metric": "m", "type": "minimize"},
             "metric_definitions": [{"name": "m", "regex": "m=([0-9.]+)"}],
             "strategy": "cmaes", "early_stopping": "asha",
             "completion": {"target_objective": 0.1, "max_trials_not_improving": 4,
                            "convergence": True},
             "warm_start": {"parents": ["a", "b"], "type": "transfer_learning"},
             "limits": {"max_trials": 9, "max_parallel": 3, "max_runtime_seconds": 600},
             "seed": 5}
    spec = load_spec(write_space(space), check_disk=False)
    request, report = to_request(spec)
    validate(request)
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["TuningJobCompletionCriteria"] == {
        "TargetObjectiveMetricValue": 0.1,
        "BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 4},
        "ConvergenceDetected": {"CompleteOnConvergence": "Enabled"}}
    assert request["WarmStartConfig"]["WarmStartType"] == "TransferLearning"
    statics = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert statics["sagemaker_parameter_server_enabled"] == "true"
    assert any("cmaes" in line for line in report) and any("asha" in line for line in report)
    back, _ = from_request(request)
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "space.yaml").write_text(yaml.safe_dump(back, sort_keys=False))
    again = load_spec(tmp_path / "again" / "space.yaml", check_disk=False)
    assert resolved_view(again) == resolved_view(spec)


def test_a_plain_sagemaker_request_imports_with_a_report_of_what_was_assumed():
    request = {
        "HyperParameterTuningJobName": "from-sdk",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random", "ResourceLimits": {"MaxNumberOfTrainingJobs": 10,
                                                     "MaxParallelTrainingJobs": 2},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "acc"},
            "ParameterRanges": {"IntegerParameterRanges": [
                {"Name": "epochs", "MinValue": "1", "MaxValue": "5", "ScalingType": "Linear"}]}},
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"sagemaker_program": "\"main.py\"", "lr": "0.1"},
            "AlgorithmSpecification": {"TrainingImage": "my/image:1", "TrainingInputMode": "File",
                                       "MetricDefinitions": [{"Name": "acc", "Regex": "a=(.*)"}]},
            "RoleArn": "arn:aws:iam::1:role/x", "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://b/train",
                "S3DataDistributionType": "ShardedByS3Key"}}}],
            "StoppingCondition": {"MaxRuntimeInSeconds": 60}}}
    validate(request)
    space, report = from_request(request)
    assert space["trainer"]["entry_point"] == "main.py" and space["trainer"]["image"] == "my/image:1"
    assert space["static_hyperparameters"] == {"lr": 0.1}
    assert space["channels"]["train"] == {"uri": "s3://b/train", "distribution": "ShardedByS3Key"}
    assert space["output"] == "s3://b/o" and space["strategy"] == "random"
    assert any("source_dir" in line for line in report)


def test_cli_round_trip_and_bad_json_exit_2(tmp_path):
    def hpt(*args):
        return subprocess.run([sys.executable, "-m", "hpt.cli.main", *map(str, args)],
                              capture_output=True, text=True, timeout=60)

    done = hpt("export-sagemaker", REPO / "search_spaces" / "digits-cnn.yaml")
    assert done.returncode == 0 and "RoleArn" in done.stderr
    request = tmp_path / "request.json"
    request.write_text(done.stdout)
    back = hpt("import-sagemaker", request)
    assert back.returncode == 0 and yaml.safe_load(back.stdout)["name"] == "digits-cnn"
    request.write_text("{not json")
    bad = hpt("import-sagemaker", request)
    assert bad.returncode == 2 and "not JSON" in bad.stderr and "Traceback" not in bad.stderr
    request.write_text(json.dumps({"HyperParameterTuningJobName": "x"}))
    bad = hpt("import-sagemaker", request)
    assert bad.returncode == 2 and "HyperParameterTuningJobConfig" in bad.stderr


def test_hyperband_with_one_resource_exports_both_as_hpt_runs_them_and_imports_back(
        write_space):
    from helpers import faulty_space

    space = faulty_space(name="hb", strategy="hyperband", limits={"max_trials": 4},
                         strategy_config={"min_resource": 2})
    request, _ = to_request(load_spec(write_space(space), check_disk=False))
    validate(request)
    assert request["HyperParameterTuningJobConfig"]["StrategyConfig"] == {
        "HyperbandStrategyConfig": {"MinResource": 2, "MaxResource": 100}}  # ASHA's max_t
    back, _ = from_request(request)
    assert back["strategy_config"] == {"min_resource": 2, "max_resource": 100}


def test_a_prepare_command_with_spaces_in_its_words_round_trips(write_space, tmp_path):
    from helpers import faulty_space

    command = ["python", "../my scripts/prepare data.py", "--out", "a b"]
    space = faulty_space(name="prep", prepare=command)
    request, _ = to_request(load_spec(write_space(space), check_disk=False))
    back, _ = from_request(request)
    assert back["prepare"] == command
    # A request an earlier release wrote (the words joined by spaces) still imports.
    for tag in request["Tags"]:
        if tag["Key"] == "hpt:prepare":
            tag["Value"] = "python ../scripts/prepare_data.py"
    assert from_request(request)[0]["prepare"] == ["python", "../scripts/prepare_data.py"]


def test_an_imported_space_validates_wherever_it_is_written(tmp_path):
    """`hpt import-sagemaker request.json > space.yaml` in any folder: it validated only when
    written into the original space's folder (the tags' paths were relative to it)."""
    def hpt(*args, **kwargs):
        return subprocess.run([sys.executable, "-m", "hpt.cli.main", *map(str, args)],
                              capture_output=True, text=True, timeout=60, **kwargs)

    exported = hpt("export-sagemaker", REPO / "search_spaces" / "digits-cnn.yaml")
    (tmp_path / "request.json").write_text(exported.stdout)
    imported = hpt("import-sagemaker", "request.json", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    (elsewhere / "space.yaml").write_text(imported.stdout)
    checked = hpt("validate", elsewhere / "space.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    space = yaml.safe_load(imported.stdout)
    assert space["trainer"]["source_dir"] == str(REPO / "trainers" / "cnn")
    assert space["prepare"] == ["python", str(REPO / "scripts" / "prepare_data.py")]


def test_a_container_entrypoint_round_trips_and_runs_only_in_a_container(write_space, tmp_path):
    """trainer.container_entrypoint / container_arguments are SageMaker's ContainerEntrypoint
    and ContainerArguments (the SDK 3.x ModelTrainer's way of running code): exported (in hpt's
    tags: a tuning job's definition has no such field), imported back, and sent by runtime:
    sagemaker in its CreateTrainingJob; on local processes, or beside hpt's own distribution,
    refused with the fix."""
    (tmp_path / "train.py").write_text("")
    trainer = {"source_dir": ".", "entry_point": "train.py", "image": "my-image:1",
               "container_entrypoint": ["/bin/bash"],
               "container_arguments": ["-c", "python /opt/ml/input/data/code/train.py"]}
    space = {"name": "three", "runtime": "docker", "trainer": trainer,
             "hyperparameters": {"x": {"type": "continuous", "min": 0.1, "max": 0.9}},
             "objective": {"metric": "m", "type": "minimize"},
             "metric_definitions": [{"name": "m", "regex": "m=([0-9.]+)"}],
             "limits": {"max_trials": 2}}
    spec = load_spec(write_space(space), check_disk=False)
    request, _ = to_request(spec)
    validate(request)
    # A tuning job's definition has no ContainerEntrypoint: hpt's tags carry it.
    assert "ContainerEntrypoint" not in request["TrainingJobDefinition"]["AlgorithmSpecification"]
    back, report = from_request(request)
    assert back["trainer"]["container_entrypoint"] == ["/bin/bash"]
    assert back["trainer"]["container_arguments"] == trainer["container_arguments"]
    assert not any("sagemaker_program" in line for line in report)
    from hpt.core.sagemaker_names import container_command

    assert container_command(spec.trainer) == {
        "ContainerEntrypoint": ["/bin/bash"], "ContainerArguments": trainer["container_arguments"]}
    for change, says in (({"runtime": "local"}, "trainer.container_entrypoint: runs in a "
                                                "container"),
                         ({"trainer": {**trainer, "distribution": "data_parallel"}},
                          "every host runs the entrypoint")):
        with pytest.raises(UserError, match=says):
            load_spec(write_space({**space, **change}), check_disk=False)
