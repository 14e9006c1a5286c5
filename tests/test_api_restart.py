"""kill -9 of `hpt api` mid-job loses nothing: nothing of it keeps running, and the next
server resumes the tuning job (every finished training job kept, exactly once) and brings
its endpoints back."""

import json
import signal
import time

import pytest

from api_helpers import (PYTORCH_INFERENCE, ROLE, ApiServer, boto_clients, tuning_request,
                         upload_inputs, wait_status)
from helpers import processes_in, wait_for

# In the slow set (pytest --slow), for CI's 25 minutes: a launcher's own kill -9 and resume
# run in CI (test_resume), and the server's journal-driven watcher in test_api_boto3.
pytestmark = [pytest.mark.smoke, pytest.mark.slow]


def test_kill_9_of_the_server_mid_job_loses_nothing(moto_server, digits_channels,
                                                     tmp_path):
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    sm, runtime, s3 = boto_clients(server.url, moto_server)
    uris = upload_inputs(s3, digits_channels)
    name = "restarted"
    sm.create_hyper_parameter_tuning_job(**tuning_request(name, uris, max_jobs=4, epochs=4))

    # A second job, stopped at once: Stopping, then Stopped, and never resumed.
    sm.create_hyper_parameter_tuning_job(**tuning_request("stopped", uris, max_jobs=20,
                                                          parallel=1))
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")
    assert sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")[
        "HyperParameterTuningJobStatus"] in ("Stopping", "Stopped")
    wait_status(lambda: sm.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="stopped"), "HyperParameterTuningJobStatus", ("Stopped",),
        timeout=120)
    listed = sm.list_hyper_parameter_tuning_jobs(SortBy="Name")[
        "HyperParameterTuningJobSummaries"]
    assert [j["HyperParameterTuningJobName"] for j in listed] == ["restarted", "stopped"]

    def completed():
        return [s for s in sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, StatusEquals="Completed")["TrainingJobSummaries"]]

    wait_for(lambda: len(completed()) >= 2, timeout=180, what="two completed training jobs")
    first = completed()[0]["TrainingJobName"]
    artifact = sm.describe_training_job(TrainingJobName=first)["ModelArtifacts"][
        "S3ModelArtifacts"]
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": PYTORCH_INFERENCE, "ModelDataUrl": artifact,
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}})
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "only", "ModelName": "m", "InitialInstanceCount": 1,
         "InstanceType": "ml.c5.large"}])
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c")
    wait_status(lambda: sm.describe_endpoint(EndpointName="e"), "EndpointStatus",
                ("InService", "Failed"), timeout=120)
    before = {s["TrainingJobName"] for s in completed()}
    assert sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
        "HyperParameterTuningJobStatus"] == "InProgress"

    ray_folder = server.ray_folder
    assert processes_in(ray_folder)
    server.stop(signal.SIGKILL)
    # Its launcher, the trials, the serving program and its Ray: all gone with it.
    wait_for(lambda: processes_in(experiments) == [] and processes_in(ray_folder) == [],
             timeout=30, what="every process of the killed server to end")

    again = ApiServer(experiments, moto_server).start()
    try:
        sm, runtime, _ = boto_clients(again.url, moto_server)
        described = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name), "HyperParameterTuningJobStatus",
            ("Completed", "Failed", "Stopped"), timeout=300)
        assert described["HyperParameterTuningJobStatus"] == "Completed", again.output()[-3000:]
        summaries = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, MaxResults=100)["TrainingJobSummaries"]
        names = [s["TrainingJobName"] for s in summaries]
        assert len(names) == len(set(names)) == 4
        assert before <= set(names)
        assert {s["TrainingJobStatus"] for s in summaries} == {"Completed"}
        # The jobs that had finished were kept, not run again.
        journal = [json.loads(line) for line in
                   (experiments / name / "journal.jsonl").read_text().splitlines() if line]
        for job in before:
            assert sum(1 for e in journal if e["event"] == "trial_ended"
                       and e["training_job_name"] == job) == 1

        stopped = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")
        assert stopped["HyperParameterTuningJobStatus"] == "Stopped"
        assert "resumed tuning job stopped" not in again.output()
        endpoint = wait_status(lambda: sm.describe_endpoint(EndpointName="e"), "EndpointStatus",
                               ("InService", "Failed"), timeout=120)
        assert endpoint["EndpointStatus"] == "InService", again.output()[-3000:]
        answer = runtime.invoke_endpoint(EndpointName="e", ContentType="application/json",
                                         Body=json.dumps({"instances": [[[[0.0] * 8] * 8]]}))
        assert "predictions" in json.loads(answer["Body"].read())
        sm.delete_endpoint(EndpointName="e")
    finally:
        ray_folder = again.ray_folder
        code = again.stop(signal.SIGTERM)
    assert code == 0
    time.sleep(0.5)
    assert processes_in(experiments) == [] and processes_in(ray_folder) == []
