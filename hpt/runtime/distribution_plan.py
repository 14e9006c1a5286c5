"""Distributed training inside one trial, as a pure plan (docs/sagemaker-contract.md §7).

`plan_trial` turns a distribution mode and the trial's hosts (their real addresses and the
free ports picked on each) into the processes every host runs: argv, the variables added to
the host's contract environment, the role, the rank and the log file. No processes, no
sockets, no Ray: the launchers (runtime/host_process.py, runtime/ray_hosts.py) do that.

The chief process (rank 0, on algo-1) is always the first process of the first host: the
objective metric is read from its output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from hpt.core.sagemaker_names import DISTRIBUTION_MODES as MODES


@dataclass(frozen=True)
class HostAddress:
    """Where a host of the trial runs: names like algo-2 do not resolve for local processes."""

    host: str  # algo-1 ... algo-N
    ip: str
    ports: tuple[int, ...] = ()  # free ports picked on that node, one per process of the host


@dataclass(frozen=True)
class ProcessPlan:
    host: str
    role: str  # host (no distribution) | worker | ps | launcher (torchrun)
    rank: int | None
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # added to the host's contract env
    log_name: str = ""  # file name in the trial folder


@dataclass(frozen=True)
class HostPlan:
    host: str
    processes: tuple[ProcessPlan, ...]


def processes_on_host(mode: str, processes_per_host: int) -> int:
    """How many processes hpt starts on each host (torchrun starts its own workers)."""
    if mode == "data_parallel":
        return processes_per_host
    if mode == "parameter_server":
        return processes_per_host + 1  # the workers and one parameter server
    return 1


def plan_trial(mode: str, hosts: Sequence[HostAddress], argv: Sequence[str], *,
               processes_per_host: int = 1, master_port: int) -> tuple[HostPlan, ...]:
    """Per-host processes for one trial. `argv` is the contract's command (python, script, args)."""
    if mode not in MODES:
        raise ValueError(f"unknown distribution {mode!r}; expected one of {MODES}")
    if not hosts:
        raise ValueError("a trial needs at least one host")
    if processes_per_host < 1:
        raise ValueError(f"processes_per_host must be >= 1 (got {processes_per_host})")
    needed = processes_on_host(mode, processes_per_host)
    for address in hosts:
        if mode == "parameter_server" and len(address.ports) < needed:
            raise ValueError(f"{address.host}: {needed} ports needed for TF_CONFIG, "
                             f"got {list(address.ports)}")
    master = {"MASTER_ADDR": hosts[0].ip, "MASTER_PORT": str(master_port)}
    if mode == "data_parallel":
        return _data_parallel(hosts, argv, processes_per_host, master)
    if mode == "parameter_server":
        return _parameter_server(hosts, argv, processes_per_host, master)
    if mode == "torchrun":
        return _torchrun(hosts, argv, processes_per_host, master_port)
    # No distribution: the script runs once per host; several hosts still get a rendezvous.
    env = master if len(hosts) > 1 else {}
    return tuple(HostPlan(a.host, (ProcessPlan(a.host, "host", None, tuple(argv), dict(env),
                                               f"{a.host}.log"),)) for a in hosts)


def _ranks_env(rank: int, world: int, local_rank: int, local_world: int, node_rank: int,
               master: dict[str, str]) -> dict[str, str]:
    return {**master, "WORLD_SIZE": str(world), "RANK": str(rank),
            "LOCAL_RANK": str(local_rank), "LOCAL_WORLD_SIZE": str(local_world),
            "NODE_RANK": str(node_rank)}


def _data_parallel(hosts, argv, per_host, master) -> tuple[HostPlan, ...]:
    world = len(hosts) * per_host
    plans = []
    for node, address in enumerate(hosts):
        procs = []
        for local in range(per_host):
            rank = node * per_host + local
            log = f"{address.host}.log" if local == 0 else f"{address.host}.rank{rank}.log"
            procs.append(ProcessPlan(address.host, "worker", rank, tuple(argv),
                                     _ranks_env(rank, world, local, per_host, node, master), log))
        plans.append(HostPlan(address.host, tuple(procs)))
    return tuple(plans)


def _parameter_server(hosts, argv, per_host, master) -> tuple[HostPlan, ...]:
    """P workers and one server per host, as SageMaker runs a server on every host.

    Ranks: workers 0..W-1 (0 = the chief, TF_CONFIG type master), servers W..W+N-1.
    TF_CONFIG lists every process at its host's real address and its own port.
    """
    workers = len(hosts) * per_host
    world = workers + len(hosts)
    worker_addrs = [f"{a.ip}:{a.ports[local]}" for a in hosts for local in range(per_host)]
    cluster = {"master": worker_addrs[:1], "worker": worker_addrs[1:],
               "ps": [f"{a.ip}:{a.ports[per_host]}" for a in hosts]}

    def tf_config(kind: str, index: int) -> str:
        return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index},
                           "environment": "cloud"}, sort_keys=True)

    plans = []
    for node, address in enumerate(hosts):
        procs = []
        for local in range(per_host):
            rank = node * per_host + local
            kind, index = ("master", 0) if rank == 0 else ("worker", rank - 1)
            env = {**_ranks_env(rank, world, local, per_host, node, master),
                   "TF_CONFIG": tf_config(kind, index)}
            log = f"{address.host}.log" if local == 0 else f"{address.host}.worker{rank}.log"
            procs.append(ProcessPlan(address.host, "worker", rank, tuple(argv), env, log))
        ps_rank = workers + node
        env = {**_ranks_env(ps_rank, world, per_host, per_host + 1, node, master),
               "TF_CONFIG": tf_config("ps", node)}
        procs.append(ProcessPlan(address.host, "ps", ps_rank, tuple(argv), env,
                                 f"{address.host}.ps.log"))
        plans.append(HostPlan(address.host, tuple(procs)))
    return tuple(plans)


def _torchrun(hosts, argv, per_host, master_port) -> tuple[HostPlan, ...]:
    """One `torchrun` per host with a static rendezvous at the master's address."""
    python, *script = argv
    if not script or not script[0].endswith(".py"):
        raise ValueError(f"distribution torchrun needs a Python entry point (got {list(argv)})")
    plans = []
    for node, address in enumerate(hosts):
        command = (python, "-m", "torch.distributed.run", "--nnodes", str(len(hosts)),
                   "--node_rank", str(node), "--nproc_per_node", str(per_host),
                   "--master_addr", hosts[0].ip, "--master_port", str(master_port), *script)
        plans.append(HostPlan(address.host, (ProcessPlan(
            address.host, "launcher", node, command, {"NODE_RANK": str(node)},
            f"{address.host}.log"),)))
    return tuple(plans)
