"""A training job's data points, the lines of its metrics.jsonl: written and read here only.

One JSON object a line, `{"metric", "step", "value", "timestamp"}` (hpt.core.schema.Point):
the runtimes write them as the log streams (hpt/runtime/observed_job.py), the next attempt
carries them (checkpoints.py), `hpt.load_metrics`, the MLflow mirror and the TensorBoard
export read them. A line torn by a kill mid-write is left out by every reader.
"""

from __future__ import annotations

import json
from pathlib import Path

from hpt.core.metric_parser import MetricPoint
from hpt.core.schema import POINT_KEYS, Point


def point_line(point: MetricPoint) -> str:
    """The metrics.jsonl line of one data point (newline included)."""
    return json.dumps({Point.METRIC: point.name, Point.STEP: point.step,
                       Point.VALUE: point.value, Point.TIMESTAMP: point.timestamp}) + "\n"


def write_points(path: Path, points: list[dict]) -> None:
    """A whole metrics.jsonl of points read back (a next attempt's carried curve)."""
    with open(path, "w") as f:
        f.writelines(json.dumps(point) + "\n" for point in points)


def read_points(path: Path) -> list[dict]:
    """The data points of a metrics.jsonl (a line torn by a kill mid-write is left out)."""
    return parse_points(Path(path).read_bytes().split(b"\n")) if Path(path).is_file() else []


def parse_points(lines) -> list[dict]:
    """The data points among metrics.jsonl lines (str or bytes); an empty line, or one torn
    by a kill mid-write, is left out."""
    points = []
    for line in lines:
        try:
            point = json.loads(line)
        except ValueError:
            continue
        if isinstance(point, dict) and set(POINT_KEYS[:3]) <= point.keys():
            points.append(point)
    return points
