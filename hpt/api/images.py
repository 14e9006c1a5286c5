"""SageMaker's container images as hpt tells them apart (pure): the framework images the
SDK resolves for an estimator or a model, and the repository part of any image name (what
`hpt api --image-map` keys are)."""

from __future__ import annotations

import re

# SageMaker's framework training images (what the SDK's image_uris resolves for an
# estimator): `<account>.dkr.ecr.<region>.amazonaws.com/<framework>-training:<tag>`. Their
# containers download sagemaker_submit_directory and run sagemaker_program: hpt does that.
FRAMEWORK_IMAGE = re.compile(
    r"^(?:[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/)?"
    r"(?P<repository>(?:huggingface-)?(?:pytorch|tensorflow|mxnet|sagemaker-scikit-learn|"
    r"sagemaker-xgboost|sagemaker-chainer)(?:-training)?(?:-[a-z0-9]+)*):(?P<tag>[\w.-]+)$")
PYTORCH_INFERENCE = re.compile(
    r"^(?:[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/)?"
    r"(?:huggingface-)?pytorch-inference(?:-[a-z0-9]+)*:[\w.-]+$")


def repository_of(image: str) -> str:
    """`763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1-cpu-py310` ->
    `pytorch-training` (what --image-map keys are)."""
    first = image.split("/", 1)[0]
    # Docker's rule: a first component with a '.' or ':' (or localhost) is a registry.
    registry = "/" in image and ("." in first or ":" in first or first == "localhost")
    path = image.split("/", 1)[1] if registry else image
    return path.rsplit(":", 1)[0].split("@", 1)[0]
