"""SageMaker instance types -> the CPUs and GPUs a host of a training job gets here.

A type is `ml.<family>.<size>`. vCPUs follow the size, as on every current EC2 family:
`medium` 1, `large` 2, `xlarge` 4, `<N>xlarge` 4·N, `metal` as the family's largest. GPUs come
from the table of accelerated families below (per size where it differs). What a host gets is
then capped by what this Ray has: SageMaker gives each job whole instances, hpt shares one
machine, so `ml.c5.18xlarge` on an 8-core machine gets 8 CPUs, and a GPU type on a machine
without GPUs gets none (the job runs, on CPU, as a script choosing its device at run time
would).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpt.api.wire_protocol import VALIDATION, ApiError

_TYPE = re.compile(r"^ml\.(?P<family>[a-z0-9-]+)\.(?P<size>medium|large|metal|(?P<n>\d*)xlarge)$")

# GPUs per instance of the accelerated families: {size: GPUs}, "*" for every size.
GPUS: dict[str, dict[str, int]] = {
    "p2": {"xlarge": 1, "8xlarge": 8, "16xlarge": 16},
    "p3": {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8},
    "p3dn": {"*": 8},
    "p4d": {"*": 8},
    "p4de": {"*": 8},
    "p5": {"*": 8},
    "p5e": {"*": 8},
    "p5en": {"*": 8},
    "g4dn": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
             "12xlarge": 4, "metal": 8},
    "g5": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
           "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
           "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6e": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
            "12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
}
METAL_VCPUS = 96


@dataclass(frozen=True)
class Resources:
    cpus: int
    gpus: int


def instance_resources(instance_type: str) -> Resources:
    """What one instance of the type has on AWS; ApiError for a name that is no type."""
    found = _TYPE.match(instance_type or "")
    if not found:
        raise ApiError(VALIDATION, f"InstanceType {instance_type!r}: not a SageMaker instance "
                                   f"type; write ml.<family>.<size>, e.g. ml.c5.xlarge")
    size = found["size"]
    cpus = {"medium": 1, "large": 2, "metal": METAL_VCPUS}.get(size)
    if cpus is None:
        cpus = 4 * int(found["n"] or 1)
    family = GPUS.get(found["family"], {})
    return Resources(cpus, family.get(size, family.get("*", 0)))


def host_resources(instance_type: str, cpus_here: float, gpus_here: float) -> Resources:
    """What a host of the type gets on a Ray with `cpus_here` CPUs and `gpus_here` GPUs."""
    wanted = instance_resources(instance_type)
    return Resources(max(1, min(wanted.cpus, int(cpus_here))),
                     min(wanted.gpus, int(gpus_here)))
