"""`hpt api --image-map`: a SageMaker framework training image run as a local image, in real
containers. hpt-cnn:pytorch-toolkit carries SageMaker's own PyTorch framework toolkit, so
the training jobs run as a PyTorch framework container runs them: the toolkit in the image
reads the tree and runs `sagemaker_program` from the code hpt downloaded from
`sagemaker_submit_directory`."""

import signal

import pytest

from api_helpers import (EXACT, ApiServer, boto_clients, epoch_curve, training_request,
                         tuning_request, upload_inputs, wait_status)
from helpers import TOOLKIT_IMAGE, engine_holding, labelled, processes_in

pytestmark = pytest.mark.smoke


def test_a_mapped_framework_image_trains_in_containers(moto_server, digits_channels, tmp_path):
    engine = engine_holding(TOOLKIT_IMAGE)
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server, "--image-map",
                       f"pytorch-training={TOOLKIT_IMAGE}", "--container-engine", engine).start()
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        name = "mapped"
        sm.create_hyper_parameter_tuning_job(**tuning_request(name, uris, max_jobs=2,
                                                              parallel=2, epochs=2))
        described = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name), "HyperParameterTuningJobStatus",
            ("Completed", "Failed", "Stopped"), timeout=300)
        assert described["HyperParameterTuningJobStatus"] == "Completed", (
            described, server.output()[-3000:])
        assert described["TrainingJobStatusCounters"]["Completed"] == 2
        jobs = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name)["TrainingJobSummaries"]
        log = (experiments / name / jobs[0]["TrainingJobName"] / "algo-1.log").read_text()
        # The framework toolkit inside the image ran the script (its own log lines say so).
        assert "sagemaker_pytorch_container" in log or "Invoking user script" in log, log[-2000:]
        assert "val_acc=" in log
        assert labelled(engine, "ps -a", name) == []
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    assert processes_in(experiments) == []


def test_a_two_host_training_job_in_containers_follows_the_one_host_curve(
        moto_server, digits_channels, tmp_path):
    """`fit()` of the mapped framework image with instance_count=2 and MPI's switch: two
    containers, one per host, on a network of their own; the loss curve is the one-host
    job's (the tolerance of tests/test_cnn_distributed.py); no container is left."""
    engine = engine_holding(TOOLKIT_IMAGE)
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server, "--image-map",
                       f"pytorch-training={TOOLKIT_IMAGE}", "--container-engine", engine).start()
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        curves = {}
        for name, hosts, extra in (("one-box", 1, {}),
                                   ("two-boxes", 2, {"sagemaker_mpi_enabled": True})):
            request = training_request(name, uris, epochs=3, **EXACT, **extra)
            request["ResourceConfig"]["InstanceCount"] = hosts
            sm.create_training_job(**request)
            job = wait_status(lambda: sm.describe_training_job(TrainingJobName=name),
                              "TrainingJobStatus", ("Completed", "Failed", "Stopped"),
                              timeout=300)
            assert job["TrainingJobStatus"] == "Completed", (job.get("FailureReason"),
                                                             server.output()[-3000:])
            folder = experiments / ".hpt-api" / "training-jobs" / name / "job"
            curves[name] = epoch_curve(folder / "algo-1.log")
        assert (folder / "algo-2.log").is_file()
        assert len(curves["one-box"]) == 3
        for (e1, l1, a1), (e2, l2, a2) in zip(curves["one-box"], curves["two-boxes"],
                                              strict=True):
            assert e1 == e2 and l1 == pytest.approx(l2, rel=1e-4)
            assert a1 == pytest.approx(a2, abs=0.003)
        assert labelled(engine, "ps -a", "two-boxes") == []
        assert labelled(engine, "network ls", "two-boxes") == []
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    assert processes_in(experiments) == []
