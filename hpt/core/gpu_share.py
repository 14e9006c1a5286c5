"""How hosts share a GPU, pure: the one rule the local slots (hpt/controller/slots.py), the
Ray request of a host (hpt/runtime/runtimes/local.py) and the report's GPU use all follow.
A host asking for a fraction f < 1 of a GPU shares one device with at most ⌊1/f⌋ - 1 others."""

from __future__ import annotations

import math
from fractions import Fraction

# Ray keeps resource quantities in units of 1/10000.
RAY_RESOURCE_UNIT = 10_000


def hosts_per_gpu(gpus_per_host: float) -> int:
    """How many hosts share one device: ⌊1/f⌋ for a fraction f, 1 for whole GPUs."""
    if gpus_per_host <= 0:
        return 0
    if gpus_per_host >= 1:
        return 1
    return max(1, math.floor(1 / gpus_per_host + 1e-9))


def device_share(gpus_per_host: float) -> Fraction:
    """The share of one device a host holds: 1/⌊1/f⌋ for a fraction, the whole device
    (each of several) for whole GPUs."""
    return Fraction(1, hosts_per_gpu(gpus_per_host)) if 0 < gpus_per_host < 1 else Fraction(1)


def ray_gpu_request(gpus_per_host: float) -> float:
    """What a host asks Ray for (the Ray Tune controller): a fraction becomes 1/⌊1/f⌋ rounded
    down to Ray's precision, so that exactly ⌊1/f⌋ hosts fit on a device and no more fit
    on the node (0.15 -> 0.1666: 6 per device, 48 on 8 devices)."""
    if not 0 < gpus_per_host < 1:
        return gpus_per_host
    return math.floor(RAY_RESOURCE_UNIT / hosts_per_gpu(gpus_per_host)) / RAY_RESOURCE_UNIT
