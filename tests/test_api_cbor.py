"""hpt api's CloudWatch side against botocore's own Smithy RPC v2 CBOR code: what boto3
serializes hpt reads, what hpt answers boto3 parses; and CloudWatch's statistics rules."""

import datetime as dt
import struct

import pytest
from botocore.model import ServiceModel  # noqa: F401 - botocore is the reference here
from botocore.parsers import RpcV2CBORParser
from botocore.serialize import RpcV2CBORSerializer

from hpt.api import cbor
from hpt.api.cloudwatch import TrainingJobMetrics, datapoints, periods, statistic
from hpt.api.wire_protocol import ApiError, cbor_response, operation_model, parse_cbor_request
from hpt.core.schema import File

UTC = dt.timezone.utc


def test_a_request_boto3_serializes_is_read_with_its_timestamps_and_checked():
    op = operation_model("cloudwatch", "GetMetricStatistics")
    start = dt.datetime(2026, 12, 5, 8, 0, 0, 500000, tzinfo=UTC)
    params = {"Namespace": "/aws/sagemaker/TrainingJobs", "MetricName": "validation:accuracy",
              "Dimensions": [{"Name": "Host", "Value": "job-001-abcdef12/algo-1"}],
              "StartTime": start, "EndTime": start + dt.timedelta(hours=1), "Period": 60,
              "Statistics": ["Average", "Maximum"], "ExtendedStatistics": ["p99.5"]}
    body = RpcV2CBORSerializer().serialize_to_request(params, op)["body"]
    read = parse_cbor_request("cloudwatch", "GetMetricStatistics", body)
    assert read == params


def test_a_request_missing_a_member_or_not_cbor_is_a_validation_error():
    op = operation_model("cloudwatch", "GetMetricStatistics")
    body = RpcV2CBORSerializer().serialize_to_request({"Namespace": "x"}, op)["body"]
    with pytest.raises(ApiError, match="MetricName"):
        parse_cbor_request("cloudwatch", "GetMetricStatistics", body)
    for junk in (b"\xff", b"\xa1\x61", b"\x01\x02", b"\xc2\x01", b"\x1c"):
        with pytest.raises(ApiError, match="not CBOR|must be a CBOR map"):
            parse_cbor_request("cloudwatch", "GetMetricStatistics", junk)


def test_hpts_answer_is_parsed_by_botocore_with_datetimes_and_floats():
    op = operation_model("cloudwatch", "GetMetricStatistics")
    answer = {"Label": "validation:accuracy", "Datapoints": [
        {"Timestamp": 1796457600.0, "Average": 0.5, "Maximum": 1, "Unit": "None",
         "ExtendedStatistics": {"p50": 0.25}}]}
    body = cbor_response("cloudwatch", "GetMetricStatistics", answer)
    parsed = RpcV2CBORParser().parse({"status_code": 200, "headers": {}, "body": body},
                                     op.output_shape)
    point = parsed["Datapoints"][0]
    assert point["Timestamp"] == dt.datetime.fromtimestamp(1796457600, UTC)
    assert point["Average"] == 0.5 and point["Maximum"] == 1.0
    assert point["ExtendedStatistics"] == {"p50": 0.25}


def test_the_codec_reads_every_form_the_protocol_may_send():
    for value in (0, 23, 24, 255, 65536, 2 ** 40, -1, -500, "", "ünï", b"\x00\xff", [], {},
                  [1, [2, {"a": None}]], True, False, None, 1.5, -2.25e300):
        assert cbor.decode(cbor.encode(value)) == value
    # indefinite lengths (a text in chunks, an array, a map) and half/single floats
    assert cbor.decode(b"\x7f\x62ab\x61c\xff") == "abc"
    assert cbor.decode(b"\x9f\x01\x02\xff") == [1, 2]
    assert cbor.decode(b"\xbf\x61k\xf5\xff") == {"k": True}
    assert cbor.decode(b"\xf9\x3c\x00") == 1.0
    assert cbor.decode(b"\xfa" + struct.pack(">f", 0.5)) == 0.5
    assert cbor.decode(b"\xc1\x1a\x00\x00\x00\x10") == 16  # tag 1: epoch seconds
    with pytest.raises(cbor.CborError):
        cbor.decode(b"\x81" * 100 + b"\x00")  # deeper than any request


def test_statistics_and_periods_follow_cloudwatchs_rules():
    samples = [(3600.0 + s, float(v)) for s, v in ((0, 1), (10, 3), (59, 2), (60, 10),
                                                   (200, 5))]
    buckets = periods(samples, start=3600 + 30, end=3600 + 180, period=60)
    # StartTime rounds down to the minute; the point at 200 s lies after EndTime
    assert buckets == {3600.0: [1.0, 3.0, 2.0], 3660.0: [10.0]}
    points = datapoints(buckets, ["SampleCount", "Average", "Sum", "Minimum", "Maximum"],
                        ["p50", "p100"])
    assert points[0] == {"Timestamp": 3600.0, "Unit": "None", "SampleCount": 3.0,
                         "Average": 2.0, "Sum": 6.0, "Minimum": 1.0, "Maximum": 3.0,
                         "ExtendedStatistics": {"p50": 2.0, "p100": 3.0}}
    assert statistic("p90", [float(i) for i in range(1, 11)]) == 9.0
    for bad in (lambda: periods([], 0, 10, 45), lambda: periods([], 10, 10, 60),
                lambda: statistic("Median", [1.0]), lambda: datapoints({}, [], [])):
        with pytest.raises(ApiError):
            bad()


def test_a_training_jobs_data_points_are_its_metrics_under_both_dimensions(tmp_path):
    folder = tmp_path / "job-001-abcdef12"
    folder.mkdir()
    (folder / File.METRICS).write_text(
        '{"metric": "loss", "step": 1, "value": 0.9, "timestamp": 100.0}\n'
        '{"metric": "loss", "step": 2, "value": 0.5, "timestamp": 130.0}\n'
        '{"metric": "loss", "step": 3, "val')  # a line torn by a kill is left out
    metrics = TrainingJobMetrics(lambda: iter([(folder.name, folder)]))
    listed = metrics.list_metrics({"Namespace": "/aws/sagemaker/TrainingJobs"})["Metrics"]
    assert [m["Dimensions"][0]["Name"] for m in listed] == ["Host", "TrainingJobName"]
    window = {"StartTime": dt.datetime.fromtimestamp(0, UTC),
              "EndTime": dt.datetime.fromtimestamp(600, UTC), "Period": 60}
    for dims in ([{"Name": "Host", "Value": f"{folder.name}/algo-1"}],
                 [{"Name": "TrainingJobName", "Value": folder.name}]):
        got = metrics.get_metric_statistics({
            "Namespace": "/aws/sagemaker/TrainingJobs", "MetricName": "loss",
            "Dimensions": dims, "Statistics": ["Minimum"], **window})["Datapoints"]
        assert [(p["Timestamp"], p["Minimum"]) for p in got] == [(60.0, 0.9), (120.0, 0.5)]
    # the exact dimension set: a metric under other dimensions has no datapoints
    assert metrics.get_metric_statistics({
        "Namespace": "/aws/sagemaker/TrainingJobs", "MetricName": "loss", "Dimensions": [],
        "Statistics": ["Minimum"], **window})["Datapoints"] == []
