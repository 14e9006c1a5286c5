"""The CPUs and GPUs of one machine, handed out to the hosts of running training jobs.

GPU packing is exact. A host asking for whole GPUs (`gpus_per_host: 2`) gets that many
devices to itself. A host asking for a fraction f < 1 shares one device with at most
⌊1/f⌋ - 1 others and never spans two: its CUDA_VISIBLE_DEVICES names one device. (Counting
fractions against a node's total, as Ray's scheduler can, fits 8 / 0.15 = 53 hosts on 8
GPUs where only 8 × 6 = 48 fit on whole devices: ray-project/ray#5902.) Hosts are spread:
each goes to the least-loaded device that has room.

`SlotPool` is the one pool of the machine for every tuning job this process runs; the
pure rules (`choose_devices`, and hpt/core/gpu_share.py's) are what the tests pin.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from fractions import Fraction

from hpt.core.gpu_share import device_share

def choose_devices(load: dict[str, Fraction], gpus_per_host: float) -> tuple[str, ...] | None:
    """The devices a new host gets, given each device's load (the shares held on it), or
    None when none has room. Whole GPUs: free devices, lowest ids first; a fraction: the
    least-loaded device with room for one more share."""
    if gpus_per_host <= 0:
        return ()
    if gpus_per_host >= 1:
        free = [d for d, used in load.items() if used == 0]
        count = math.ceil(gpus_per_host - 1e-9)
        return tuple(free[:count]) if len(free) >= count else None
    share = device_share(gpus_per_host)
    room = [d for d, used in load.items() if used + share <= 1]
    order = {d: i for i, d in enumerate(load)}
    return (min(room, key=lambda d: (load[d], order[d])),) if room else None


@dataclass(frozen=True)
class Machine:
    """What the pool hands out: CPUs (Ray's count of them) and GPU device ids."""

    cpus: float
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grant:
    """What one host holds while it runs."""

    cpus: float
    gpu_ids: tuple[str, ...]
    share: Fraction  # of each device in gpu_ids


class SlotPool:
    """The machine's CPUs and devices; thread-safe (concurrent tuning jobs share it)."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self._lock = threading.Lock()
        self._cpus_free = float(machine.cpus)
        self._load: dict[str, Fraction] = {d: Fraction(0) for d in machine.gpu_ids}

    def fits_at_all(self, cpus: float, gpus: float) -> bool:
        """Whether one host of this size fits on the empty machine."""
        empty = {d: Fraction(0) for d in self.machine.gpu_ids}
        return cpus <= self.machine.cpus + 1e-9 and choose_devices(empty, gpus) is not None

    def acquire(self, cpus: float, gpus: float) -> Grant | None:
        with self._lock:
            if cpus > self._cpus_free + 1e-9:
                return None
            devices = choose_devices(self._load, gpus)
            if devices is None:
                return None
            share = device_share(gpus)
            for device in devices:
                self._load[device] += share
            self._cpus_free -= cpus
            return Grant(cpus, devices, share)

    def release(self, grant: Grant) -> None:
        with self._lock:
            self._cpus_free += grant.cpus
            for device in grant.gpu_ids:
                self._load[device] -= grant.share

    def load(self) -> dict[str, Fraction]:
        with self._lock:
            return dict(self._load)


def this_machine() -> Machine:
    """This machine as Ray counts it: the Ray this process is connected to (started here,
    e.g. with fake `num_gpus`), else what a local Ray would find (CPUs the cgroup allows,
    the GPUs CUDA_VISIBLE_DEVICES leaves visible)."""
    import ray

    if ray.is_initialized():
        resources = ray.cluster_resources()
        return Machine(float(resources.get("CPU", 1)),
                       tuple(str(i) for i in range(int(resources.get("GPU", 0)))))
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    gpus = get_accelerator_manager_for_resource("GPU")
    visible = gpus.get_current_process_visible_accelerator_ids()
    ids = tuple(visible) if visible is not None else tuple(
        str(i) for i in range(gpus.get_current_node_num_accelerators()))
    return Machine(float(get_num_cpus()), ids)


_POOLS: dict[Machine, SlotPool] = {}
_POOLS_LOCK = threading.Lock()


def machine_pool() -> SlotPool:
    """The pool of this machine, shared by the tuning jobs this process runs."""
    machine = this_machine()
    with _POOLS_LOCK:
        return _POOLS.setdefault(machine, SlotPool(machine))
