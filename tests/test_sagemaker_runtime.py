"""runtime: sagemaker -- every request checked against botocore's model of the SageMaker and
CloudWatch Logs APIs (botocore's Stubber validates each call's parameters and each response);
nothing reaches AWS."""

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from hpt.runtime.sagemaker_job import (LOG_GROUP, SageMakerTrainingJob, create_training_job_request,
                                   pack_source, source_uri)
from hpt.runtime.job_protocol import TrialAssignment
from hpt.spacefile import load_spec
from hpt.core.trial import EARLY_STOPPED

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
JOB = "digits-007-0a1b2c3d"


@pytest.fixture
def spec(write_space, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('hi')\n")
    return load_spec(write_space({
        "name": "digits", "runtime": "sagemaker", "output": "s3://out/tuning",
        "limits": {"max_trials": 4, "max_parallel": 2},
        "trainer": {"source_dir": "code", "entry_point": "train.py",
                    "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/hpt-cnn:latest",
                    "instance_type": "ml.m5.xlarge", "instance_count": 1,
                    "max_runtime_seconds": 3600},
        "channels": {"train": "s3://data/digits/train",
                     "test": {"uri": "s3://data/digits/test", "distribution": "ShardedByS3Key"}},
        "static_hyperparameters": {"epochs": 10},
        "hyperparameters": {"lr": {"type": "continuous", "min": 0.001, "max": 0.1}},
        "objective": {"metric": "validation:accuracy", "type": "maximize"},
        "metric_definitions": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"},
                               {"name": "train:loss", "regex": "loss=([0-9.]+)"}]}))


def assignment():
    return TrialAssignment(7, JOB, {"lr": 0.01}, suggested_at=None)


def test_the_create_request_is_valid_and_says_what_the_sdk_would(spec):
    code = source_uri("s3://out/tuning", "digits")
    request = create_training_job_request(spec, assignment(), ROLE, code, "us-east-1")
    model = boto3.session.Session(region_name="us-east-1").client("sagemaker").meta.service_model
    report = ParamValidator().validate(request, model.operation_model("CreateTrainingJob")
                                       .input_shape)
    assert not report.has_errors(), report.generate_report()
    hps = request["HyperParameters"]
    assert all(isinstance(v, str) for v in hps.values())
    assert hps["lr"] == "0.01" and hps["epochs"] == "10"
    assert hps["sagemaker_program"] == '"train.py"'
    assert hps["sagemaker_submit_directory"] == f'"{code}"'
    assert hps["_tuning_objective_metric"] == '"validation:accuracy"'
    assert request["AlgorithmSpecification"]["MetricDefinitions"][0] == {
        "Name": "validation:accuracy", "Regex": "val_acc=([0-9.]+)"}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]
                for c in request["InputDataConfig"]}
    assert channels["test"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert channels["train"]["S3Uri"] == "s3://data/digits/train"
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://out/tuning"}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://out/tuning/{JOB}/checkpoints"
    assert request["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"


def test_the_source_archive_holds_source_dir_at_its_root(spec):
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(pack_source(spec.trainer.source_dir))) as tar:
        assert tar.getnames() == ["train.py"]


def _clients():
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x",
                                    aws_secret_access_key="x")
    sagemaker, logs = session.client("sagemaker"), session.client("logs")
    return sagemaker, logs, Stubber(sagemaker), Stubber(logs)


def _describe(status, **extra):
    base = {"TrainingJobName": JOB, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:1:"
            f"training-job/{JOB}", "TrainingJobStatus": status, "SecondaryStatus": "Training",
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                               "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "CreationTime": dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.timezone.utc),
            "ModelArtifacts": {"S3ModelArtifacts": "s3://out/x/model.tar.gz"}}
    return {**base, **extra}


def _logs(stub, events, token="f/1", previous=None):
    stub.add_response("describe_log_streams", {"logStreams": [
        {"logStreamName": f"{JOB}/algo-1-1764489600"}]},
        {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{JOB}/"})
    params = {"logGroupName": LOG_GROUP, "logStreamName": f"{JOB}/algo-1-1764489600",
              "startFromHead": True}
    if previous:
        params["nextToken"] = previous
    stub.add_response("get_log_events", {"events": [
        {"timestamp": 1764489600000 + i, "message": m} for i, m in enumerate(events)],
        "nextForwardToken": token}, params)
    if events:  # read on until CloudWatch hands back the same token
        stub.add_response("get_log_events", {"events": [], "nextForwardToken": token},
                          {**params, "nextToken": token})


def test_a_completed_job_streams_every_objective_point_then_its_final_metrics(spec, tmp_path):
    sagemaker, logs, sm_stub, logs_stub = _clients()
    job = SageMakerTrainingJob(spec, assignment(), tmp_path / JOB, role_arn=ROLE,
                               code_uri="s3://out/src.tar.gz", sagemaker=sagemaker, logs=logs,
                               poll_seconds=0)
    sm_stub.add_response("create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:"
                         "us-east-1:1:training-job/x"}, {**job.request})
    sm_stub.add_response("describe_training_job", _describe("InProgress"),
                         {"TrainingJobName": JOB})
    _logs(logs_stub, ["epoch=1 loss=0.9 val_acc=0.50", "epoch=2 loss=0.5 val_acc=0.75"])
    sm_stub.add_response("describe_training_job", _describe(
        "Completed", FinalMetricDataList=[{"MetricName": "validation:accuracy", "Value": 0.75,
                                           "Timestamp": dt.datetime(2026, 11, 30, 8, 5)}],
        TrainingStartTime=dt.datetime(2026, 11, 30, 8, 1, tzinfo=dt.timezone.utc),
        TrainingEndTime=dt.datetime(2026, 11, 30, 8, 6, tzinfo=dt.timezone.utc)),
        {"TrainingJobName": JOB})
    _logs(logs_stub, [], previous="f/1")
    _logs(logs_stub, [], previous="f/1")
    with sm_stub, logs_stub:
        job.start()
        points = [job.advance().point.value, job.advance().point.value]
        record = job.advance().record
    assert points == [0.5, 0.75]
    assert record.status == "Completed" and record.objective_value == 0.75
    assert record.final_metrics["train:loss"] == 0.5
    assert record.model_artifact == "s3://out/x/model.tar.gz"
    assert record.end_time - record.start_time == 300
    assert "epoch=2" in (tmp_path / JOB / "algo-1.log").read_text()


def test_a_failed_job_keeps_sagemakers_failure_reason(spec, tmp_path):
    sagemaker, logs, sm_stub, logs_stub = _clients()
    job = SageMakerTrainingJob(spec, assignment(), tmp_path / JOB, role_arn=ROLE,
                               code_uri="s3://out/src.tar.gz", sagemaker=sagemaker, logs=logs,
                               poll_seconds=0)
    sm_stub.add_response("create_training_job", {"TrainingJobArn": "arn:x"})
    sm_stub.add_response("describe_training_job", _describe(
        "Failed", FailureReason="AlgorithmError: ExecuteUserScriptError: exit code 1"))
    for _ in range(2):
        logs_stub.add_client_error("describe_log_streams", "ResourceNotFoundException")
    with sm_stub, logs_stub:
        job.start()
        record = job.advance().record
    assert record.status == "Failed" and record.objective_value is None
    assert record.failure_reason == "AlgorithmError: ExecuteUserScriptError: exit code 1"
    assert record.model_artifact is None


def test_stopping_calls_stop_training_job_and_waits_for_stopped(spec, tmp_path):
    sagemaker, logs, sm_stub, logs_stub = _clients()
    job = SageMakerTrainingJob(spec, assignment(), tmp_path / JOB, role_arn=ROLE,
                               code_uri="s3://out/src.tar.gz", sagemaker=sagemaker, logs=logs,
                               poll_seconds=0)
    sm_stub.add_response("create_training_job", {"TrainingJobArn": "arn:x"})
    sm_stub.add_response("describe_training_job", _describe("InProgress"))
    sm_stub.add_response("stop_training_job", {}, {"TrainingJobName": JOB})
    sm_stub.add_response("describe_training_job", _describe("Stopping"))
    sm_stub.add_response("describe_training_job", _describe("Stopped"))
    _logs(logs_stub, ["epoch=1 loss=0.9 val_acc=0.40"])
    with sm_stub, logs_stub:
        job.start()
        record = job.stop(EARLY_STOPPED)
    sm_stub.assert_no_pending_responses()
    assert record.status == "Stopped" and record.failure_reason == "Stopped by early stopping"
    assert record.objective_value == 0.40  # the last metrics are kept


def test_hpt_launch_runs_trials_as_sagemaker_jobs_on_moto(tmp_path, write_space, moto_server):
    """The whole path against moto's server on 127.0.0.1 (S3, SageMaker, CloudWatch Logs):
    the code upload, one CreateTrainingJob per trial, metrics read from the job's logs."""
    import json
    import os
    import subprocess
    import sys
    import time

    from hpt.experiment.store import training_job_name

    env = {**os.environ, "AWS_ENDPOINT_URL": moto_server,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "HPT_SAGEMAKER_POLL_SECONDS": "0.2"}
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    logs = session.client("logs", endpoint_url=env["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket="out")
    s3.put_object(Bucket="out", Key="data/train/part-0", Body=b"x")
    logs.create_log_group(logGroupName=LOG_GROUP)
    now_ms = int(time.time() * 1000)
    # What the containers would print, for every name the grid's two trials can take.
    for number in (1, 2):
        for mode, acc in (("good", 0.9), ("bad", 0.6)):
            job = training_job_name("onsm", number, {"mode": mode}, 0)
            stream = f"{job}/algo-1-1764489600"
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
            logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=[
                {"timestamp": now_ms + e, "message": f"epoch={e} val_acc={acc * e / 2}"}
                for e in (1, 2)])  # CloudWatch drops events older than 14 days
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print('runs on SageMaker')\n")
    space = write_space({
        "name": "onsm", "runtime": "sagemaker", "output": "s3://out/tuning",
        "trainer": {"source_dir": "code", "entry_point": "train.py",
                    "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/hpt:latest",
                    "instance_type": "ml.m5.xlarge"},
        "channels": {"train": "s3://out/data/train"},
        "hyperparameters": {"mode": {"type": "categorical", "values": ["good", "bad"]}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "grid", "limits": {"max_parallel": 2}})
    done = subprocess.run(
        [sys.executable, "-m", "hpt", "launch", str(space), "--experiments-dir",
         str(tmp_path / "exp"), "--no-dashboard", "--role",
         "arn:aws:iam::123456789012:role/SageMakerRole"],
        env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    import hpt
    df = hpt.load_experiment(tmp_path / "exp" / "onsm")
    by_mode = {r["mode"]: r for _, r in df.iterrows()}
    assert by_mode["good"]["TrainingJobStatus"] == "Completed"
    assert by_mode["good"]["FinalObjectiveValue"] == pytest.approx(0.9)
    assert by_mode["bad"]["FinalObjectiveValue"] == pytest.approx(0.6)
    assert by_mode["good"]["ObjectiveSteps"] == 2  # every intermediate point was read
    assert str(by_mode["good"]["ModelArtifact"]).startswith("s3://out/tuning/")
    # The jobs' data points, read from their logs, are the curves hpt.load_metrics gives.
    curves = hpt.load_metrics(tmp_path / "exp" / "onsm")
    good = curves[curves["TrainingJobName"] == by_mode["good"]["TrainingJobName"]]
    assert list(good["metric"]) == ["acc", "acc"] and list(good["step"]) == [1, 2]
    assert list(good["value"]) == pytest.approx([0.45, 0.9])
    sagemaker = session.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL"])
    jobs = sagemaker.list_training_jobs()["TrainingJobSummaries"]
    assert sorted(j["TrainingJobName"] for j in jobs) == sorted(df["TrainingJobName"])
    described = sagemaker.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
    hps = described["HyperParameters"]
    assert json.loads(hps["sagemaker_submit_directory"]) == \
        "s3://out/tuning/onsm/source/sourcedir.tar.gz"
    assert s3.head_object(Bucket="out", Key="tuning/onsm/source/sourcedir.tar.gz")


TOOLKIT_READS = r'''
import json
from sagemaker_training import environment
env = environment.Environment()
print(json.dumps({"framework": env.additional_framework_parameters,
                  "distribution_hosts": env.distribution_hosts, "hosts": env.hosts}))
'''


@pytest.mark.parametrize("mode, switches", [
    ("data_parallel", {"sagemaker_mpi_enabled": True,
                       "sagemaker_mpi_num_of_processes_per_host": 2}),
    ("parameter_server", {"sagemaker_parameter_server_enabled": True}),
    ("torchrun", {"sagemaker_torch_distributed_enabled": True}),
])
def test_a_distributed_trial_sends_the_sdks_switches_and_the_toolkit_reads_them(
        spec, mode, switches, tmp_path):
    """Without them SageMaker would start N independent copies of the script."""
    import json
    import os
    import subprocess
    import sys

    trainer = spec.trainer.model_copy(update={"instance_count": 2, "distribution": mode,
                                              "processes_per_host": 2})
    two_hosts = spec.model_copy(update={"trainer": trainer})
    request = create_training_job_request(two_hosts, assignment(), ROLE,
                                          source_uri("s3://out/tuning", "digits"), "us-east-1")
    model = boto3.session.Session(region_name="us-east-1").client("sagemaker").meta.service_model
    report = ParamValidator().validate(request, model.operation_model("CreateTrainingJob")
                                       .input_shape)
    assert not report.has_errors(), report.generate_report()
    assert request["ResourceConfig"]["InstanceCount"] == 2
    sent = {k: json.loads(v) for k, v in request["HyperParameters"].items()}
    assert {k: sent[k] for k in switches} == switches
    # What SageMaker hands the container: the request's hyperparameters, as they are.
    config = tmp_path / "opt" / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "hosts": ["algo-1", "algo-2"],
        "network_interface_name": "eth0"}))
    (config / "inputdataconfig.json").write_text("{}")
    done = subprocess.run([sys.executable, "-c", TOOLKIT_READS], capture_output=True, text=True,
                          env={**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path / "opt")},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: seen["framework"][k] for k in switches} == switches
    assert seen["distribution_hosts"] == ["algo-1", "algo-2"]  # one distributed group
