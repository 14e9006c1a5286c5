"""The SageMaker Python SDK, unchanged, against `hpt api`: a PyTorch estimator, a
HyperparameterTuner, its analytics, attach, deploy and predict. The only difference from a
notebook that runs on AWS is the session's clients (and S3 being moto's server)."""

import json
import signal
import time

import numpy as np
import pytest

from api_helpers import (BUCKET, ROLE, TRAINER, ApiServer, client_env, sdk_telemetry_off,
                         upload_inputs)
from helpers import processes_in
from hpt.api.warm_pools import WarmPool

sagemaker = pytest.importorskip("sagemaker", reason="the SageMaker Python SDK (pip install "
                                                    "sagemaker<3)")
pytestmark = pytest.mark.smoke


def _session(server, moto_server, digits_channels, tmp_path, monkeypatch, **env):
    """The SDK's session as a notebook changes it: its two SageMaker clients (and, here, S3)
    and a default bucket named (else the SDK asks AWS's own STS to name one); the data
    uploaded; telemetry off; `env`: the other clients that must reach hpt api."""
    import boto3

    sdk_telemetry_off(tmp_path, monkeypatch)
    for key, value in {**client_env(moto_server), "AWS_ENDPOINT_URL_STS": server.url,
                       "SAGEMAKER_SUPPRESS_V2_WARNING": "1", **env}.items():
        monkeypatch.setenv(key, value)
    boto_session = boto3.Session(region_name="us-east-1")
    uris = upload_inputs(boto_session.client("s3"), digits_channels)
    session = sagemaker.Session(
        boto_session=boto_session, default_bucket=BUCKET,
        sagemaker_client=boto_session.client("sagemaker", endpoint_url=server.url),
        sagemaker_runtime_client=boto_session.client("sagemaker-runtime",
                                                     endpoint_url=server.url))
    return session, uris


def test_sagemaker_sdk_tunes_attaches_deploys_and_predicts(moto_server, digits_channels,
                                                          tmp_path, monkeypatch):
    from sagemaker.pytorch import PyTorch
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner

    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    try:
        session, uris = _session(server, moto_server, digits_channels, tmp_path, monkeypatch,
                                 AWS_ENDPOINT_URL_CLOUDWATCH=server.url)

        # The SDK sleeps its poll interval before each look at an endpoint (30 s), a tuning
        # job and a training job (5 s): the same calls with a shorter sleep, for CI's time.
        monkeypatch.setattr(sagemaker.Session.wait_for_endpoint, "__defaults__", (1, False))
        monkeypatch.setattr(sagemaker.Session.wait_for_job, "__defaults__", (1,))
        monkeypatch.setattr(sagemaker.Session.wait_for_tuning_job, "__defaults__", (1,))

        estimator = PyTorch(entry_point="train.py", source_dir=str(TRAINER),
                            framework_version="2.1", py_version="py310",
                            instance_type="ml.m5.large", instance_count=1, role=ROLE,
                            hyperparameters={"epochs": 3, "batch_size": 64},
                            output_path=f"s3://{BUCKET}/sdk-output", sagemaker_session=session)
        tuner = HyperparameterTuner(
            estimator, objective_metric_name="validation:accuracy",
            hyperparameter_ranges={"lr": ContinuousParameter(0.003, 0.05,
                                                             scaling_type="Logarithmic"),
                                   "optimizer": CategoricalParameter(["adam", "sgd"])},
            metric_definitions=[{"Name": "validation:accuracy", "Regex": "val_acc=([0-9.]+)"}],
            max_jobs=4, max_parallel_jobs=2, base_tuning_job_name="sdk-cnn")
        began = time.time()
        tuner.fit({"train": uris["train"], "test": uris["test"]})
        tuner.wait()
        took = time.time() - began
        name = tuner.latest_tuning_job.name
        described = session.sagemaker_client.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name)
        assert described["HyperParameterTuningJobStatus"] == "Completed", (
            described, server.output()[-3000:])
        print(f"fit() -> Completed: {took:.1f}s for 4 training jobs")

        df = tuner.analytics().dataframe()
        assert len(df) == 4
        assert {"TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue",
                "TrainingStartTime", "TrainingEndTime", "TrainingElapsedTimeSeconds", "lr",
                "optimizer"} <= set(df.columns)
        assert set(df["TrainingJobStatus"]) == {"Completed"}
        assert set(df["optimizer"]) <= {'"adam"', '"sgd"', "adam", "sgd"}
        best = tuner.best_training_job()
        assert best == df.sort_values("FinalObjectiveValue", ascending=False)[
            "TrainingJobName"].iloc[0]

        # The best job's learning curve, as the SDK reads it from CloudWatch.
        from sagemaker.analytics import TrainingJobAnalytics

        curve = TrainingJobAnalytics(best, metric_names=["validation:accuracy"],
                                     sagemaker_session=session, period=1).dataframe()
        import hpt

        points = hpt.load_metrics(name, experiments)
        points = points[(points["TrainingJobName"] == best)
                        & (points["metric"] == "validation:accuracy")]
        # CloudWatch's Average per 1-second period of the job's own data points
        seconds = points["timestamp"].map(lambda t: int(t.timestamp()))
        expected = points.groupby(seconds)["value"].mean().tolist()
        assert set(curve["metric_name"]) == {"validation:accuracy"}
        assert curve["value"].tolist() == pytest.approx(expected)
        assert len(points) == 3

        attached = HyperparameterTuner.attach(name, sagemaker_session=session)
        assert attached.best_training_job() == best
        predictor = attached.deploy(initial_instance_count=1, instance_type="ml.c5.large")
        try:
            test = np.load(digits_channels / "test" / "data.npz")
            x, y = test["x"][:16].astype(np.float32), test["y"][:16]
            logits = predictor.predict(x)  # application/x-npy both ways, the PyTorch default
            assert np.asarray(logits).shape == (16, 10)
            assert (np.asarray(logits).argmax(axis=1) == y).mean() >= 0.75
        finally:
            predictor.delete_endpoint()
        assert processes_in(experiments / ".hpt-api" / "serving") == []
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()[-3000:]
    assert processes_in(experiments) == []


def test_sagemaker_sdk_fits_an_estimator_tails_its_logs_attaches_and_deploys_it(
        moto_server, digits_channels, tmp_path, monkeypatch, capsys):
    """`estimator.fit()` without a tuner (CreateTrainingJob), its log printed as it runs
    (CloudWatch Logs, the SDK's own tail), `model_data`, `attach`, `deploy`, `predict`."""
    from sagemaker.pytorch import PyTorch

    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    try:
        session, uris = _session(server, moto_server, digits_channels, tmp_path, monkeypatch,
                                 AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=server.url)
        # The SDK's polls, shorter (its log tail still describes the job every 30 s).
        monkeypatch.setattr(sagemaker.Session.wait_for_endpoint, "__defaults__", (1, False))
        monkeypatch.setattr(sagemaker.Session.logs_for_job, "__defaults__",
                            (False, 1, "All", None))
        monkeypatch.setattr(sagemaker.Session.logs_for_transform_job, "__defaults__", (False, 1))
        estimator = PyTorch(entry_point="train.py", source_dir=str(TRAINER),
                            framework_version="2.1", py_version="py310",
                            instance_type="ml.m5.large", instance_count=1, role=ROLE,
                            hyperparameters={"epochs": 3, "batch_size": 64},
                            metric_definitions=[{"Name": "validation:accuracy",
                                                 "Regex": "val_acc=([0-9.]+)"}],
                            output_path=f"s3://{BUCKET}/fit-output", sagemaker_session=session,
                            keep_alive_period_in_seconds=600)
        estimator.fit({"train": uris["train"], "test": uris["test"]}, logs="All")
        printed = capsys.readouterr().out
        name = estimator.latest_training_job.name
        described = session.sagemaker_client.describe_training_job(TrainingJobName=name)
        assert described["TrainingJobStatus"] == "Completed", described
        # Its warm pool: kept while the rest runs, ended by the server's clean stop.
        assert described["WarmPoolStatus"]["Status"] in ("InUse", "Available"), described
        assert printed.count("val_acc=") == 3, printed  # each line of its log once
        assert "Training - Training image download completed" in printed
        assert estimator.model_data == f"s3://{BUCKET}/fit-output/{name}/output/model.tar.gz"

        attached = PyTorch.attach(name, sagemaker_session=session)
        assert attached.model_data == estimator.model_data
        predictor = attached.deploy(initial_instance_count=1, instance_type="ml.c5.large")
        try:
            test = np.load(digits_channels / "test" / "data.npz")
            x, y = test["x"][:16].astype(np.float32), test["y"][:16]
            logits = np.asarray(predictor.predict(x))
            assert logits.shape == (16, 10) and (logits.argmax(axis=1) == y).mean() >= 0.75
        finally:
            predictor.delete_endpoint()
        _a_batch_transform_of_the_fitted_model(attached, session, x, y, capsys)
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()[-3000:]
    assert processes_in(experiments) == []
    pool = WarmPool(experiments / ".hpt-api" / "training-jobs" / name).state()
    assert pool["status"] == "Terminated" and pool["why"] == "the hpt api server stopped"


def _a_batch_transform_of_the_fitted_model(estimator, session, x, y, capsys):
    """`estimator.transformer(...).transform(...)` as the SDK runs it (CreateModel,
    CreateTransformJob, its log tailed while it waits): one image a line, each answer joined
    with its input and filtered, the output read back from S3."""
    s3 = session.boto_session.client("s3")
    lines = "\n".join(json.dumps(x[i:i + 1].tolist()) for i in range(len(x)))
    s3.put_object(Bucket=BUCKET, Key="transform-in/images.jsonl", Body=lines.encode())
    transformer = estimator.transformer(
        instance_count=1, instance_type="ml.m5.large", strategy="SingleRecord",
        assemble_with="Line", accept="application/json",
        output_path=f"s3://{BUCKET}/transform-out")
    transformer.transform(f"s3://{BUCKET}/transform-in/", content_type="application/json",
                          split_type="Line", join_source="Input",
                          output_filter="$['SageMakerOutput']")
    described = session.sagemaker_client.describe_transform_job(
        TransformJobName=transformer.latest_transform_job.name)
    assert described["TransformJobStatus"] == "Completed", described
    # Its instance's log, tailed as SageMaker's: the model server's lines (the data log is
    # a stream of its own, `<job>/algo-1/data-log-…`, which the SDK leaves out as on AWS).
    assert "model loaded from" in capsys.readouterr().out
    out = s3.get_object(Bucket=BUCKET, Key="transform-out/images.jsonl.out")["Body"].read()
    # `$['SageMakerOutput']` names one member: each line is its value, the model's answer
    answers = [json.loads(line) for line in out.decode().splitlines()]
    logits = np.asarray(answers).reshape(len(x), -1)
    assert logits.shape == (16, 10) and (logits.argmax(axis=1) == y).mean() >= 0.75
