"""Metrics a script pushes: JSON lines appended to a file instead of (or besides) log lines.

A training script may append one JSON object per line to `/opt/ml/output/metrics/metrics.jsonl`
(under algo-1's base directory outside a container), e.g.

    {"metric": "validation:accuracy", "value": 0.98, "step": 3}

`metric` must be a name of metric_definitions and `value` a finite number; `timestamp` (Unix
seconds) is optional (else the time hpt read the line), `step` and other fields are kept by
the script only: hpt numbers each metric's points 1, 2, ... in the order written, as it does
for log matches, so early stopping and resumed jobs count the same way. hpt reads the file as
it grows; a line is taken once it ends with a newline.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from hpt.core.schema import File

# Under the host's /opt/ml (its base directory): where a script writes pushed metrics.
PUSHED_METRICS_FILE = File.PUSHED_METRICS
# How often a running job's file is looked at (a stat; a read when it grew).
PUSHED_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class PushedValue:
    metric: str
    value: float
    timestamp: float


def parse_pushed(line: str, read_at: float) -> PushedValue | str:
    """One line of the file: its value, or why it was not taken."""
    try:
        obj = json.loads(line)
    except ValueError:
        return "not JSON"
    if not isinstance(obj, dict) or not isinstance(obj.get("metric"), str):
        return 'no "metric" name'
    value, stamp = obj.get("value"), obj.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        return f'"value" of {obj["metric"]!r} is not a finite number'
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        stamp = read_at
    return PushedValue(obj["metric"], float(value), float(stamp))


class PushedMetricsTail:
    """Follows one job's metrics file: each call returns the values of the lines completed
    since the last one. Lines that are not taken are counted, with the first reason."""

    def __init__(self, path: Path, names: frozenset[str]):
        self.path = Path(path)
        self.names = names  # metric_definitions': a value of another name is not taken
        self.lines_read = 0
        self.refused = 0
        self.first_refusal: str | None = None
        self._offset = 0
        self._partial = b""

    def read(self, now: float) -> list[PushedValue]:
        try:
            if os.stat(self.path).st_size <= self._offset:
                return []
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:  # not written yet (or not readable: said when a metric is missing)
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        taken = []
        for raw in lines:
            if not raw.strip():
                continue
            self.lines_read += 1
            found = parse_pushed(raw.decode("utf-8", "replace"), now)
            if not isinstance(found, str) and found.metric not in self.names:
                found = f"{found.metric!r} is not in metric_definitions"
            if isinstance(found, str):
                self.refused += 1
                self.first_refusal = self.first_refusal or f"line {self.lines_read}: {found}"
            else:
                taken.append(found)
        return taken

    def describe(self) -> str:
        """What the file gave, for a reason that a metric never arrived."""
        if not self.lines_read:
            return f"/opt/ml/{PUSHED_METRICS_FILE} was never written"
        said = f"/opt/ml/{PUSHED_METRICS_FILE} had {self.lines_read} line(s)"
        if self.refused:
            said += f", {self.refused} not taken (first, {self.first_refusal})"
        return said
