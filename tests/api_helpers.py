"""A real `hpt api` for the tests: the server as a user starts it, with moto's S3 on
127.0.0.1 as the S3 it and its clients use, and the digits data and the CNN trainer in S3."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hpt.runtime.warm.child import dying_with_parent

REPO = Path(__file__).resolve().parent.parent
TRAINER = REPO / "trainers" / "cnn"
BUCKET = "hpt-api-tests"
PYTORCH_TRAINING = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1-cpu-py310"
PYTORCH_INFERENCE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310"
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(s3_url: str) -> dict[str, str]:
    """What a user's shell has: credentials, a region, and where S3 is."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": s3_url}


class ApiServer:
    """`hpt api` in a process of its own (its own session: the test can kill it as a whole),
    SIGKILLed if pytest dies first (a `timeout` or a ^C that skips the teardown): hpt api's own
    reaper then takes its Ray and its launchers with it, so nothing outlives the run."""

    def __init__(self, experiments: Path, s3_url: str, *args: str, cpus: int = 4):
        self.experiments, self.s3_url, self.args, self.cpus = experiments, s3_url, args, cpus
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = experiments.parent / f"hpt-api-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> ApiServer:
        env = {**os.environ, **client_env(self.s3_url), "PYTHONUNBUFFERED": "1"}
        argv, preexec = dying_with_parent(
            [sys.executable, "-m", "hpt.cli.main", "api", "--port", str(self.port),
             "--experiments-dir", str(self.experiments), "--num-cpus", str(self.cpus),
             *self.args])
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=preexec)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"hpt api exited with {self.process.returncode}:\n"
                                     f"{self.output()}")
            if "SageMaker API at" in self.output():
                return self
            time.sleep(0.2)
        raise AssertionError(f"hpt api did not start in {timeout}s:\n{self.output()}")

    @property
    def ray_folder(self) -> str:
        """The session folder of the server's own Ray (from its start line)."""
        import re

        return re.search(r"Ray 127\.0\.0\.1:\d+ in (\S+);", self.output()).group(1)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        if self.process is None:
            return 0
        if sig == signal.SIGKILL:
            os.kill(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(timeout=20)
        self.process = None
        return code


SDK_CONFIG = """SchemaVersion: "1.0"
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def sdk_telemetry_off(folder: Path, monkeypatch) -> None:
    """The SageMaker SDK sends usage telemetry to an AWS host unless its configuration opts
    out (docs/api.md says how): this test's SDK opts out, as the page's example does."""
    config = folder / "sagemaker-config.yaml"
    config.write_text(SDK_CONFIG)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))


def boto_clients(api_url: str, s3_url: str):
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name="us-east-1")
    return (session.client("sagemaker", endpoint_url=api_url),
            session.client("sagemaker-runtime", endpoint_url=api_url),
            session.client("s3", endpoint_url=s3_url))


def upload_inputs(s3, data_dir: Path) -> dict[str, str]:
    """The digits channels and the trainer's code (a sourcedir.tar.gz, as the SDK packs it)."""
    s3.create_bucket(Bucket=BUCKET)
    for channel in ("train", "test"):
        s3.upload_file(str(data_dir / channel / "data.npz"), BUCKET,
                       f"data/{channel}/data.npz")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(TRAINER.glob("*.py")):
            tar.add(path, arcname=path.name)
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    return {"train": f"s3://{BUCKET}/data/train", "test": f"s3://{BUCKET}/data/test",
            "code": f"s3://{BUCKET}/code/sourcedir.tar.gz", "output": f"s3://{BUCKET}/output"}


def tuning_request(name: str, uris: dict[str, str], max_jobs: int = 6, parallel: int = 2,
                   epochs: int = 3) -> dict:
    """A CreateHyperParameterTuningJob request as the SageMaker SDK writes it for a PyTorch
    estimator in script mode (hyperparameters JSON-encoded)."""
    import json

    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize",
                                                 "MetricName": "validation:accuracy"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs,
                               "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.003",
                                               "MaxValue": "0.05", "ScalingType": "Logarithmic"}],
                "IntegerParameterRanges": [],
                "CategoricalParameterRanges": [{"Name": "optimizer",
                                                "Values": ['"adam"', '"sgd"']}]},
            "TrainingJobEarlyStoppingType": "Off",
            "RandomSeed": 7,
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {
                "epochs": json.dumps(epochs), "batch_size": json.dumps(64),
                "sagemaker_program": json.dumps("train.py"),
                "sagemaker_submit_directory": json.dumps(uris["code"]),
                "sagemaker_container_log_level": "20", "sagemaker_region": '"us-east-1"',
                "sagemaker_job_name": json.dumps(name)},
            "AlgorithmSpecification": {
                "TrainingImage": PYTORCH_TRAINING, "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "validation:accuracy",
                                       "Regex": "val_acc=([0-9.]+)"},
                                      {"Name": "train:loss", "Regex": "loss=([0-9.eE+-]+)"}]},
            "RoleArn": ROLE,
            "InputDataConfig": [
                {"ChannelName": ch, "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": uris[ch],
                    "S3DataDistributionType": "FullyReplicated"}}}
                for ch in ("train", "test")],
            "OutputDataConfig": {"S3OutputPath": uris["output"]},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                               "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        },
    }


def wait_status(describe, key: str, done: tuple[str, ...], timeout: float, every: float = 1.0):
    deadline = time.time() + timeout
    answer = describe()
    while answer[key] not in done:
        if time.time() > deadline:
            raise AssertionError(f"still {answer[key]} after {timeout}s: {answer}")
        time.sleep(every)
        answer = describe()
    return answer


def answers(url: str, body: bytes = b"{}", headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a raw POST to the server."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def training_request(name: str, uris: dict[str, str], epochs: int = 3, **hyperparameters):
    statics = {"epochs": json.dumps(epochs), "batch_size": json.dumps(64),
               "sagemaker_program": json.dumps("train.py"),
               "sagemaker_submit_directory": json.dumps(uris["code"]),
               "sagemaker_container_log_level": "20", "sagemaker_region": '"us-east-1"',
               "sagemaker_job_name": json.dumps(name),
               **{k: json.dumps(v) for k, v in hyperparameters.items()}}
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": PYTORCH_TRAINING, "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:accuracy", "Regex": "val_acc=([0-9.]+)"},
                                  {"Name": "never:printed", "Regex": "nope=([0-9.]+)"}],
            "EnableSageMakerMetricsTimeSeries": True},
        "RoleArn": ROLE,
        "InputDataConfig": [{"ChannelName": ch, "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": uris[ch],
            "S3DataDistributionType": "FullyReplicated"}}} for ch in ("train", "test")],
        "OutputDataConfig": {"S3OutputPath": uris["output"]},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                           "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "HyperParameters": statics,
        "DebugHookConfig": {"S3OutputPath": uris["output"], "CollectionConfigurations": []},
        "ProfilerConfig": {"S3OutputPath": uris["output"], "DisableProfiler": False},
        "Environment": {"CUSTOM_SETTING": "on"},
    }


EPOCH_LINE = re.compile(r"^epoch=(\d+) loss=([0-9.eE+-]+) val_acc=([0-9.]+)$", re.M)
# Dropout draws and BatchNorm statistics are per worker: off, the curves must match exactly.
EXACT = {"dropout": 0, "batch_norm": "false", "lr": 0.05, "optimizer": "adam",
         "conv_channels": 8, "dist_timeout": 20}


def epoch_curve(log: Path) -> list[tuple[int, float, float]]:
    """(epoch, loss, val_acc) of each epoch line the CNN trainer printed."""
    return [(int(e), float(loss), float(acc))
            for e, loss, acc in EPOCH_LINE.findall(log.read_text())]


def one_and_two_host_curves(sm, uris: dict, experiments: Path, names: tuple[str, str],
                            switch: str) -> dict[str, list]:
    """Trains the CNN as a 1-host and as a 2-host training job (`switch` on: the
    distribution) with the EXACT settings; returns each one's loss curve, by name."""
    curves = {}
    for name, hosts, extra in ((names[0], 1, {}), (names[1], 2, {switch: True})):
        request = training_request(name, uris, epochs=3, **EXACT, **extra)
        request["ResourceConfig"]["InstanceCount"] = hosts
        sm.create_training_job(**request)
        job = wait_status(lambda: sm.describe_training_job(TrainingJobName=name),
                          "TrainingJobStatus", ("Completed", "Failed", "Stopped"), timeout=300)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        assert job["ResourceConfig"]["InstanceCount"] == hosts
        folder = experiments / ".hpt-api" / "training-jobs" / name / "job"
        curves[name] = epoch_curve(folder / "algo-1.log")
    assert (folder / "algo-2.log").is_file()  # the second host ran, and logged
    return curves


def assert_same_curve(one: list, other: list) -> None:
    """Two loss curves of the CNN with the EXACT settings: the tolerance of
    tests/test_cnn_distributed.py."""
    assert len(one) == 3
    for (e1, l1, a1), (e2, l2, a2) in zip(one, other, strict=True):
        assert e1 == e2 and l1 == pytest.approx(l2, rel=1e-4)
        assert a1 == pytest.approx(a2, abs=0.003)
