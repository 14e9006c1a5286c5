"""`hpt api`'s wire protocol, against botocore's own models and signer: request checking,
response shapes, SigV4, and a fuzz run of malformed requests that must all come back as
SageMaker error shapes. The server runs on 127.0.0.1 over real HTTP; nothing here starts
Ray or a trial (a request that would is refused before that)."""

import base64
import datetime as dt
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from hpt.api import wire_protocol as protocol
from hpt.api.endpoints import Endpoints
from hpt.api.instances import host_resources, instance_resources
from hpt.api.images import repository_of
from hpt.api.jobs import TuningJobs
from hpt.api.listing import list_page, page
from hpt.api.wire_protocol import ApiError
from hpt.api.models import Records
from hpt.api.operations import Api
from hpt.api.server import create_app
from hpt.api.records import ApiStore
from hpt.api.shapes import describe_training_job, describe_tuning_job, tuned_text
from hpt.api.tuning import TuningRecord
from hpt.experiment.job_state import JobState

from api_helpers import PYTORCH_TRAINING, tuning_request

URIS = {"train": "s3://b/train", "test": "s3://b/test", "code": "s3://b/code/sourcedir.tar.gz",
        "output": "s3://b/output"}


# -- pure parts --------------------------------------------------------------------------------


def test_instance_types_map_to_cpus_and_gpus_capped_by_the_machine():
    assert instance_resources("ml.c5.2xlarge") == (8, 0) or \
        instance_resources("ml.c5.2xlarge").cpus == 8
    assert (instance_resources("ml.m5.large").cpus, instance_resources("ml.m5.large").gpus) == \
        (2, 0)
    assert (instance_resources("ml.p3.8xlarge").cpus,
            instance_resources("ml.p3.8xlarge").gpus) == (32, 4)
    assert instance_resources("ml.g5.12xlarge").gpus == 4
    assert instance_resources("ml.g4dn.xlarge").gpus == 1
    capped = host_resources("ml.c5.18xlarge", cpus_here=8, gpus_here=0)
    assert (capped.cpus, capped.gpus) == (8, 0)
    assert host_resources("ml.p3.16xlarge", 64, 2).gpus == 2
    with pytest.raises(ApiError) as bad:
        instance_resources("c5.large")
    assert bad.value.code == "ValidationException" and "ml.<family>.<size>" in bad.value.message


def test_repository_of_a_sagemaker_image():
    assert repository_of(PYTORCH_TRAINING) == "pytorch-training"
    assert repository_of("hpt-cnn:latest") == "hpt-cnn"
    assert repository_of("localhost:5000/x/y:1") == "x/y"


def test_pages_carry_an_opaque_token_and_refuse_a_forged_one():
    items = list(range(25))
    first, token = page(items, {"MaxResults": 10})
    second, token2 = page(items, {"MaxResults": 10, "NextToken": token})
    third, token3 = page(items, {"MaxResults": 10, "NextToken": token2})
    assert first + second + third == items and token3 is None
    with pytest.raises(ApiError):
        page(items, {"NextToken": "garbage"})


def test_list_page_filters_then_sorts_then_pages():
    items = [{"N": f"job-{i}", "S": "Completed" if i % 2 else "Failed", "C": 10 - i}
             for i in range(6)]
    listed = dict(name_key="N", status_key="S", sort_keys={"Name": lambda i: i["N"],
                                                           "CreationTime": lambda i: i["C"]},
                  default_sort="Name", page_size=2)
    params = {"StatusEquals": "Completed", "NameContains": "job", "SortBy": "CreationTime"}
    first, token = list_page(items, params, **listed)
    rest, end = list_page(items, {**params, "NextToken": token}, **listed)
    assert [i["N"] for i in first + rest] == ["job-5", "job-3", "job-1"] and end is None
    descending, _ = list_page(items, {"SortOrder": "Descending"}, **listed)
    assert [i["N"] for i in descending] == ["job-5", "job-4"]


def _rows():
    base = 1_800_000_000.0
    return [
        {"training_job_name": "t-001-aaaaaaaa", "trial_number": 1, "status": "Completed",
         "objective_value": 0.9, "hyperparameters": {"lr": 0.01, "optimizer": "adam"},
         "start_time": base, "end_time": base + 5, "final_metrics": {"validation:accuracy": 0.9},
         "s3_model_artifact": "s3://b/output/t-001-aaaaaaaa/output/model.tar.gz"},
        {"training_job_name": "t-002-bbbbbbbb", "trial_number": 2, "status": "Failed",
         "objective_value": None, "hyperparameters": {"lr": 0.02, "optimizer": "sgd"},
         "start_time": base + 1, "end_time": base + 2, "final_metrics": {},
         "failure_reason": "AlgorithmError: boom"},
        {"training_job_name": "t-003-cccccccc", "trial_number": 3, "status": "Completed",
         "objective_value": 0.95, "hyperparameters": {"lr": 0.03, "optimizer": "sgd"},
         "start_time": base + 2, "end_time": base + 8, "final_metrics": {}},  # not uploaded yet
        {"training_job_name": "t-004-dddddddd", "trial_number": 4, "status": "InProgress",
         "hyperparameters": {"lr": 0.04, "optimizer": "adam"}, "start_time": base + 3},
    ]


def test_describes_fit_botocores_output_shapes_and_count_as_sagemaker_does():
    request = tuning_request("t", URIS)
    record = TuningRecord(request, 1_800_000_000.0)
    events = [{"event": "job_started", "time": 1_800_000_000.0},
              {"event": "trial_started", "time": 1_800_000_003.0}]
    described = describe_tuning_job(record, JobState("InProgress"), _rows(), events)
    protocol.json_response("sagemaker", "DescribeHyperParameterTuningJob", described)
    assert described["TrainingJobStatusCounters"] == {
        "Completed": 1, "InProgress": 2, "RetryableError": 0, "NonRetryableError": 1,
        "Stopped": 0}
    # The best is the best *uploaded* job: 003 is still Uploading, so it is not Completed yet.
    assert described["BestTrainingJob"]["TrainingJobName"] in ("t-001-aaaaaaaa",
                                                                "t-003-cccccccc")
    for row in _rows():
        job = describe_training_job(record, row)
        protocol.json_response("sagemaker", "DescribeTrainingJob", job)
    uploading = describe_training_job(record, _rows()[2])
    assert (uploading["TrainingJobStatus"], uploading["SecondaryStatus"]) == ("InProgress",
                                                                              "Uploading")
    # A categorical value comes back as the very string of the range, as SageMaker echoes it.
    assert tuned_text(request, {"lr": 0.01, "optimizer": "adam"}) == {"lr": "0.01",
                                                                      "optimizer": '"adam"'}


def test_secondary_status_transitions_follow_the_jobs_phases_as_sagemaker_names_them():
    """Starting (its wait to be placed), Downloading (hpt's launch), Training (the script),
    Uploading (until the model is in S3), then how it ended; a StopTrainingJob shows
    Stopping. The SDK prints them while it waits; each fits botocore's model."""
    from hpt.api.shapes import transitions

    ended = {"start_time": 100.0, "end_time": 160.0, "queue_wait_seconds": 5.0,
             "launch_seconds": 2.0, "upload_time": 163.0, "status": "Completed"}

    def phases(row, secondary, asked=None):
        return [(t["Status"], t["StartTime"], t.get("EndTime"))
                for t in transitions(row, secondary, asked)]

    assert phases(ended, "Completed") == [
        ("Starting", 93.0, 98.0), ("Downloading", 98.0, 100.0), ("Training", 100.0, 160.0),
        ("Uploading", 160.0, 163.0), ("Completed", 163.0, 163.0)]
    assert phases({**ended, "upload_time": None}, "Uploading")[-1] == ("Uploading", 160.0, None)
    assert phases({**ended, "upload_time": None, "status": "Failed"}, "Failed")[-2:] == [
        ("Training", 100.0, 160.0), ("Failed", 160.0, 160.0)]
    running = {"start_time": 100.0}
    assert phases(running, "Training") == [("Starting", 100.0, 100.0),
                                           ("Downloading", 100.0, 100.0),
                                           ("Training", 100.0, None)]
    assert phases(running, "Stopping", asked=120.0)[-2:] == [("Training", 100.0, 120.0),
                                                            ("Stopping", 120.0, None)]
    assert phases({}, "Training") == []
    record = TuningRecord(tuning_request("t", URIS), 1_800_000_000.0)
    row = {**_rows()[0], "queue_wait_seconds": 1.5, "launch_seconds": 0.5,
           "upload_time": _rows()[0]["end_time"] + 1}
    job = describe_training_job(record, row)
    protocol.json_response("sagemaker", "DescribeTrainingJob", job)
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job["CreationTime"] == row["start_time"] - 2.0
    assert job["LastModifiedTime"] == row["end_time"] + 1
    stopping = describe_training_job(record, _rows()[3], stop_asked=_rows()[3]["start_time"] + 1)
    assert (stopping["TrainingJobStatus"], stopping["SecondaryStatus"]) == ("Stopping",
                                                                            "Stopping")
    protocol.json_response("sagemaker", "DescribeTrainingJob", stopping)


def test_a_response_that_breaks_the_model_is_an_internal_failure_naming_the_member():
    with pytest.raises(ApiError) as bad:
        protocol.json_response("sagemaker", "DescribeModel", {"ModelName": "m", "Nope": 1})
    assert bad.value.code == "InternalFailure" and "Nope" in bad.value.message


def test_request_checks_go_beyond_botocores_client_side_ones():
    body = json.dumps({"EndpointName": "e" * 64, "EndpointConfigName": "bad name!"}).encode()
    with pytest.raises(ApiError) as bad:
        protocol.parse_json_request("sagemaker", "CreateEndpoint", body)
    message = bad.value.message
    assert "EndpointName: at most 63 characters" in message
    assert "EndpointConfigName" in message and "pattern" in message


# -- a live server, no Ray ---------------------------------------------------------------------


class LiveServer:
    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def api(tmp_path, monkeypatch):
    # S3 that answers nothing: a request that would download code fails fast, as a refusal.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = ApiStore(tmp_path / "experiments")
    lines = []
    jobs = TuningJobs(store, "127.0.0.1:1", 4, 0, {}, say=lines.append)
    endpoints = Endpoints(store, Records(store, {}), say=lines.append)
    return Api(store, jobs, endpoints), lines


def _app(api, keys=None):
    the_api, lines = api
    return create_app(the_api, keys, lines.append,
                      on_startup=lambda loop: setattr(the_api.endpoints, "loop", loop))


def _client(url, key="testing", secret="testing"):
    import boto3

    return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                         region_name="eu-west-1").client("sagemaker", endpoint_url=url)


def test_unsigned_loopback_server_answers_boto3_with_sagemaker_errors(api):
    with LiveServer(_app(api)) as live:
        sm = _client(live.url)
        assert sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []
        with pytest.raises(sm.exceptions.ResourceNotFound):
            sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="nope")
        with pytest.raises(sm.exceptions.ClientError) as refused:
            sm.create_hyper_parameter_tuning_job(**tuning_request("t", URIS))
        error = refused.value.response["Error"]
        assert error["Code"] == "ValidationException"
        assert "sagemaker_submit_directory" in error["Message"]
        # The refused job left nothing behind: the name is free again.
        assert sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []
        assert sm.get_paginator("list_endpoints").paginate().build_full_result()[
            "Endpoints"] == []


def test_the_standard_endpoint_settings_point_unchanged_clients_at_hpt(api, monkeypatch):
    import boto3

    with LiveServer(_app(api)) as live:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", live.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", live.url)
        assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []
        runtime = boto3.client("sagemaker-runtime")
        with pytest.raises(runtime.exceptions.ClientError) as missing:
            runtime.invoke_endpoint(EndpointName="nope", Body=b"{}")
        assert missing.value.response["Error"]["Code"] == "ValidationError"
        assert "nope" in missing.value.response["Error"]["Message"]


def test_signed_server_refuses_wrong_keys_tampered_bodies_and_stale_dates(api):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    with LiveServer(_app(api, keys={"AKIDHPT": "s3cret"})) as live:
        good = _client(live.url, "AKIDHPT", "s3cret")
        assert good.list_endpoints()["Endpoints"] == []
        for key, secret, code in (("AKIDHPT", "wrong", "InvalidSignatureException"),
                                  ("OTHER", "s3cret", "UnrecognizedClientException")):
            with pytest.raises(good.exceptions.ClientError) as refused:
                _client(live.url, key, secret).list_endpoints()
            assert refused.value.response["Error"]["Code"] == code
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

        def signed(body: bytes, when: dt.datetime | None = None) -> AWSRequest:
            request = AWSRequest(method="POST", url=live.url + "/", data=body, headers={
                "X-Amz-Target": "SageMaker.ListEndpoints",
                "Content-Type": "application/x-amz-json-1.1"})
            signer = SigV4Auth(Credentials("AKIDHPT", "s3cret"), "sagemaker", "us-east-1")
            if when is not None:
                import unittest.mock

                with unittest.mock.patch("botocore.auth.get_current_datetime",
                                         return_value=when):
                    signer.add_auth(request)
            else:
                signer.add_auth(request)
            return request

        def send(request: AWSRequest, body: bytes):
            raw = urllib.request.Request(request.url, data=body, method="POST",
                                         headers=dict(request.headers))
            try:
                with urllib.request.urlopen(raw, timeout=10) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        request = signed(b"{}")
        assert send(request, b"{}")[0] == 200
        status, answer = send(request, b'{"MaxResults": 1}')  # the body changed after signing
        assert (status, answer["__type"]) == (403, "InvalidSignatureException")
        old = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=1)
        status, answer = send(signed(b"{}", old), b"{}")
        assert (status, answer["__type"]) == (403, "InvalidSignatureException")
        assert "expired" in answer["message"]
        status, answer = send(AWSRequest(method="POST", url=live.url + "/", headers={
            "X-Amz-Target": "SageMaker.ListEndpoints"}), b"{}")
        assert (status, answer["__type"]) == (403, "MissingAuthenticationTokenException")
    logged = "\n".join(api[1])
    assert "s3cret" not in logged


OPERATIONS = ["CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob",
              "ListHyperParameterTuningJobs", "StopHyperParameterTuningJob",
              "ListTrainingJobsForHyperParameterTuningJob", "DescribeTrainingJob",
              "ListTrainingJobs", "CreateModel", "DescribeModel", "DeleteModel",
              "CreateEndpointConfig", "DescribeEndpointConfig", "DeleteEndpointConfig",
              "CreateEndpoint", "DescribeEndpoint", "UpdateEndpoint",
              "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint", "ListEndpoints",
              "AddTags", "ListTags", "CreateTransformJob", "DescribeTransformJob",
              "ListTransformJobs", "StopTransformJob", "CreateTrainingJob", "StopTrainingJob",
              "UpdateTrainingJob"]


# Values of the wrong type for each kind of member (a string member gets an over-long one too).
WRONG = {
    "string": (12345, [], {"x": {"y": [1]}}, True, "x" * 5000),
    "integer": ("abc", [], {"n": 1}, 1.5),
    "long": ("abc", [], {}),
    "float": ("abc", [], {}),
    "double": ("abc", []),
    "boolean": ("yes", [], {}),
    "timestamp": ("not a date", [], {}),
    "structure": ("x", 12345, [1, 2]),
    "list": ("x", 12345, {"a": 1}),
    "map": ("x", [1], 7),
}


def _malformed(rng: random.Random) -> list[tuple[str, dict, bytes]]:
    """(what, headers, body) of requests no SageMaker client would send."""
    model = protocol.service_model("sagemaker")
    cases = []
    for op in OPERATIONS:
        target = {"X-Amz-Target": f"SageMaker.{op}",
                  "Content-Type": "application/x-amz-json-1.1"}
        shape = model.operation_model(op).input_shape
        members = list(shape.members) if shape else []
        cases += [(f"{op}: not JSON", target, b"{nope"),
                  (f"{op}: a JSON array", target, b"[1, 2]"),
                  (f"{op}: invalid UTF-8", target, b"\xff\xfe{}"),
                  (f"{op}: unknown member", target, json.dumps({"Bogus": 1}).encode()),
                  (f"{op}: deep nesting", target, b"[" * 5000 + b"]" * 5000)]
        for member in members[:8]:
            kind = shape.members[member].type_name
            for value in WRONG.get(kind, ()):
                cases.append((f"{op}.{member} ({kind}) = {str(value)[:20]}", target,
                              json.dumps({member: value}).encode()))
    for op in ("ListMetrics", "GetMetricStatistics", "GetMetricData"):  # CloudWatch, JSON 1.0
        target = {"X-Amz-Target": f"GraniteServiceVersion20100801.{op}",
                  "Content-Type": "application/x-amz-json-1.0"}
        cases += [(f"{op}: not JSON", target, b"{nope"),
                  (f"{op}: unknown member", target, json.dumps({"Bogus": 1}).encode()),
                  (f"{op}: Period a string", target, json.dumps({"Period": "x"}).encode())]
    for op in ("DescribeLogStreams", "GetLogEvents", "FilterLogEvents"):  # CloudWatch Logs
        target = {"X-Amz-Target": f"Logs_20140328.{op}",
                  "Content-Type": "application/x-amz-json-1.1"}
        cases += [(f"{op}: not JSON", target, b"{nope"),
                  (f"{op}: unknown member", target, json.dumps({"Bogus": 1}).encode()),
                  (f"{op}: limit a string", target, json.dumps({"limit": "x"}).encode()),
                  (f"{op}: no such group", target, json.dumps(
                      {"logGroupName": "/aws/sagemaker/Endpoints/none",
                       "logStreamName": "x"}).encode())]
    for target in ("SageMaker.DeleteEverything", "SageMaker.", "Logs_20140328.PutLogEvents",
                   "DynamoDB_20120810.ListTables", ""):
        cases.append((f"target {target!r}", {"X-Amz-Target": target}, b"{}"))
    cases.append(("too large", {"X-Amz-Target": "SageMaker.ListEndpoints"},
                  b'{"NameContains": "' + b"x" * (2 * 1024 * 1024) + b'"}'))
    cases.append(("forged NextToken", {"X-Amz-Target": "SageMaker.ListEndpoints"},
                  json.dumps({"NextToken": base64.b64encode(b"\x00junk").decode()}).encode()))
    rng.shuffle(cases)
    return cases


def _post(url: str, body: bytes, headers: dict) -> tuple[int, bytes, dict]:
    """(status, body, headers) of a raw POST, an error status included."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_fuzz_every_malformed_request_gets_a_sagemaker_error_shape(api):
    from botocore.parsers import create_parser

    cases = _malformed(random.Random(17))
    assert len(cases) >= 200
    parser = create_parser("json")
    codes = Counter()
    with LiveServer(_app(api)) as live:
        for what, headers, body in cases:
            status, raw, got = _post(live.url + "/", body, headers)
            assert 400 <= status < 500, (what, status, raw[:300])
            assert b"Traceback" not in raw, what
            parsed = parser.parse({"status_code": status, "headers": got, "body": raw}, None)
            code = parsed["Error"]["Code"]
            assert code and parsed["Error"]["Message"], (what, raw[:300])
            codes[code] += 1
    print(f"fuzz: {len(cases)} malformed requests -> {dict(codes)}")
    assert set(codes) <= {"ValidationException", "UnknownOperationException",
                          "RequestEntityTooLarge", "ResourceNotFound", "InvalidParameterValue",
                          "ResourceNotFoundException"}  # the last: CloudWatch Logs' own
    assert codes["InvalidParameterValue"] == 9  # CloudWatch's own code for each of its cases


def test_a_request_maps_to_the_space_hpt_launches():
    from hpt.api.instances import Resources
    from hpt.api.tuning import Placement, space_from_request

    request = tuning_request("mapped", URIS, max_jobs=9, parallel=3)
    config = request["HyperParameterTuningJobConfig"]
    config.update(Strategy="Hyperband", TrainingJobEarlyStoppingType="Auto",
                  StrategyConfig={"HyperbandStrategyConfig": {"MinResource": 1,
                                                              "MaxResource": 4}},
                  TuningJobCompletionCriteria={"TargetObjectiveMetricValue": 0.99})
    request["WarmStartConfig"] = {"ParentHyperParameterTuningJobs": [
        {"HyperParameterTuningJobName": "earlier"}], "WarmStartType": "TransferLearning"}
    space, notes = space_from_request(request, Placement("local", "/code", None,
                                                         Resources(2, 0)))
    assert space["trainer"]["source_dir"] == "/code"
    assert space["trainer"]["entry_point"] == "train.py"
    assert (space["trainer"]["cpus_per_host"], space["trainer"]["gpus_per_host"]) == (2, 0)
    assert space["static_hyperparameters"] == {"epochs": 3, "batch_size": 64}
    assert space["hyperparameters"]["optimizer"] == {"type": "categorical",
                                                     "values": ["adam", "sgd"]}
    assert space["hyperparameters"]["lr"]["scaling"] == "log"
    assert space["strategy"] == "hyperband" and space["early_stopping"] == "auto"
    assert space["strategy_config"] == {"min_resource": 1, "max_resource": 4}
    assert space["completion"] == {"target_objective": 0.99}
    assert space["warm_start"] == {"parents": ["earlier"], "type": "transfer_learning"}
    assert space["limits"] == {"max_trials": 9, "max_parallel": 3, "max_runtime_seconds": 600}\
        or space["limits"]["max_trials"] == 9
    assert space["channels"] == {"train": URIS["train"], "test": URIS["test"]}
    assert space["output"] == URIS["output"] and space["runtime"] == "local"


def test_what_hpt_cannot_run_is_refused_saying_what_to_change():
    from hpt.api.instances import Resources
    from hpt.api.tuning import Placement, space_from_request

    request = tuning_request("x", URIS)
    request["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingInputMode"] = "Pipe"
    request["Autotune"] = {"Mode": "Enabled"}
    with pytest.raises(ApiError) as refused:
        space_from_request(request, Placement("local", "/code", None, Resources(1, 0)))
    assert refused.value.code == "ValidationException"
    assert "TrainingInputMode: Pipe" in refused.value.message
    assert "Autotune" in refused.value.message


def test_sts_tags_and_tuning_job_listing_through_boto3(api):
    import boto3

    with LiveServer(_app(api)) as live:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                region_name="us-east-1")
        sts = session.client("sts", endpoint_url=live.url)
        assert sts.get_caller_identity()["Account"] == "000000000000"
        sm = session.client("sagemaker", endpoint_url=live.url)
        resource = "arn:aws:sagemaker:us-east-1:000000000000:training-job/x"
        sm.add_tags(ResourceArn=resource, Tags=[{"Key": "team", "Value": "a"}])
        sm.add_tags(ResourceArn=resource, Tags=[{"Key": "team", "Value": "b"},
                                                {"Key": "cost", "Value": "1"}])
        assert sm.list_tags(ResourceArn=resource)["Tags"] == [
            {"Key": "team", "Value": "b"}, {"Key": "cost", "Value": "1"}]
        sm.delete_tags(ResourceArn=resource, TagKeys=["team"])
        assert sm.list_tags(ResourceArn=resource)["Tags"] == [{"Key": "cost", "Value": "1"}]
        with pytest.raises(sm.exceptions.ClientError) as refused:
            sm.create_training_job(
                TrainingJobName="t", RoleArn="arn:aws:iam::000000000000:role/R",
                AlgorithmSpecification={"TrainingImage": PYTORCH_TRAINING,
                                        "TrainingInputMode": "File"},
                OutputDataConfig={"S3OutputPath": "s3://b/o"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 60})
        # No code to run (script mode needs sagemaker_submit_directory): said at create
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert "sagemaker_submit_directory" in refused.value.response["Error"]["Message"]


def test_a_refusal_names_the_requests_own_fields():
    from hpt.api.tuning import in_request_terms

    assert in_request_terms("hyperparameters.lr.min: must be <= max") == \
        "ParameterRanges lr.min: must be <= max"
    assert in_request_terms("objective.metric: 'x' is not defined in metric_definitions") == \
        "HyperParameterTuningJobObjective.MetricName: 'x' is not defined in metric_definitions"
    assert in_request_terms("limits.max_parallel: must be >= 1") == \
        "ResourceLimits.MaxParallelTrainingJobs: must be >= 1"


def test_the_launcher_runs_the_spec_the_server_validated(tmp_path):
    """One validation: the job's process rebuilds the frozen spec stage() wrote, reading
    space.yaml only for a folder staged before specs were frozen."""
    import yaml

    from helpers import faulty_space
    from hpt.api.job_runner import SPACE, VALIDATED_SPEC, validated_spec
    from hpt.experiment.store import write_json_atomic
    from hpt.spacefile import SpecError, load_spec

    space = faulty_space(trainer={**faulty_space()["trainer"],
                                  "environment": {"API_TOKEN": "s3cret"}})
    (tmp_path / SPACE).write_text(yaml.safe_dump(space))
    validated = load_spec(tmp_path / SPACE)
    write_json_atomic(tmp_path / VALIDATED_SPEC, validated.to_frozen_dict())
    (tmp_path / SPACE).write_text("hyperparameters: {}\n")  # no longer a valid space
    spec = validated_spec(tmp_path)
    assert spec.to_frozen_dict() == validated.to_frozen_dict()
    assert spec.trainer.environment == {"API_TOKEN": "s3cret"}  # nothing redacted away
    (tmp_path / VALIDATED_SPEC).unlink()
    with pytest.raises(SpecError):
        validated_spec(tmp_path)


CLOUDWATCH_OPERATIONS = ["ListMetrics", "GetMetricStatistics", "GetMetricData"]


def _malformed_cbor(rng: random.Random) -> list[tuple[str, str, bytes]]:
    """(what, path, body) of CloudWatch requests (RPC v2 CBOR) no AWS client would send."""
    from hpt.api import cbor

    model = protocol.service_model("cloudwatch")
    cases = []
    for op in CLOUDWATCH_OPERATIONS:
        path = f"/service/GraniteServiceVersion20100801/operation/{op}"
        shape = model.operation_model(op).input_shape
        cases += [(f"{op}: not CBOR", path, b"\xff"), (f"{op}: truncated", path, b"\xa2\x61"),
                  (f"{op}: an array", path, cbor.encode([1, 2])),
                  (f"{op}: trailing bytes", path, cbor.encode({}) + b"\x00"),
                  (f"{op}: unknown member", path, cbor.encode({"Bogus": 1})),
                  (f"{op}: deep nesting", path, b"\x81" * 5000 + b"\x00"),
                  (f"{op}: an unknown tag", path, b"\xa1\x69Namespace\xc2\x41\x00")]
        for member in list(shape.members)[:8]:
            kind = shape.members[member].type_name
            for value in WRONG.get(kind, ()):
                cases.append((f"{op}.{member} ({kind}) = {str(value)[:20]}", path,
                              cbor.encode({member: value})))
    for path in ("/service/GraniteServiceVersion20100801/operation/DeleteEverything",
                 "/service/GraniteServiceVersion20100801/operation/PutMetricAlarm",
                 "/service/DynamoDB_20120810/operation/ListTables"):
        cases.append((f"path {path}", path, cbor.encode({})))
    rng.shuffle(cases)
    return cases


def test_cloudwatch_answers_boto3_in_cbor_and_every_malformed_request_with_an_error(api):
    import boto3
    import datetime as dt
    from botocore.parsers import RpcV2CBORParser

    with LiveServer(_app(api)) as live:
        cloudwatch = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="t",
                                   region_name="eu-west-1").client("cloudwatch",
                                                                   endpoint_url=live.url)
        assert cloudwatch.list_metrics(Namespace="/aws/sagemaker/TrainingJobs")["Metrics"] == []
        now = dt.datetime.now(dt.timezone.utc)
        assert cloudwatch.get_metric_statistics(
            Namespace="/aws/sagemaker/TrainingJobs", MetricName="loss", StartTime=now,
            EndTime=now + dt.timedelta(minutes=1), Period=60,
            Statistics=["Average"])["Datapoints"] == []
        with pytest.raises(cloudwatch.exceptions.InvalidParameterValueException):
            cloudwatch.get_metric_statistics(
                Namespace="/aws/sagemaker/TrainingJobs", MetricName="loss", StartTime=now,
                EndTime=now, Period=60, Statistics=["Average"])
        # The same call in RPC v2 CBOR, serialized and parsed by botocore's own code.
        from botocore.serialize import RpcV2CBORSerializer

        op = protocol.operation_model("cloudwatch", "GetMetricStatistics")
        sent = RpcV2CBORSerializer().serialize_to_request(dict(
            Namespace="/aws/sagemaker/TrainingJobs", MetricName="loss", StartTime=now,
            EndTime=now + dt.timedelta(minutes=1), Period=60, Statistics=["Average"]), op)
        request = urllib.request.Request(live.url + sent["url_path"], data=sent["body"],
                                         method="POST", headers=sent["headers"])
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.headers["smithy-protocol"] == "rpc-v2-cbor"
            answer = RpcV2CBORParser().parse({"status_code": resp.status, "headers": {},
                                              "body": resp.read()}, op.output_shape)
        assert answer["Datapoints"] == [] and answer["Label"] == "loss"
        codes = Counter()
        cases = _malformed_cbor(random.Random(23))
        for what, path, body in cases:
            status, raw, got = _post(live.url + path, body, {
                "smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"})
            assert 400 <= status < 500, (what, status, raw[:300])
            assert b"Traceback" not in raw, what
            got = {k.lower(): v for k, v in got.items()}
            parsed = RpcV2CBORParser().parse({"status_code": status, "headers": got,
                                              "body": raw}, None)
            assert parsed["Error"]["Code"] and parsed["Error"]["Message"], (what, raw[:300])
            codes[parsed["Error"]["Code"]] += 1
    print(f"cloudwatch fuzz: {len(cases)} malformed requests -> {dict(codes)}")
    assert set(codes) <= {"InvalidParameterValue", "UnknownOperationException"}


def test_a_job_hpt_launch_ran_is_listed_and_described_by_the_api_but_not_controlled(
        api, tmp_path, write_space):
    """One view of the machine: the API shows the tuning jobs `hpt launch` started in its
    experiments folder, with their training jobs and metrics, and refuses to stop them."""
    import subprocess
    import sys

    import boto3

    from helpers import sleepy_space

    experiments = tmp_path / "experiments"
    space = write_space(sleepy_space("by-launch", max_trials=2, seconds=(0.2, 0.4)))
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "launch", str(space),
                           "--experiments-dir", str(experiments), "--no-dashboard"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    with LiveServer(_app(api)) as live:
        sm = _client(live.url)
        listed = sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
        assert [(s["HyperParameterTuningJobName"], s["HyperParameterTuningJobStatus"])
                for s in listed] == [("by-launch", "Completed")]
        described = sm.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="by-launch")
        assert described["TrainingJobStatusCounters"]["Completed"] == 2
        assert described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] \
            == {"Type": "Maximize", "MetricName": "ok"}
        best = described["BestTrainingJob"]["TrainingJobName"]
        assert best.startswith("by-launch-")
        jobs = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="by-launch")["TrainingJobSummaries"]
        assert len(jobs) == 2 and best in {j["TrainingJobName"] for j in jobs}
        assert {j["TrainingJobName"] for j in sm.list_training_jobs()[
            "TrainingJobSummaries"]} == {j["TrainingJobName"] for j in jobs}
        assert sm.describe_training_job(TrainingJobName=best)["TrainingJobStatus"] == \
            "Completed"
        with pytest.raises(sm.exceptions.ClientError) as refused:
            sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="by-launch")
        assert "hpt stop by-launch" in refused.value.response["Error"]["Message"]
        with pytest.raises(sm.exceptions.ClientError) as refused:
            sm.stop_training_job(TrainingJobName=best)
        assert f"hpt stop by-launch --training-job {best}" in refused.value.response[
            "Error"]["Message"]
        with pytest.raises(sm.exceptions.ResourceInUse):
            sm.create_hyper_parameter_tuning_job(**tuning_request("by-launch", URIS))
        cloudwatch = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="t",
                                   region_name="eu-west-1").client("cloudwatch",
                                                                   endpoint_url=live.url)
        metrics = cloudwatch.list_metrics(
            Namespace="/aws/sagemaker/TrainingJobs",
            Dimensions=[{"Name": "TrainingJobName", "Value": best}])["Metrics"]
        assert [m["MetricName"] for m in metrics] == ["ok"]
