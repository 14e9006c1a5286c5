"""`hpt api --image-map`: a SageMaker framework training image run as a local image, in real
containers. hpt-cnn:pytorch-toolkit carries SageMaker's own PyTorch framework toolkit, so
the training jobs run as a PyTorch framework container runs them: the toolkit in the image
reads the tree and runs `sagemaker_program` from the code hpt downloaded from
`sagemaker_submit_directory`."""

import signal

import pytest

from api_helpers import (ApiServer, assert_same_curve, boto_clients, one_and_two_host_curves,
                         tuning_request, upload_inputs, wait_status)
from helpers import TOOLKIT_IMAGE, engine_holding, labelled, processes_in

pytestmark = pytest.mark.smoke


def mapped_server(experiments, s3_url: str, engine: str) -> ApiServer:
    """hpt api with SageMaker's PyTorch training image mapped to hpt-cnn:pytorch-toolkit."""
    return ApiServer(experiments, s3_url, "--image-map", f"pytorch-training={TOOLKIT_IMAGE}",
                     "--container-engine", engine).start()


def test_a_mapped_framework_image_trains_in_containers(moto_server, digits_channels, tmp_path):
    engine = engine_holding(TOOLKIT_IMAGE)
    experiments = tmp_path / "experiments"
    server = mapped_server(experiments, moto_server, engine)
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
    server = mapped_server(experiments, moto_server, engine)
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        curves = one_and_two_host_curves(sm, uris, experiments, ("one-box", "two-boxes"),
                                         "sagemaker_mpi_enabled")
        assert_same_curve(curves["one-box"], curves["two-boxes"])
        assert labelled(engine, "ps -a", "two-boxes") == []
        assert labelled(engine, "network ls", "two-boxes") == []
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    assert processes_in(experiments) == []
