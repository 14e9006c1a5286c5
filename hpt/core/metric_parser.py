"""Streaming metric parser: SageMaker metric definitions applied to every log line.

Each definition is `{Name, Regex}` with one capture group. Every match is a data point,
kept in order; a metric's final value is its last match (docs/sagemaker-contract.md §5).
Values a script pushes to its metrics file (hpt.runtime.pushed_metrics) join the same series;
a definition without a regex is fed by that file only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from hpt.core.schema import Point


@dataclass(frozen=True)
class MetricPoint:
    name: str
    step: int  # 1-based count of this metric's matches so far
    value: float
    timestamp: float


@dataclass
class MetricSeries:
    name: str
    regex: str | None
    points: list[MetricPoint] = field(default_factory=list)

    @property
    def final(self) -> float | None:
        return self.points[-1].value if self.points else None


class MetricParser:
    """Applies every metric definition to each line fed to it, in order."""

    def __init__(self, definitions: list[tuple[str, str | None]]):
        self._compiled = [(name, re.compile(regex)) for name, regex in definitions
                          if regex is not None]
        self.series = {name: MetricSeries(name, regex) for name, regex in definitions}

    def feed(self, line: str, timestamp: float) -> list[MetricPoint]:
        """Returns the data points found in one line (every match of every definition)."""
        found = []
        for name, pattern in self._compiled:
            for match in pattern.finditer(line):
                value = _to_float(match.group(1))
                if value is None:
                    continue
                found.append(self._append(name, value, timestamp))
        return found

    def push(self, name: str, value: float, timestamp: float) -> MetricPoint | None:
        """A value the script wrote to its metrics file; None for a name not defined."""
        if name not in self.series or not math.isfinite(value):
            return None
        return self._append(name, value, timestamp)

    def _append(self, name: str, value: float, timestamp: float) -> MetricPoint:
        series = self.series[name]
        point = MetricPoint(name, len(series.points) + 1, value, timestamp)
        series.points.append(point)
        return point

    def resume(self, points: list[dict]) -> None:
        """Starts from an earlier attempt's data points (metrics.jsonl's objects): the job
        resumes from that attempt's checkpoint, so its steps continue from them."""
        for point in points:
            series = self.series.get(point[Point.METRIC])
            if series is not None:
                series.points.append(MetricPoint(series.name, len(series.points) + 1,
                                                 float(point[Point.VALUE]),
                                                 float(point.get(Point.TIMESTAMP) or 0.0)))

    def final_values(self) -> dict[str, float]:
        return {name: s.final for name, s in self.series.items() if s.final is not None}

    def never_matched(self) -> list[MetricSeries]:
        return [s for s in self.series.values() if not s.points]


def _to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
