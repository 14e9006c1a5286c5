"""Warm pools of the training jobs hpt api runs on their own (ResourceConfig.
KeepAlivePeriodInSeconds): the pool's rules (pure) and files, then the SDK's path through a
real server: a job keeps its hosts, a matching job runs on them, statuses as SageMaker says
them, UpdateTrainingJob ends one, a server killed with a pool leaves nothing behind."""

import re
import signal
import threading
import time

import pytest

from api_helpers import ApiServer, boto_clients, training_request, upload_inputs, wait_status
from helpers import processes_in, wait_for
from hpt.api.warm_pools import (AVAILABLE, REUSED, TERMINATED, WarmPool, keep_alive_refusal,
                                pool_key, warm_pool_status)

PLACEMENT = {"runtime": "local", "bundles": [{"CPU": 1.0}], "processes_on_host": 1}
RESOURCES = {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}


def definition(**resources):
    return {"RoleArn": "arn:aws:iam::000000000000:role/R",
            "ResourceConfig": {**RESOURCES, **resources}}


def test_a_pool_matches_the_same_role_resources_and_hosts_whatever_its_period():
    key = pool_key(definition(KeepAlivePeriodInSeconds=60), PLACEMENT)
    assert pool_key(definition(KeepAlivePeriodInSeconds=900), PLACEMENT) == key
    assert pool_key(definition(InstanceType="ml.c5.xlarge"), PLACEMENT) != key
    assert pool_key(definition(InstanceCount=2), PLACEMENT) != key
    assert pool_key({**definition(), "RoleArn": "arn:aws:iam::000000000000:role/Other"},
                    PLACEMENT) != key
    assert pool_key(definition(), {**PLACEMENT, "processes_on_host": 3}) != key
    assert keep_alive_refusal(definition(KeepAlivePeriodInSeconds=3600)) is None
    assert "give 0 to 3600 seconds" in keep_alive_refusal(
        definition(KeepAlivePeriodInSeconds=3601))


def test_one_decision_per_pool_and_its_status_as_sagemaker_says_it(tmp_path):
    pool = WarmPool(tmp_path)
    assert warm_pool_status(pool.state(), time.time()) is None
    handed = {}
    waiter = threading.Thread(target=lambda: handed.update(job=pool.wait(60)))
    waiter.start()
    wait_for(pool.is_available, timeout=10, what="the pool available")
    assert pool.claim("next-job") and not pool.claim(None, "too late")
    waiter.join(timeout=10)
    assert handed == {"job": "next-job"}
    status = warm_pool_status(pool.state(), time.time())
    assert status["Status"] == REUSED and status["ReusedByJob"] == "next-job"
    assert status["ResourceRetainedBillableTimeInSeconds"] >= 0

    expiring = WarmPool(tmp_path / "b")
    expiring.folder.mkdir()
    assert expiring.wait(0) is None  # the period is over: Terminated, by the runner's claim
    assert expiring.state()["status"] == TERMINATED and not expiring.claim("late-job")


@pytest.mark.smoke  # four 1-epoch CNN jobs, a server killed and started again: ~70 s
def test_a_matching_job_runs_on_the_warm_pool_and_statuses_follow_sagemaker(
        moto_server, digits_channels, tmp_path):
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    sm, _, s3 = boto_clients(server.url, moto_server)
    uris = upload_inputs(s3, digits_channels)

    def train(name, keep_alive, **resources):
        request = training_request(name, uris, epochs=1)
        request["ResourceConfig"].update(KeepAlivePeriodInSeconds=keep_alive, **resources)
        sm.create_training_job(**request)
        job = wait_status(lambda: sm.describe_training_job(TrainingJobName=name),
                          "TrainingJobStatus", ("Completed", "Failed", "Stopped"), timeout=180)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        return job

    def pool_of(name):
        return sm.describe_training_job(TrainingJobName=name).get("WarmPoolStatus")

    def runner_pids():
        return dict(re.findall(r"started training job (\S+) \(pid (\d+)\)", server.output()))

    try:
        assert train("warm-a", 120)["WarmPoolStatus"]["Status"] in ("InUse", AVAILABLE)
        wait_for(lambda: pool_of("warm-a")["Status"] == AVAILABLE, timeout=30,
                 what="warm-a's pool available")
        train("warm-b", 120)  # matches: no runner of its own
        assert "training job warm-b runs on the warm pool of warm-a" in server.output()
        assert "warm-b" not in runner_pids()
        reused = pool_of("warm-a")
        assert reused["Status"] == REUSED and reused["ReusedByJob"] == "warm-b", reused
        wait_for(lambda: pool_of("warm-b")["Status"] == AVAILABLE, timeout=30,
                 what="warm-b's pool available")
        listed = sm.list_training_jobs(WarmPoolStatusEquals=AVAILABLE)["TrainingJobSummaries"]
        assert [j["TrainingJobName"] for j in listed] == ["warm-b"]
        assert listed[0]["WarmPoolStatus"]["Status"] == AVAILABLE

        train("warm-c", 1, VolumeSizeInGB=50)  # no match: a runner of its own
        assert "warm-c" in runner_pids()
        wait_for(lambda: pool_of("warm-c")["Status"] == TERMINATED, timeout=30,
                 what="warm-c's 1 s pool over")
        assert pool_of("warm-b")["Status"] == AVAILABLE

        with pytest.raises(sm.exceptions.ClientError, match="no warm pool to update"):
            sm.update_training_job(TrainingJobName="warm-c",
                                   ResourceConfig={"KeepAlivePeriodInSeconds": 60})
        sm.update_training_job(TrainingJobName="warm-b",
                               ResourceConfig={"KeepAlivePeriodInSeconds": 0})
        wait_for(lambda: pool_of("warm-b")["Status"] == TERMINATED, timeout=30,
                 what="warm-b's pool ended by UpdateTrainingJob")
        wait_for(lambda: processes_in(experiments / ".hpt-api" / "training-jobs") == [],
                 timeout=30, what="the pools' runners to exit")

        train("warm-d", 600)
        wait_for(lambda: pool_of("warm-d")["Status"] == AVAILABLE, timeout=30,
                 what="warm-d's pool available")
        ray_folder = server.ray_folder
    except BaseException:
        server.stop(signal.SIGTERM)
        raise
    server.stop(signal.SIGKILL)  # with a warm pool: its runner goes with the server
    wait_for(lambda: processes_in(experiments) == [] and processes_in(ray_folder) == [],
             timeout=30, what="every process of the killed server to end")
    again = ApiServer(experiments, moto_server).start()
    try:
        sm, _, _ = boto_clients(again.url, moto_server)
        assert pool_of("warm-d")["Status"] == TERMINATED
        assert sm.describe_training_job(TrainingJobName="warm-d")[
            "TrainingJobStatus"] == "Completed"
    finally:
        again.stop(signal.SIGTERM)
    assert processes_in(experiments) == []
