"""CloudWatch metrics of training jobs, as SageMaker publishes them: each metric a training
job's MetricDefinitions matched goes to the `/aws/sagemaker/TrainingJobs` namespace, with the
dimension `Host` (`<job>/algo-1`) and, as the SageMaker SDK's TrainingJobAnalytics asks for
it, `TrainingJobName`. The data points are the job's metrics.jsonl (hpt's own record of what
the log printed), so what CloudWatch answers is what `hpt.load_metrics` reads.

The statistics follow CloudWatch's rules (pure functions below): StartTime rounded down to
the period, one datapoint per period that has samples, SampleCount/Average/Sum/Minimum/
Maximum and pNN percentiles, the datapoints of GetMetricStatistics unordered and those of
GetMetricData newest first unless ScanBy says otherwise.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from hpt.api.listing import page
from hpt.api.wire_protocol import ApiError
from hpt.core.sagemaker_names import LEAD_HOST
from hpt.core.schema import Column, File, Point
from hpt.experiment.data_points import read_points

NAMESPACE = "/aws/sagemaker/TrainingJobs"
HOST, TRAINING_JOB = "Host", Column.TRAINING_JOB_NAME  # the dimensions
INVALID = "InvalidParameterValueException"  # CloudWatch's error shape (query code
# InvalidParameterValue); the server sends both names
BASIC_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,10})?|100)$")
MAX_DATAPOINTS = 1440  # GetMetricStatistics' limit per call
UNIT = "None"  # what SageMaker's training metrics carry


# -- the statistics (pure) ---------------------------------------------------------------------

def statistic(name: str, values: list[float]) -> float:
    """One of CloudWatch's statistics (or a pNN percentile) over a period's samples."""
    if name == "SampleCount":
        return float(len(values))
    if name == "Sum":
        return float(sum(values))
    if name == "Average":
        return sum(values) / len(values)
    if name == "Minimum":
        return float(min(values))
    if name == "Maximum":
        return float(max(values))
    match = PERCENTILE.match(name)
    if not match:
        raise ApiError(INVALID, f"The parameter Statistics/ExtendedStatistics has an invalid "
                                f"value {name!r}: use {', '.join(BASIC_STATISTICS)} or pNN.NN")
    ranked = sorted(values)  # nearest rank, as CloudWatch documents its percentiles
    rank = max(1, math.ceil(float(match.group(1)) / 100 * len(ranked)))
    return float(ranked[rank - 1])


def periods(points: Iterable[tuple[float, float]], start: float, end: float,
            period: int) -> dict[float, list[float]]:
    """The samples (timestamp, value) in [start, end), by the start of their period (start
    rounded down to a whole period, as CloudWatch aligns them)."""
    if period <= 0 or (period < 60 and 60 % period) or (period >= 60 and period % 60):
        raise ApiError(INVALID, f"The parameter Period must be 1, 5, 10, 30 or a multiple of "
                                f"60 (got {period})")
    if end <= start:
        raise ApiError(INVALID, "The parameter StartTime must be less than the parameter "
                                "EndTime.")
    first = math.floor(start / period) * period
    buckets: dict[float, list[float]] = {}
    for stamp, value in points:
        if first <= stamp < end and math.isfinite(value):
            buckets.setdefault(first + (stamp - first) // period * period, []).append(value)
    return buckets


def datapoints(buckets: dict[float, list[float]], statistics: list[str],
               extended: list[str]) -> list[dict[str, Any]]:
    """GetMetricStatistics' Datapoints from the periods' samples."""
    if not statistics and not extended:
        raise ApiError(INVALID, "The parameter Statistics or ExtendedStatistics is required.")
    if len(buckets) > MAX_DATAPOINTS:
        raise ApiError(INVALID, f"You have requested up to {len(buckets)} datapoints, which "
                                f"exceeds the limit of {MAX_DATAPOINTS}; shorten the time "
                                f"range or lengthen the Period")
    found = []
    for stamp, values in sorted(buckets.items()):
        point: dict[str, Any] = {"Timestamp": stamp, "Unit": UNIT}
        for name in statistics:
            point[name] = statistic(name, values)
        if extended:
            point["ExtendedStatistics"] = {name: statistic(name, values) for name in extended}
        found.append(point)
    return found


def dimensions_match(wanted: list[dict[str, str]], have: list[dict[str, str]],
                     exact: bool) -> bool:
    """GetMetricStatistics wants the exact dimension set; ListMetrics filters (a Name
    without a Value matches any value)."""
    have_map = {d["Name"]: d["Value"] for d in have}
    if exact and {d["Name"] for d in wanted} != set(have_map):
        return False
    return all(d["Name"] in have_map and d.get("Value") in (None, have_map[d["Name"]])
               for d in wanted)


# -- the operations ----------------------------------------------------------------------------

class TrainingJobMetrics:
    """ListMetrics, GetMetricStatistics and GetMetricData over the training jobs of
    `folders()`: (training job name, its folder) for every job the server knows."""

    def __init__(self, folders: Callable[[], Iterator[tuple[str, Path]]]):
        self.folders = folders

    def operations(self) -> dict[str, Callable[[dict, Any], dict]]:
        return {"ListMetrics": lambda p, c: self.list_metrics(p),
                "GetMetricStatistics": lambda p, c: self.get_metric_statistics(p),
                "GetMetricData": lambda p, c: self.get_metric_data(p)}

    def _series(self) -> Iterator[tuple[str, list[dict[str, str]], list[tuple[float, float]]]]:
        """(metric, dimensions, samples) of every metric of every training job."""
        for job, folder in self.folders():
            by_metric: dict[str, list[tuple[float, float]]] = {}
            for point in read_points(folder / File.METRICS):
                by_metric.setdefault(point[Point.METRIC], []).append(
                    (float(point[Point.TIMESTAMP]), float(point[Point.VALUE])))
            for metric, samples in by_metric.items():
                for dims in ([{"Name": HOST, "Value": f"{job}/{LEAD_HOST}"}],
                             [{"Name": TRAINING_JOB, "Value": job}]):
                    yield metric, dims, samples

    def _samples(self, namespace: str, metric: str, dims: list[dict]) -> list:
        if namespace != NAMESPACE:
            return []  # CloudWatch answers an unknown metric with no datapoints
        return [s for name, have, samples in self._series()
                if name == metric and dimensions_match(dims, have, exact=True) for s in samples]

    def list_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("Namespace") not in (None, NAMESPACE):
            return {"Metrics": []}
        found = [{"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dims}
                 for name, dims, _ in self._series()
                 if params.get("MetricName") in (None, name)
                 and dimensions_match(params.get("Dimensions") or [], dims, exact=False)]
        chunk, token = page(found, {"NextToken": params.get("NextToken")}, default=500)
        return {"Metrics": chunk, "NextToken": token}

    def get_metric_statistics(self, params: dict[str, Any]) -> dict[str, Any]:
        samples = self._samples(params["Namespace"], params["MetricName"],
                                params.get("Dimensions") or [])
        buckets = periods(samples, params["StartTime"].timestamp(),
                          params["EndTime"].timestamp(), params["Period"])
        return {"Label": params["MetricName"],
                "Datapoints": datapoints(buckets, params.get("Statistics") or [],
                                         params.get("ExtendedStatistics") or [])}

    def get_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        start, end = params["StartTime"].timestamp(), params["EndTime"].timestamp()
        newest_first = params.get("ScanBy", "TimestampDescending") == "TimestampDescending"
        results = []
        for query in params["MetricDataQueries"]:
            if "MetricStat" not in query:
                raise ApiError(INVALID, f"MetricDataQueries {query['Id']}: hpt api answers "
                                        f"MetricStat queries; metric math (Expression) is "
                                        f"not supported")
            stat = query["MetricStat"]
            metric = stat["Metric"]
            samples = self._samples(metric.get("Namespace", ""), metric.get("MetricName", ""),
                                    metric.get("Dimensions") or [])
            buckets = sorted(periods(samples, start, end, stat["Period"]).items(),
                             reverse=newest_first)
            if query.get("ReturnData", True):
                results.append({"Id": query["Id"],
                                "Label": query.get("Label") or metric.get("MetricName", ""),
                                "Timestamps": [stamp for stamp, _ in buckets],
                                "Values": [statistic(stat["Stat"], v) for _, v in buckets],
                                "StatusCode": "Complete"})
        return {"MetricDataResults": results, "Messages": []}
