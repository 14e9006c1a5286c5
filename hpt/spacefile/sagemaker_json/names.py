"""The vocabulary both directions share: hpt's names -> SageMaker's, the placeholders, the
tag prefix (SageMaker's own names and rules are hpt/core/sagemaker_names.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hpt.schedule.rules import RULES
from hpt.search.strategies import STRATEGIES as STRATEGY_REGISTRY

PLACEHOLDER = "REPLACE-ME"
IMAGE_PLACEHOLDER = f"000000000000.dkr.ecr.us-east-1.amazonaws.com/{PLACEHOLDER.lower()}:latest"
ROLE_PLACEHOLDER = f"arn:aws:iam::000000000000:role/{PLACEHOLDER}"
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
VOLUME_GB = 30
TAG = "hpt:"  # hpt-only settings travel in the request's tags, `hpt:<field>`

# hpt's names -> SageMaker's, from the registries (a strategy or rule SageMaker does not
# have is exported as its nearest and kept in the tags).
STRATEGIES = {name: s.sagemaker for name, s in STRATEGY_REGISTRY.items() if s.sagemaker}
EARLY_STOPPING = {name: r.sagemaker for name, r in RULES.items() if r.sagemaker}
SCALINGS = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic",
            "reverse_log": "ReverseLogarithmic"}
WARM_START = {"identical_data_and_algorithm": "IdenticalDataAndAlgorithm",
              "transfer_learning": "TransferLearning"}


def reverse(mapping: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in mapping.items()}


def number_text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def absolute(path: Path | str, base: Path) -> str:
    """A local path as the tags carry it: absolute (resolved against the space's folder), so
    that the space `hpt import-sagemaker` writes works wherever it is written."""
    return os.path.normpath(Path(base) / Path(path))


def is_placeholder(uri: str | None) -> bool:
    """An S3 URI export wrote where SageMaker needs one and the space had a local path."""
    return not uri or str(uri).startswith(f"s3://{PLACEHOLDER}")


def hpt_tags(request: dict) -> dict[str, str]:
    """The request's `hpt:<field>` tags, by field."""
    return {t["Key"][len(TAG):]: t["Value"] for t in request.get("Tags") or []
            if isinstance(t, dict) and str(t.get("Key", "")).startswith(TAG)}
