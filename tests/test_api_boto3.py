"""`hpt api` driven by boto3 alone, as a SageMaker user's code drives AWS: real HTTP on
127.0.0.1, moto's S3 server, real trials of the CNN trainer, real serving processes."""

import json
import signal
import time

import numpy as np
import pytest

from api_helpers import (BUCKET, PYTORCH_INFERENCE, ROLE, ApiServer, boto_clients,
                         tuning_request, upload_inputs, wait_status)
from helpers import processes_in

pytestmark = pytest.mark.smoke


def test_boto3_tunes_deploys_and_invokes_through_hpt_api(moto_server, digits_channels,
                                                          tmp_path):
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    try:
        sm, runtime, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        # A channel with no data is refused at once, and leaves nothing behind.
        empty = tuning_request("empty", {**uris, "train": f"s3://{BUCKET}/nothing-here"})
        with pytest.raises(sm.exceptions.ClientError) as refused:
            sm.create_hyper_parameter_tuning_job(**empty)
        assert "no objects under s3://" in refused.value.response["Error"]["Message"]
        assert sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []

        name = "boto3-cnn"
        began = time.time()
        arn = sm.create_hyper_parameter_tuning_job(**tuning_request(name, uris))[
            "HyperParameterTuningJobArn"]
        assert arn == f"arn:aws:sagemaker:us-east-1:000000000000:hyper-parameter-tuning-job/{name}"

        described = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name), "HyperParameterTuningJobStatus",
            ("Completed", "Failed", "Stopped"), timeout=420)
        took = time.time() - began
        assert described["HyperParameterTuningJobStatus"] == "Completed", (
            described, server.output()[-3000:])
        assert described["TrainingJobStatusCounters"]["Completed"] == 6
        assert described["ObjectiveStatusCounters"]["Succeeded"] == 6
        assert described["TrainingJobDefinition"]["StaticHyperParameters"][
            "_tuning_objective_metric"] == '"validation:accuracy"'
        best = described["BestTrainingJob"]
        assert best["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == \
            "validation:accuracy"
        print(f"create -> Completed: {took:.1f}s for 6 training jobs")

        # Every summary, a page of 4 and the rest through NextToken; sorted by objective.
        first = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, MaxResults=4, SortBy="FinalObjectiveMetricValue",
            SortOrder="Descending")
        rest = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, MaxResults=4, SortBy="FinalObjectiveMetricValue",
            SortOrder="Descending", NextToken=first["NextToken"])
        summaries = first["TrainingJobSummaries"] + rest["TrainingJobSummaries"]
        assert "NextToken" not in rest and len(summaries) == 6
        values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
        assert values == sorted(values, reverse=True)
        assert summaries[0]["TrainingJobName"] == best["TrainingJobName"]
        assert all(s["TunedHyperParameters"]["optimizer"] in ('"adam"', '"sgd"')
                   for s in summaries)

        # The table hpt keeps is the same job: `hpt ls` / load_experiment see it.
        import hpt

        table = hpt.load_experiment(name, experiments)
        assert sorted(table["TrainingJobName"]) == sorted(s["TrainingJobName"] for s in summaries)

        # Its output, as CloudWatch Logs serves a training job's (what the SDK's logs=True reads).
        import boto3

        logs = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                             region_name="us-east-1").client("logs", endpoint_url=server.url)
        streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                            logStreamNamePrefix=best["TrainingJobName"])
        stream = streams["logStreams"][0]["logStreamName"]
        assert stream.startswith(f"{best['TrainingJobName']}/algo-1-")
        events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                     logStreamName=stream, startFromHead=True)
        assert sum("val_acc=" in e["message"] for e in events["events"]) == 3
        assert logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                   logStreamName=stream, startFromHead=True,
                                   nextToken=events["nextForwardToken"])["events"] == []

        job = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
        assert job["TrainingJobStatus"] == "Completed"
        assert job["HyperParameters"]["epochs"] == "3"
        _metrics_as_cloudwatch_serves_them(server.url, job, experiments / name)
        model_uri = job["ModelArtifacts"]["S3ModelArtifacts"]
        key = model_uri.split(f"s3://{BUCKET}/", 1)[1]
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0
        second = summaries[1]["TrainingJobName"]
        second_uri = sm.describe_training_job(TrainingJobName=second)["ModelArtifacts"][
            "S3ModelArtifacts"]

        # Two models, one endpoint config with both as weighted variants.
        for model, uri in (("best", model_uri), ("second", second_uri)):
            sm.create_model(ModelName=f"cnn-{model}", ExecutionRoleArn=ROLE, PrimaryContainer={
                "Image": PYTORCH_INFERENCE, "ModelDataUrl": uri,
                "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}})
        sm.create_endpoint_config(EndpointConfigName="cnn-config", ProductionVariants=[
            {"VariantName": "best", "ModelName": "cnn-best", "InitialInstanceCount": 1,
             "InstanceType": "ml.c5.large", "InitialVariantWeight": 1.0},
            {"VariantName": "second", "ModelName": "cnn-second", "InitialInstanceCount": 1,
             "InstanceType": "ml.c5.large", "InitialVariantWeight": 1.0}],
            ShadowProductionVariants=[
                {"VariantName": "shadow", "ModelName": "cnn-second", "InitialInstanceCount": 1,
                 "InstanceType": "ml.c5.large"}])
        sm.create_endpoint(EndpointName="cnn", EndpointConfigName="cnn-config")
        endpoint = wait_status(lambda: sm.describe_endpoint(EndpointName="cnn"),
                               "EndpointStatus", ("InService", "Failed"), timeout=180)
        assert endpoint["EndpointStatus"] == "InService", (endpoint, server.output()[-3000:])

        x = np.load(digits_channels / "test" / "data.npz")["x"][:8]
        y = np.load(digits_channels / "test" / "data.npz")["y"][:8]
        seen = set()
        for _ in range(20):
            answer = runtime.invoke_endpoint(EndpointName="cnn", ContentType="application/json",
                                             Body=json.dumps({"instances": x.tolist()}))
            seen.add(answer["InvokedProductionVariant"])
            predictions = json.loads(answer["Body"].read())["predictions"]
        assert seen == {"best", "second"}
        assert (np.array(predictions) == y).mean() >= 0.75
        targeted = runtime.invoke_endpoint(EndpointName="cnn", TargetVariant="second",
                                           ContentType="application/json",
                                           Body=json.dumps({"instances": x.tolist()}))
        assert targeted["InvokedProductionVariant"] == "second"

        sm.update_endpoint_weights_and_capacities(EndpointName="cnn", DesiredWeightsAndCapacities=[
            {"VariantName": "second", "DesiredWeight": 0.0}])
        after = {runtime.invoke_endpoint(EndpointName="cnn", ContentType="application/json",
                                         Body=json.dumps({"instances": x[:1].tolist()}))[
            "InvokedProductionVariant"] for _ in range(15)}
        assert after == {"best"}
        weights = {v["VariantName"]: v["CurrentWeight"] for v in
                   sm.describe_endpoint(EndpointName="cnn")["ProductionVariants"]}
        assert weights == {"best": 1.0, "second": 0.0}

        # A model error comes back as SageMaker's ModelError, with the model's own answer
        # (the trainer's handler refuses a type it does not read with 415).
        with pytest.raises(runtime.exceptions.ModelError) as error:
            runtime.invoke_endpoint(EndpointName="cnn", ContentType="text/plain", Body=b"hi")
        assert error.value.response["OriginalStatusCode"] == 415

        serving = experiments / ".hpt-api" / "serving" / "cnn"
        # The shadow got a copy of every request; its answers were logged, never returned.
        mirrored = [json.loads(line) for path in serving.glob("*/shadow.jsonl")
                    for line in path.read_text().splitlines()]
        assert len(mirrored) >= 30 and {m["shadow"] for m in mirrored} == {"shadow"}
        assert "shadow" not in seen | after

        # UpdateEndpoint to a config of one variant: the new one serves, the old processes end.
        sm.create_endpoint_config(EndpointConfigName="cnn-config-2", ProductionVariants=[
            {"VariantName": "only", "ModelName": "cnn-best", "InitialInstanceCount": 1,
             "InstanceType": "ml.c5.large"}])
        def models():  # the serving programs (the server itself holds the access logs open)
            return set(processes_in(serving)) - {server.process.pid}

        old_processes = models()
        sm.update_endpoint(EndpointName="cnn", EndpointConfigName="cnn-config-2")
        updated = wait_status(lambda: sm.describe_endpoint(EndpointName="cnn"),
                              "EndpointStatus", ("InService", "Failed"), timeout=120, every=0.5)
        assert updated["EndpointConfigName"] == "cnn-config-2", updated
        assert [v["VariantName"] for v in updated["ProductionVariants"]] == ["only"]
        assert runtime.invoke_endpoint(EndpointName="cnn", ContentType="application/json",
                                       Body=json.dumps({"instances": x[:1].tolist()}))[
            "InvokedProductionVariant"] == "only"
        assert old_processes and models() and not old_processes & models()
        sm.delete_endpoint(EndpointName="cnn")
        assert processes_in(serving) == []
        with pytest.raises(sm.exceptions.ClientError) as gone:
            sm.describe_endpoint(EndpointName="cnn")
        assert gone.value.response["Error"]["Code"] == "ValidationException"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()[-3000:]
    assert processes_in(experiments) == []


def test_a_request_hpt_export_sagemaker_wrote_runs_unchanged(moto_server, tmp_path):
    """`hpt export-sagemaker space.yaml` straight into CreateHyperParameterTuningJob: its
    placeholders (image, code, channels) stand for the space's own local trainer and data,
    which its hpt: tags name. It was refused (`prepare: the script ../scripts/prepare_data.py
    is not there`: the tags' paths were relative to the space's folder)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from helpers import wait_for

    repo = Path(__file__).resolve().parent.parent
    clone = tmp_path / "clone"  # a fresh clone: no data yet (the space's prepare makes it)
    shutil.copytree(repo / "trainers" / "cnn", clone / "trainers" / "cnn")
    (clone / "scripts").mkdir()
    shutil.copy(repo / "scripts" / "prepare_data.py", clone / "scripts")
    (clone / "search_spaces").mkdir()
    shutil.copy(repo / "search_spaces" / "digits-cnn.yaml", clone / "search_spaces")
    exported = subprocess.run([sys.executable, "-m", "hpt.cli.main", "export-sagemaker",
                               str(clone / "search_spaces" / "digits-cnn.yaml")],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    request = json.loads(exported.stdout)

    server = ApiServer(tmp_path / "experiments", moto_server).start()
    try:
        sm, _, _ = boto_clients(server.url, moto_server)
        sm.create_hyper_parameter_tuning_job(**request)
        name = request["HyperParameterTuningJobName"]

        def completed():
            return sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
                "TrainingJobStatusCounters"]["Completed"]
        wait_for(lambda: completed() >= 1, timeout=240, what="a completed training job")
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        wait_status(lambda: sm.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name), "HyperParameterTuningJobStatus", ("Stopped",),
            timeout=120)
        assert (clone / "data" / "digits" / "train" / "data.npz").is_file()  # prepare ran
    finally:
        server.stop(signal.SIGTERM)
    assert processes_in(tmp_path / "experiments") == []


def test_stop_training_job_stops_one_training_job_and_its_tuning_job_goes_on(
        moto_server, digits_channels, tmp_path):
    """StopTrainingJob of one training job of a running tuning job, as SageMaker allows:
    Stopping, then Stopped with the reason; the tuning job goes on to its next training job.
    A job that ended is not stopped again."""
    from helpers import wait_for

    server = ApiServer(tmp_path / "experiments", moto_server).start()
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        # 1 ml.m5.large at a time on 2 cores; 80 epochs: long enough to be caught running
        sm.create_hyper_parameter_tuning_job(**tuning_request("one-stop", uris, max_jobs=2,
                                                              parallel=1, epochs=80))

        def jobs(status=None):
            listed = sm.list_training_jobs_for_hyper_parameter_tuning_job(
                HyperParameterTuningJobName="one-stop",
                **({"StatusEquals": status} if status else {}))
            return [j["TrainingJobName"] for j in listed["TrainingJobSummaries"]]

        wait_for(lambda: jobs("InProgress"), timeout=120, what="a running training job")
        victim = jobs("InProgress")[0]
        _a_running_jobs_log_reads_as_the_sdk_tails_it(
            server.url, victim, tmp_path / "experiments" / "one-stop" / victim / "algo-1.log")
        sm.stop_training_job(TrainingJobName=victim)
        assert sm.describe_training_job(TrainingJobName=victim)["TrainingJobStatus"] in (
            "Stopping", "Stopped")
        ended = wait_status(lambda: sm.describe_training_job(TrainingJobName=victim),
                            "TrainingJobStatus", ("Stopped", "Completed", "Failed"), timeout=60)
        assert ended["TrainingJobStatus"] == "Stopped", ended
        assert "StopTrainingJob through hpt api" in ended["FailureReason"]
        wait_for(lambda: len(jobs()) == 2, timeout=120, what="the tuning job going on")
        described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="one-stop")
        assert described["HyperParameterTuningJobStatus"] == "InProgress"
        assert described["TrainingJobStatusCounters"]["Stopped"] == 1
        with pytest.raises(sm.exceptions.ClientError) as refused:
            sm.stop_training_job(TrainingJobName=victim)
        assert "is in status Stopped" in refused.value.response["Error"]["Message"]
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="one-stop")
        wait_status(lambda: sm.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="one-stop"), "HyperParameterTuningJobStatus",
            ("Stopped",), timeout=120)
    finally:
        server.stop(signal.SIGTERM)
    assert processes_in(tmp_path / "experiments") == []


def _a_running_jobs_log_reads_as_the_sdk_tails_it(url: str, job: str, log) -> None:
    """The SDK's own tail of a job's CloudWatch Logs (`_flush_log_streams`, what `fit()` and
    `logs_for_job(wait=True)` run every few seconds) over the wire while the job writes:
    every line once, in order, under a stream name that stays."""
    import boto3
    from sagemaker.session import _flush_log_streams

    logs = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name="us-east-1").client("logs", endpoint_url=url)
    printed, positions, streams = [], {}, []
    for _ in range(3):
        _flush_log_streams(streams, 1, logs, "/aws/sagemaker/TrainingJobs", job, positions,
                           False, lambda idx, text: printed.append(text))
        time.sleep(1.5)
    # (the SDK finds the streams anew each time; the positions it keeps are per stream name)
    assert len(positions) == 1 and next(iter(positions)).startswith(f"{job}/algo-1-")
    written = log.read_text().splitlines()
    assert printed and printed == written[:len(printed)]


def _metrics_as_cloudwatch_serves_them(url: str, job: dict, experiment) -> None:
    """A training job's metrics through boto3's CloudWatch client: the namespace SageMaker
    publishes them in, the dimensions, and statistics that agree with the job's own data
    points."""
    import datetime as dt

    import boto3

    import hpt

    cloudwatch = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                               region_name="us-east-1").client("cloudwatch", endpoint_url=url)
    name = job["TrainingJobName"]
    host = [{"Name": "Host", "Value": f"{name}/algo-1"}]
    listed = cloudwatch.list_metrics(Namespace="/aws/sagemaker/TrainingJobs", Dimensions=host)
    assert sorted(m["MetricName"] for m in listed["Metrics"]) == ["train:loss",
                                                                  "validation:accuracy"]
    points = hpt.load_metrics(experiment)
    accuracy = points[(points["TrainingJobName"] == name)
                      & (points["metric"] == "validation:accuracy")]["value"].tolist()
    assert len(accuracy) == 3
    window = dict(StartTime=job["TrainingStartTime"] - dt.timedelta(minutes=5),
                  EndTime=job["TrainingEndTime"] + dt.timedelta(minutes=5))
    stats = cloudwatch.get_metric_statistics(
        Namespace="/aws/sagemaker/TrainingJobs", MetricName="validation:accuracy",
        Dimensions=host, Period=3600, Statistics=["SampleCount", "Maximum", "Average"],
        ExtendedStatistics=["p50"], **window)["Datapoints"]
    assert sum(p["SampleCount"] for p in stats) == 3
    assert max(p["Maximum"] for p in stats) == max(accuracy)
    assert all(isinstance(p["Timestamp"], dt.datetime) for p in stats)
    data = cloudwatch.get_metric_data(MetricDataQueries=[{
        "Id": "acc", "MetricStat": {"Metric": {
            "Namespace": "/aws/sagemaker/TrainingJobs", "MetricName": "validation:accuracy",
            "Dimensions": [{"Name": "TrainingJobName", "Value": name}]},
            "Period": 1, "Stat": "Maximum"}}], ScanBy="TimestampAscending", **window)
    result = data["MetricDataResults"][0]
    assert result["StatusCode"] == "Complete" and max(result["Values"]) == max(accuracy)
    with pytest.raises(cloudwatch.exceptions.InvalidParameterValueException):
        cloudwatch.get_metric_statistics(
            Namespace="/aws/sagemaker/TrainingJobs", MetricName="validation:accuracy",
            Dimensions=host, Period=7, Statistics=["Average"], **window)
