"""One protocol, every runtime: the same tests for a training job built by each registered
runtime (hpt/runtime/runtimes): local for real, docker with the stand-in engine
(tests/conftest.py), sagemaker against moto's SageMaker and CloudWatch Logs on 127.0.0.1 (and
botocore's Stubber where moto cannot: a job that fails, a stop), and the toy runtime of
tests/toy_runtime.py, registered here by one line, as a new runtime would be.

What every runtime must do: a job that completes streams its objective values and ends with
a Completed record whose objective is the last value, leaving the same files (algo-1.log,
metrics.jsonl with every data point) and the same record as any other runtime for the same
script; a job that fails ends Failed with a typed reason, never retried as a lost host; a
job that never prints its objective fails saying so; `stop()` ends a running job Stopped
(early stopping's reason), and asking again gives the same record."""

import dataclasses
import datetime as dt
import time

import boto3
import pytest
from botocore.stub import Stubber

from hpt.core.metric_parser import MetricParser
from hpt.core.trial import EARLY_STOPPED, FailureCategory, TrainingJobRecord, TrialStatus
from hpt.experiment.data_points import read_points
from hpt.runtime.job_protocol import JobContext, Slot, TrialAssignment
from hpt.runtime.runtimes import RUNTIMES
from hpt.runtime.sagemaker_job import LOG_GROUP
from hpt.spacefile import load_spec
from helpers import faulty_space
from toy_runtime import TOY

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
# What the script prints in mode ok (tests/trainers/faulty/train.py, epochs 3, x 0.9); the
# stand-in docker engine plays a container of its own (two epochs).
SCRIPT = [f"epoch={e} loss={1.0 / e:.4f} val_acc={0.9 * e / 3:.4f}" for e in (1, 2, 3)]
OUTPUT = {"local": SCRIPT, "sagemaker": SCRIPT, "toy": SCRIPT,
          "docker": [f"epoch={e} loss=0.5 val_acc={0.4 * e}" for e in (1, 2)]}
SILENT = ["training without ever printing the objective"]


def test_every_registered_runtime_is_covered_here():
    assert set(RUNTIMES) | {TOY.name} == set(OUTPUT)


@pytest.fixture(params=sorted(OUTPUT))
def runtime(request, write_space, tmp_path, monkeypatch):
    """(runtime name, make(mode) -> a job of that runtime, not started). For sagemaker,
    moto's server runs first (the job's clients are built against it)."""
    name = request.param
    if name == TOY.name:
        monkeypatch.setitem(RUNTIMES, TOY.name, TOY)  # the toy's one registration
    space = faulty_space(name="proto", runtime=name)
    if name == "docker":
        space["trainer"]["image"] = "hpt-test:latest"
        request.getfixturevalue("fake_docker")
    if name == "sagemaker":
        space["trainer"].update(image="123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1",
                                instance_type="ml.m5.xlarge")
        space.update(output="s3://out/tuning")
        monkeypatch.setenv("HPT_SAGEMAKER_POLL_SECONDS", "0.05")
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        request.getfixturevalue("moto_logs")
    spec = load_spec(write_space(space))
    settings = {"role_arn": ROLE, "code_uri": "s3://out/tuning/proto/source/sourcedir.tar.gz"} \
        if name == "sagemaker" else {"container_engine": "docker"}

    def make(mode: str):
        job_name = f"proto-001-{mode}0000"
        context = JobContext(spec, TrialAssignment(1, job_name, {"mode": mode}),
                             tmp_path / job_name, settings, Slot(num_cpus=1))
        return RUNTIMES[name].job(context)

    return name, make


def run_to_end(job):
    points, record = [], None
    while record is None:
        progress = job.advance()
        if progress.point is not None:
            points.append(progress.point.value)
        record = progress.record
    return points, record


@pytest.fixture
def moto_logs(moto_server, monkeypatch):
    """moto's server on 127.0.0.1 and a function writing a job's CloudWatch log lines."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    logs = boto3.session.Session(region_name="us-east-1", aws_access_key_id="testing",
                                 aws_secret_access_key="testing").client("logs")
    logs.create_log_group(logGroupName=LOG_GROUP)

    def write(job_name: str, lines: list[str]) -> None:
        stream = f"{job_name}/algo-1-1764489600"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=[
            {"timestamp": now + i, "message": line} for i, line in enumerate(lines)])

    return write


def stubbed(job, answers: list[tuple[str, dict]]) -> Stubber:
    """The job's SageMaker client (moto has no failing job and no StopTrainingJob) replaced
    by a botocore Stubber giving `answers` (operation, response) in order; each request is
    still checked against botocore's model. Its logs stay moto's."""
    job.sagemaker = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x",
                                          aws_secret_access_key="x").client("sagemaker")
    stub = Stubber(job.sagemaker)
    stub.add_response("create_training_job", {"TrainingJobArn": "arn:x"})
    for operation, response in answers:
        stub.add_response(operation, response)
    return stub.activate() or stub


def describe(job, status: str, **extra) -> dict:
    return {"TrainingJobName": job.name, "TrainingJobArn": "arn:x", "TrainingJobStatus": status,
            "SecondaryStatus": "Training", "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "CreationTime": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://out/{job.name}/model.tar.gz"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                               "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60}, **extra}


def expected_points(spec, lines: list[str]) -> list[tuple[str, int, float]]:
    """The data points the space's metric definitions find in `lines`."""
    parser = MetricParser([(m.name, m.regex) for m in spec.metric_definitions])
    return [(p.name, p.step, p.value) for line in lines for p in parser.feed(line, 0.0)]


def test_a_job_that_completes_streams_its_objective_and_ends_completed(runtime, request):
    name, make = runtime
    job = make("ok")
    if name == "sagemaker":  # moto completes a job at once; the container's lines are these
        request.getfixturevalue("moto_logs")(job.name, OUTPUT[name])
    job.start()
    points, record = run_to_end(job)
    found = expected_points(job.spec, OUTPUT[name])
    assert points == pytest.approx([v for metric, _, v in found if metric == job.objective_name])
    assert record.status is TrialStatus.COMPLETED and record.failure is None
    assert record.objective_value == pytest.approx(points[-1])
    assert record.objective_steps == len(points) and record.model_artifact
    assert record.to_json()["status"] == "Completed"


def test_every_runtime_leaves_the_same_files_and_record_for_the_same_script(runtime, request):
    """metrics.jsonl (hpt.load_metrics, the plots, TensorBoard, MLflow read it) holds every
    data point of every metric, and the record is filled alike, whatever ran the job."""
    name, make = runtime
    job = make("ok")
    if name == "sagemaker":
        request.getfixturevalue("moto_logs")(job.name, OUTPUT[name])
    job.start()
    _, record = run_to_end(job)
    folder = job.trial_dir
    assert {"algo-1.log", "metrics.jsonl"} <= {p.name for p in folder.iterdir()}
    assert [line for line in (folder / "algo-1.log").read_text().splitlines()
            if "val_acc=" in line] == OUTPUT[name]
    found = expected_points(job.spec, OUTPUT[name])
    written = read_points(folder / "metrics.jsonl")
    assert [(p["metric"], p["step"]) for p in written] == [(m, s) for m, s, _ in found]
    assert [p["value"] for p in written] == pytest.approx([v for _, _, v in found])
    assert all(p["timestamp"] > 0 for p in written)
    assert set(record.to_json()) == {f.name for f in dataclasses.fields(TrainingJobRecord)
                                     if f.name != "failure"} | {"failure_reason",
                                                                "infrastructure_failure"}
    finals = {m: v for m, _, v in found}  # (SageMaker adds final metrics of its own)
    assert {m: record.final_metrics[m] for m in finals} == pytest.approx(finals)
    assert record.objective_steps == sum(m == job.objective_name for m, _, _ in found)
    assert record.log_path == str(folder / "algo-1.log") and record.hosts == ["algo-1"]
    assert record.start_time <= record.end_time and record.resumed_from_step is None
    assert record.launch_seconds is not None and record.teardown_seconds is not None


def test_a_job_that_never_prints_its_objective_fails_saying_where_it_looked(runtime, request):
    name, make = runtime
    if name == "docker":
        pytest.skip("the stand-in engine's container always prints its epochs")
    job = make("silent")
    if name == "sagemaker":
        request.getfixturevalue("moto_logs")(job.name, SILENT)
    job.start()
    points, record = run_to_end(job)
    assert points == [] and record.status is TrialStatus.FAILED
    assert record.failure.category is FailureCategory.OBJECTIVE_METRIC_NEVER_MATCHED
    assert "'validation:accuracy' never matched its regex" in record.failure_reason
    assert job.output_name in record.failure_reason and SILENT[0] in record.failure_reason
    assert record.objective_value is None and record.model_artifact is None


def test_a_job_that_fails_ends_failed_with_a_typed_reason_never_retried(runtime):
    name, make = runtime
    job = make("fail")
    if name == "sagemaker":
        stubbed(job, [("describe_training_job", describe(
            job, "Failed", FailureReason="AlgorithmError: ExecuteUserScriptError: exit code 1"))])
    job.start()
    points, record = run_to_end(job)
    assert record.status is TrialStatus.FAILED and record.objective_value is None
    assert record.failure.category is FailureCategory.ALGORITHM_ERROR
    assert record.failure_reason and not record.infrastructure_failure


def test_stop_ends_a_running_job_stopped_and_asking_again_gives_the_same_record(runtime):
    name, make = runtime
    job = make("hang")
    if name == "sagemaker":
        stubbed(job, [("describe_training_job", describe(job, "InProgress")),
                      ("stop_training_job", {}),
                      ("describe_training_job", describe(job, "Stopped"))])
    job.start()
    if name != "sagemaker":
        time.sleep(1.0)  # it runs (hanging)
    record = job.stop(EARLY_STOPPED)
    assert record.status is TrialStatus.STOPPED
    assert record.failure_reason == "Stopped by early stopping"
    assert job.stop() is record
    assert job.advance().record is record


def test_a_runtime_is_one_file_plus_one_registration(write_space, tmp_path, monkeypatch):
    """The toy (tests/toy_runtime.py), registered by one line, is a choice of space.yaml and
    of `hpt launch --runtime`, and runs a tuning job whose curves hpt.load_metrics reads."""
    import hpt
    from hpt.cli.parser import build_parser
    from hpt.launcher.launch import launch

    monkeypatch.setitem(RUNTIMES, TOY.name, TOY)
    monkeypatch.setenv("HPT_CONTROLLER", "local")
    args = build_parser().parse_args(["launch", "space.yaml", "--runtime", "toy"])
    assert args.runtime == "toy"
    space = faulty_space(name="toyjob", runtime="toy", hyperparameters={
        "mode": {"type": "categorical", "values": ["ok", "silent"]}})
    launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    table = hpt.load_experiment("toyjob", tmp_path / "exp")
    assert sorted(table["TrainingJobStatus"]) == ["Completed", "Failed"]
    curves = hpt.load_metrics("toyjob", tmp_path / "exp")
    accuracy = curves[curves["metric"] == "validation:accuracy"]
    assert list(accuracy["step"]) == [1, 2, 3]
    assert list(accuracy["value"]) == pytest.approx([0.3, 0.6, 0.9])
