"""CreateTrainingJob through hpt api: the SDK's `fit()` without a tuner, as boto3 sends it
(api_helpers.training_request is what the SageMaker SDK 2.x PyTorch estimator writes, its
defaults included). Real HTTP on 127.0.0.1, moto's S3 server, the reference CNN as local processes."""

import re
import signal

import pytest

from api_helpers import (BUCKET, ApiServer, assert_same_curve, boto_clients,
                         one_and_two_host_curves, training_request, upload_inputs, wait_status)
from helpers import processes_in


@pytest.mark.smoke  # two CNN training jobs and a stopped one: ~40 s
def test_create_training_job_trains_uploads_and_is_described_as_sagemaker_does(
        moto_server, digits_channels, tmp_path):
    server = ApiServer(tmp_path / "experiments", moto_server).start()
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        name = "pytorch-training-2026-12-05-15-10-00-123"  # longer than a tuning job's 32
        arn = sm.create_training_job(**training_request(name, uris))["TrainingJobArn"]
        assert arn.endswith(f":training-job/{name}")
        with pytest.raises(sm.exceptions.ResourceInUse):
            sm.create_training_job(**training_request(name, uris))
        job = wait_status(lambda: sm.describe_training_job(TrainingJobName=name),
                          "TrainingJobStatus", ("Completed", "Failed", "Stopped"), timeout=240)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        assert "TuningJobArn" not in job
        assert "_tuning_objective_metric" not in job["HyperParameters"]
        assert job["HyperParameters"]["epochs"] == "3"
        assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
            "Starting", "Downloading", "Training", "Uploading", "Completed"]
        assert job["TrainingTimeInSeconds"] >= 1 and job["Environment"] == {
            "CUSTOM_SETTING": "on"}
        finals = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
        assert set(finals) == {"validation:accuracy"} and finals["validation:accuracy"] > 0.5
        model = job["ModelArtifacts"]["S3ModelArtifacts"]
        assert model == f"{uris['output']}/{name}/output/model.tar.gz"
        s3.head_object(Bucket=BUCKET, Key=model.split(f"s3://{BUCKET}/", 1)[1])
        listed = sm.list_training_jobs(NameContains="pytorch-training")["TrainingJobSummaries"]
        assert [(j["TrainingJobName"], j["TrainingJobStatus"]) for j in listed] == [
            (name, "Completed")]
        assert "DebugHookConfig: accepted" in server.output()
        _its_log_and_metrics_are_served(server.url, name)

        failing = "bad-epochs"  # the script refuses epochs "x": Failed, with its words
        sm.create_training_job(**training_request(failing, uris, epochs="x"))
        failed = wait_status(lambda: sm.describe_training_job(TrainingJobName=failing),
                             "TrainingJobStatus", ("Completed", "Failed", "Stopped"),
                             timeout=120)
        assert failed["TrainingJobStatus"] == "Failed"
        assert "--epochs: invalid int value: 'x'" in failed["FailureReason"]  # its failure file

        long = "long-one"
        sm.create_training_job(**training_request(long, uris, epochs=400))
        wait_status(lambda: sm.describe_training_job(TrainingJobName=long), "SecondaryStatus",
                    ("Training",), timeout=120, every=0.5)
        sm.stop_training_job(TrainingJobName=long)
        stopped = wait_status(lambda: sm.describe_training_job(TrainingJobName=long),
                              "TrainingJobStatus", ("Completed", "Failed", "Stopped"),
                              timeout=60)
        assert stopped["TrainingJobStatus"] == "Stopped"
        assert "StopTrainingJob through hpt api" in stopped["FailureReason"]
    finally:
        server.stop(signal.SIGTERM)
    assert processes_in(tmp_path / "experiments") == []


def _its_log_and_metrics_are_served(url: str, name: str) -> None:
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name="us-east-1")
    logs = session.client("logs", endpoint_url=url)
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith(f"{name}/algo-1-")
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                 logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    assert sum("val_acc=" in e["message"] for e in events) == 3
    cloudwatch = session.client("cloudwatch", endpoint_url=url)
    metrics = cloudwatch.list_metrics(
        Namespace="/aws/sagemaker/TrainingJobs",
        Dimensions=[{"Name": "TrainingJobName", "Value": name}])["Metrics"]
    assert [m["MetricName"] for m in metrics] == ["validation:accuracy"]  # what it printed


@pytest.mark.smoke  # a training job killed with its server, then a second server: ~25 s
def test_kill_9_of_the_server_mid_training_job_leaves_no_process_and_a_failed_job(
        moto_server, digits_channels, tmp_path):
    """The job dies with the server (nothing keeps running, nothing is uploaded twice); the
    next server says it Failed and why, and its log and metrics so far stay readable."""
    from helpers import wait_for

    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    sm, _, s3 = boto_clients(server.url, moto_server)
    uris = upload_inputs(s3, digits_channels)
    sm.create_training_job(**training_request("cut-short", uris, epochs=400))
    wait_status(lambda: sm.describe_training_job(TrainingJobName="cut-short"),
                "SecondaryStatus", ("Training",), timeout=120, every=0.5)
    folder = experiments / ".hpt-api" / "training-jobs" / "cut-short"
    log = folder / "job" / "algo-1.log"
    wait_for(lambda: log.is_file() and "val_acc=" in log.read_text(), timeout=60,
             what="a first epoch")
    ray_folder = server.ray_folder
    server.stop(signal.SIGKILL)
    wait_for(lambda: processes_in(experiments) == [] and processes_in(ray_folder) == [],
             timeout=30, what="every process of the killed server to end")
    again = ApiServer(experiments, moto_server).start()
    try:
        sm, _, _ = boto_clients(again.url, moto_server)
        job = sm.describe_training_job(TrainingJobName="cut-short")
        assert job["TrainingJobStatus"] == "Failed"
        assert "the hpt api server stopped while the training job ran" in job["FailureReason"]
        assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="output/cut-short/").get(
            "Contents")
        assert (folder / "job" / "metrics.jsonl").read_text().count("validation:accuracy")
    finally:
        again.stop(signal.SIGTERM)
    assert processes_in(experiments) == []


@pytest.mark.smoke  # a 1-host and a 2-host training job of the CNN: ~40 s
@pytest.mark.parametrize("mode, switch", [
    ("data_parallel", "sagemaker_mpi_enabled"),
    # The slow set: the tuning jobs' parameter-server runs and test_cnn_distributed cover it.
    pytest.param("parameter_server", "sagemaker_parameter_server_enabled",
                 marks=pytest.mark.slow)])
def test_a_two_host_training_job_follows_the_one_host_curve(moto_server, digits_channels,
                                                            tmp_path, mode, switch):
    """`fit()` with `instance_count=2` and a distribution: two hosts, each holding its own
    bundle on the server's Ray (algo-2 in a host actor), training as one job; its loss
    curve is the one-host job's (the tolerance of tests/test_cnn_distributed.py)."""
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        curves = one_and_two_host_curves(sm, uris, experiments, ("one-host", "two-hosts"),
                                         switch)
        assert_same_curve(curves["one-host"], curves["two-hosts"])
    finally:
        server.stop(signal.SIGTERM)
    assert processes_in(experiments) == []


@pytest.mark.smoke  # a training job killed with its server, restarted by the next: ~40 s
def test_a_checkpointed_job_cut_short_by_the_servers_death_restarts_from_its_s3_checkpoints(
        moto_server, digits_channels, tmp_path):
    """CheckpointConfig + EnableManagedSpotTraining, as a spot job sends them: its
    checkpoints are synced to CheckpointConfig.S3Uri while it runs; kill -9 of the server
    kills it, and the next server starts it again (as spot training restarts an interrupted
    job) from the checkpoints in S3 (those in its folder are removed first, to be sure they
    come from there): it resumes past its first epochs and completes."""
    import shutil

    from helpers import wait_for

    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    sm, _, s3 = boto_clients(server.url, moto_server)
    uris = upload_inputs(s3, digits_channels)
    request = training_request("spot", uris, epochs=60, batch_size=16)
    request.update(EnableManagedSpotTraining=True, StoppingCondition={
        "MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200},
        CheckpointConfig={"S3Uri": f"s3://{BUCKET}/checkpoints/spot"})
    sm.create_training_job(**request)

    def synced() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(
            Bucket=BUCKET, Prefix="checkpoints/spot/").get("Contents", [])]

    wait_for(lambda: len(synced()) >= 2, timeout=180, what="two checkpoints in S3")
    assert sm.describe_training_job(TrainingJobName="spot")["TrainingJobStatus"] == "InProgress"
    server.stop(signal.SIGKILL)
    wait_for(lambda: processes_in(experiments) == [], timeout=30,
             what="every process of the killed server to end")
    folder = experiments / ".hpt-api" / "training-jobs" / "spot"
    shutil.rmtree(folder / "job" / "algo-1" / "checkpoints")
    again = ApiServer(experiments, moto_server).start()
    try:
        sm, _, _ = boto_clients(again.url, moto_server)
        job = wait_status(lambda: sm.describe_training_job(TrainingJobName="spot"),
                          "TrainingJobStatus", ("Completed", "Failed", "Stopped"), timeout=300)
        assert job["TrainingJobStatus"] == "Completed", (job.get("FailureReason"),
                                                         again.output()[-3000:])
        assert job["EnableManagedSpotTraining"] is True
        assert job["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/checkpoints/spot"
        assert "starts again from its checkpoints" in again.output()
        log = (folder / "job" / "algo-1.log").read_text()
        resumed = re.search(r"resumed from checkpoint-(\d+)\.pt", log)
        assert resumed and int(resumed.group(1)) >= 1, log[-2000:]
        epochs = [int(e) for e in re.findall(r"^epoch=(\d+) ", log, re.M)]
        assert epochs[0] == int(resumed.group(1)) + 1 and epochs[-1] == 60
        assert list((folder / "job").glob("attempt-1/algo-1.log"))  # the first run, kept
    finally:
        again.stop(signal.SIGTERM)
    assert processes_in(experiments) == []
