"""One host of a trial: its tree and its processes, started, watched and stopped together.

Used in the trainable's own process for the master host (algo-1) and inside a Ray actor for
every other host (runtime/ray_hosts.py), so the same code runs a host wherever it lands.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from hpt.runtime.contract import HostContract
from hpt.runtime.docker import (ContainerPlan, container_env, container_name, labels_for,
                                remove_argv, run_argv, secret_env, stop_argv)
from hpt.runtime.local import HostProcess, failure_reason
from hpt.runtime.plan import HostPlan
from hpt.runtime.tree import materialize
from hpt.trial import FailureCategory, FailureReason

# Variables of the launcher's own environment that must not leak into a trial's contract.
_CONTRACT_PREFIXES = ("SM_", "SAGEMAKER_")


@dataclass(frozen=True)
class HostExit:
    """How a host ended: exit code 0 once all its processes exited 0, else the first failure."""

    host: str
    exit_code: int | None  # None: a process could not be started
    reason: FailureReason | None
    log_name: str


def free_ports(count: int, ip: str = "127.0.0.1") -> tuple[int, ...]:
    """`count` distinct ports the OS reports free on `ip` (all bound at once, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((ip, 0))
            sockets.append(sock)
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def process_env(contract_env: dict[str, str], extra: dict[str, str],
                threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
    env.update({"PYTHONUNBUFFERED": "TRUE", "OMP_NUM_THREADS": str(threads)})
    env.update(contract_env)
    env.update(extra)
    return env


@dataclass(frozen=True)
class ContainerSettings:
    """runtime: docker -- how this host's process runs in a container."""

    engine: str
    image: str
    tuning_job: str
    grace_seconds: float = 10.0
    channels: tuple[tuple[str, str], ...] = ()  # (local data folder, channel name)


def container_process(contract: HostContract, extra_env: dict[str, str], num_cpus: int,
                      settings: ContainerSettings
                      ) -> tuple[list[str], tuple[list[str], list[str]], dict[str, str]]:
    """(`docker run` argv, (stop argv, remove argv), secrets the CLI's environment must
    carry) for the host of `contract`."""
    job = contract.env["TRAINING_JOB_NAME"]
    gpu_ids = tuple(g for g in contract.env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g)
    name = container_name(job, contract.host)
    env = container_env({"PYTHONUNBUFFERED": "TRUE", **contract.env, **extra_env}, gpu_ids)
    plan = ContainerPlan(engine=settings.engine, image=settings.image, name=name,
                         host_tree=contract.base_dir, hostname=contract.host, env=env,
                         gpu_ids=gpu_ids, cpus=float(num_cpus),
                         labels=labels_for(settings.tuning_job, job, contract.host),
                         channels=settings.channels)
    return run_argv(plan), (stop_argv(settings.engine, name, settings.grace_seconds),
                            remove_argv(settings.engine, name)), secret_env(plan)


class HostGroup:
    """The processes of one host. The first is the host's lead process; on algo-1 its lines
    are streamed to the caller (the objective is read from it), the others only logged."""

    def __init__(self, contract: HostContract, plan: HostPlan, trial_dir: Path, num_cpus: int,
                 stream_lead: bool, warm_socket: str | None = None,
                 container: ContainerSettings | None = None):
        self.contract = contract
        self.plan = plan
        self.host = plan.host
        self.failure_file = Path(contract.base_dir) / "output" / "failure"
        threads = max(1, num_cpus // len(plan.processes))
        if container is not None:
            # The `docker` client runs here with the launcher's environment; the contract's
            # environment goes into the container only.
            argv, commands, secrets = container_process(contract, plan.processes[0].env,
                                                        num_cpus, container)
            self.processes = [HostProcess(argv, {**os.environ, **secrets}, str(trial_dir),
                                          Path(trial_dir) / plan.processes[0].log_name,
                                          stream_lines=stream_lead, container=commands)]
        else:
            self.processes = [
                HostProcess(list(p.argv), process_env(contract.env, p.env, threads),
                            contract.cwd, Path(trial_dir) / p.log_name,
                            stream_lines=stream_lead and i == 0, warm_socket=warm_socket)
                for i, p in enumerate(plan.processes)]
        self._exit: HostExit | None = None

    @property
    def lead(self) -> HostProcess:
        return self.processes[0]

    def materialize(self, source_dir: Path, channel_sources: dict[str, Path],
                    shard: tuple[int, int] | None = None,
                    sharded: frozenset[str] = frozenset()) -> None:
        materialize(self.contract, source_dir, channel_sources, shard=shard, sharded=sharded)

    def start(self) -> HostExit | None:
        """Starts every process; a process that cannot start stops the others."""
        for plan, process in zip(self.plan.processes, self.processes):
            try:
                process.start()
            except OSError as exc:  # entry point not executable, interpreter missing, ...
                self.stop(grace_seconds=1.0)
                self._exit = HostExit(self.host, None, FailureReason(
                    FailureCategory.CLIENT_ERROR, f"could not start {plan.argv[0]!r}: {exc}"),
                    plan.log_name)
                return self._exit
        return None

    def poll(self, include_lead: bool = True) -> HostExit | None:
        """The first process that failed, or exit 0 once all ended; None while running."""
        if self._exit is not None:
            return self._exit
        watched = list(zip(self.plan.processes, self.processes))
        if not include_lead:
            watched = watched[1:]
        codes = []
        for plan, process in watched:
            code = process.poll()
            if code not in (None, 0):
                process.wait(timeout=5)  # the pumps drain: the stderr tail is complete
                self._exit = HostExit(self.host, code, failure_reason(
                    code, self.failure_file, list(process.stderr_tail)), plan.log_name)
                return self._exit
            codes.append(code)
        if all(code == 0 for code in codes):
            return HostExit(self.host, 0, None, watched[0][0].log_name if watched else "")
        return None

    def terminate(self) -> None:
        for process in self.processes:
            process.terminate()

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM to every process group at once, one grace period, then SIGKILL."""
        self.terminate()
        for process in self.processes:
            process.stop(grace_seconds)

    def close(self) -> None:
        for process in self.processes:
            process.close()
