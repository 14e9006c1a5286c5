"""Hosts algo-2 ... algo-N of a multi-host trial, each in a Ray actor on its own bundle.

A trial with `instance_count = N` holds one placement group of N bundles (Tune reserves it
all at once, so two half-started trials never deadlock). The trainable itself sits in
bundle 0 and runs algo-1; bundle i gets a `HostActor` that runs algo-(i+1) on whichever node
holds that bundle, with exactly that bundle's GPUs.
"""

from __future__ import annotations

import math
from pathlib import Path

import ray
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from hpt.runtime.contract import HostContract
from hpt.runtime.containers import ContainerSettings
from hpt.runtime.host import HostExit, HostGroup, free_ports
from hpt.runtime.distribution_plan import HostPlan
from hpt.core.trial import FailureCategory, FailureReason


@ray.remote(max_concurrency=4)  # poll/stop must get through while another call runs
class HostActor:
    def __init__(self, num_cpus: int, warm_socket: str | None = None):
        self.num_cpus = num_cpus
        self.warm_socket = warm_socket  # used where this node has it; else a cold start
        self.group: HostGroup | None = None

    def __repr__(self):
        # Ray's dashboard and log prefixes show an actor's repr: name it after its job.
        if self.group is None:
            return "hpt-host(idle)"
        return f"{self.group.contract.env.get('TRAINING_JOB_NAME', '?')}/{self.group.host}"

    def address(self, port_count: int) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
        """This node's address, free ports on it, and the GPU ids Ray gave this bundle."""
        ip = ray.util.get_node_ip_address()
        return ip, free_ports(port_count, ip), tuple(str(g) for g in ray.get_gpu_ids())

    def start(self, contract: HostContract, plan: HostPlan, source_dir: str,
              channel_sources: dict[str, str], trial_dir: str, shard: tuple[int, int],
              sharded: frozenset[str], container: ContainerSettings | None = None
              ) -> HostExit | None:
        self.close()
        self.group = HostGroup(contract, plan, Path(trial_dir), self.num_cpus, stream_lead=False,
                               warm_socket=self.warm_socket, container=container,
                               node_ip=ray.util.get_node_ip_address())
        try:
            self.group.materialize(Path(source_dir), {k: Path(v) for k, v in
                                                      channel_sources.items()}, shard, sharded)
        except (OSError, ValueError) as exc:
            return HostExit(plan.host, None, FailureReason(
                FailureCategory.CLIENT_ERROR, f"could not prepare {plan.host}'s tree: {exc}"),
                plan.processes[0].log_name)
        return self.group.start()

    def poll(self) -> HostExit | None:
        return self.group.poll() if self.group else None

    def terminate(self) -> None:
        if self.group:
            self.group.terminate()

    def stop(self, grace_seconds: float) -> None:
        if self.group:
            self.group.stop(grace_seconds)

    def close(self) -> None:
        if self.group:
            self.group.close()
            self.group = None


class RayHost:
    """`OtherHost` (runtime/local_job.py) for one actor; created once per trainable and
    reused by every trial the trainable runs."""

    def __init__(self, bundle_index: int, cpus: float, gpus: float, port_count: int,
                 warm_socket: str | None = None, group=None):
        """`group`: the placement group whose bundle it takes; by default the caller's own
        (a trainable's)."""
        self.num_cpus = max(1, math.ceil(cpus))
        self.actor = HostActor.options(
            num_cpus=cpus, num_gpus=gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=group or get_current_placement_group(),
                placement_group_bundle_index=bundle_index),
        ).remote(self.num_cpus, warm_socket)
        self.host, self.log_name = f"algo-{bundle_index + 1}", f"algo-{bundle_index + 1}.log"
        self.ip, self.ports, self.gpu_ids = ray.get(self.actor.address.remote(port_count))

    def refresh_ports(self, port_count: int) -> None:
        """New free ports for the next trial (the old ones may have been taken since)."""
        self.ip, self.ports, self.gpu_ids = ray.get(self.actor.address.remote(port_count))

    def start(self, contract, plan, source_dir, channel_sources, trial_dir, shard, sharded,
              container=None):
        self.host, self.log_name = plan.host, plan.processes[0].log_name
        return self._call("start", contract, plan, str(source_dir),
                          {k: str(v) for k, v in channel_sources.items()}, str(trial_dir),
                          shard, sharded, container)

    def poll(self) -> HostExit | None:
        return self._call("poll")

    def terminate(self) -> None:
        self.actor.terminate.remote()

    def stop(self, grace_seconds: float) -> None:
        self._call("stop", grace_seconds)

    def close(self) -> None:
        try:
            ray.get(self.actor.close.remote(), timeout=30)
        except ray.exceptions.RayError:
            pass
        finally:
            ray.kill(self.actor)

    def _call(self, method: str, *args):
        """A lost actor (its node or worker died) ends the trial as a failure naming the host."""
        try:
            return ray.get(getattr(self.actor, method).remote(*args))
        except ray.exceptions.RayActorError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return HostExit(self.host, None, FailureReason(
                FailureCategory.LOST, f"the Ray actor running {self.host} was lost: {first}"),
                self.log_name)
