"""Where this process stands in a distributed training job, read from the environment only.

The same script runs single-process, data-parallel (Horovod-style: every worker holds the
whole model, gradients are all-reduced each step; started once per process by the platform
or by `torchrun`), or as part of a parameter-server job (`TF_CONFIG` names this process's
role: `master`/`worker` compute gradients, `ps` holds a shard of the parameters).

Ranks: data-parallel uses RANK/WORLD_SIZE as given. With parameter servers, workers are
ranks 0..W-1 (0 is the chief, TF_CONFIG type `master`) and the servers come after them.
"""

import json
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    mode: str  # single | data_parallel | parameter_server
    rank: int  # global rank (0 = the chief)
    world_size: int  # all processes (workers and servers)
    local_rank: int
    local_world_size: int
    workers: int  # processes that compute gradients
    servers: int  # parameter servers (0 unless parameter_server)
    role: str  # worker | ps

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def server_index(self) -> int:
        return self.rank - self.workers


def detect() -> Context:
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
    if env.get("TF_CONFIG"):
        tf_config = json.loads(env["TF_CONFIG"])
        servers = len(tf_config.get("cluster", {}).get("ps", []))
        if servers:
            role = "ps" if tf_config["task"]["type"] == "ps" else "worker"
            return Context("parameter_server", rank, world, local_rank, local_world,
                           world - servers, servers, role)
    if world > 1:
        return Context("data_parallel", rank, world, local_rank, local_world, world, 0, "worker")
    return Context("single", 0, 1, 0, 1, 1, 0, "worker")


def threads_per_process(ctx: Context) -> int:
    """This host's CPUs (SM_NUM_CPUS) shared by its processes."""
    cpus = int(os.environ.get("SM_NUM_CPUS") or os.cpu_count() or 1)
    return max(1, cpus // max(1, ctx.local_world_size))


def device_for(ctx: Context) -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    # CUDA_VISIBLE_DEVICES is this host's GPUs: local rank i takes the i-th of them.
    return torch.device("cuda", ctx.local_rank % torch.cuda.device_count())


def init_data_parallel(ctx: Context, timeout_seconds: float) -> None:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, init_method="env://", rank=ctx.rank,
                            world_size=ctx.world_size, timeout=timedelta(seconds=timeout_seconds))


def allreduce_gradients(parameters) -> None:
    """Sums every worker's gradients, in one flat all-reduce per step.

    Each worker's loss is its slice's summed loss divided by the GLOBAL batch size, so the
    sum over workers is exactly the gradient of the global batch's mean loss.
    """
    grads = [p.grad for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def allreduce_sum(value: torch.Tensor) -> torch.Tensor:
    value = value.clone()
    dist.all_reduce(value)
    return value


def finish_data_parallel() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
