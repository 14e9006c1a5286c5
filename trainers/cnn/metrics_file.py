"""Pushes metrics to the metrics file hpt reads, instead of printing them for a regex.

Plain Python, no hpt import: copy this file beside any training script. Each call appends one
JSON line to `/opt/ml/output/metrics/metrics.jsonl` (under `SM_OUTPUT_DIR`, which hpt and
SageMaker's toolkit set; `/opt/ml/output` without it), e.g.

    {"metric": "validation:accuracy", "value": 0.98, "step": 3, "timestamp": 1764790000.1}

hpt takes a value of a metric of the space's `metric_definitions` as soon as its line is
written; a definition without `regex` is read from this file only. Real SageMaker reads
metrics from the logs only: there, print them too.
"""

import json
import os
import time


def metrics_path() -> str:
    return os.path.join(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"), "metrics",
                        "metrics.jsonl")


def push(metric: str, value: float, step: int | None = None) -> None:
    """Appends one data point; a whole line at a time, so a reader never sees half of it."""
    path = metrics_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    point = {"metric": metric, "value": float(value), "timestamp": time.time()}
    if step is not None:
        point["step"] = step
    with open(path, "a") as f:
        f.write(json.dumps(point) + "\n")
