"""One host of a trial: its tree and its processes, started, watched and stopped together.

Used in the trainable's own process for the master host (algo-1) and inside a Ray actor for
every other host (runtime/ray_hosts.py), so the same code runs a host wherever it lands.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hpt.runtime.containers import (ContainerCommands, ContainerSettings, container_commands,
                                    cpus_online_file)
from hpt.runtime.contract import HostContract
from hpt.runtime.host_process import HostProcess, failure_reason, run_quietly
from hpt.runtime.distribution_plan import HostPlan
from hpt.processes.reaper import REAPER
from hpt.runtime.tree import materialize
from hpt.core.trial import FailureCategory, FailureReason

KEEPER_START_SECONDS = 900
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


# The variables with which gloo, NCCL and TensorPipe (torch.distributed.rpc) choose their
# network interface. Unset, gloo binds to the address the machine's hostname resolves to,
# which is often 127.0.0.1 (Debian's /etc/hosts): peers on other nodes then cannot connect.
_SOCKET_IFNAME = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME", "TP_SOCKET_IFNAME")


def interface_of(ip: str) -> str | None:
    """The name of this machine's network interface that holds `ip` (Linux), or None."""
    import fcntl
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                answer = fcntl.ioctl(sock.fileno(), siocgifaddr,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:  # an interface without an IPv4 address
                continue
            if socket.inet_ntoa(answer[20:24]) == ip:
                return name
    return None


def process_env(contract_env: dict[str, str], extra: dict[str, str], threads: int,
                interface: str | None = None) -> dict[str, str]:
    """A local process's environment. `interface`: the one holding this node's address in
    a multi-host trial, for the collective libraries unless the user chose one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
    env.update({"PYTHONUNBUFFERED": "TRUE", "OMP_NUM_THREADS": str(threads)})
    if interface:
        env.update({name: interface for name in _SOCKET_IFNAME if name not in env})
    env.update(contract_env)
    env.update(extra)
    return env


class HostGroup:
    """The processes of one host. The first is the host's lead process; on algo-1 its lines
    are streamed to the caller (the objective is read from it), the others only logged."""

    def __init__(self, contract: HostContract, plan: HostPlan, trial_dir: Path, num_cpus: int,
                 stream_lead: bool, warm_socket: str | None = None,
                 container: ContainerSettings | None = None, node_ip: str | None = None):
        """`node_ip`: this node's address, given for a multi-host trial: its processes talk
        to the other hosts' over the interface that holds it."""
        self.contract = contract
        self.plan = plan
        self.host = plan.host
        self.failure_file = Path(contract.base_dir) / "output" / "failure"
        threads = max(1, num_cpus // len(plan.processes))
        self._keeper: ContainerCommands | None = None
        self._keeper_gone = False
        if container is not None:
            # The `docker` client runs here with the launcher's environment; the contract's
            # environment goes into the container only.
            Path(trial_dir).mkdir(parents=True, exist_ok=True)
            commands = container_commands(contract, plan, num_cpus, container,
                                          cpus_online_file(Path(trial_dir), num_cpus))
            self._keeper = commands if commands.keeper else None
            # A keeper's exec'd processes are stopped together, by the group (stop below).
            own_stop = None if self._keeper else commands.stop
            self.processes = [
                HostProcess(argv, {**os.environ, **commands.secrets}, str(trial_dir),
                            Path(trial_dir) / p.log_name, stream_lines=stream_lead and i == 0,
                            container=(own_stop, commands.remove))
                for i, (p, argv) in enumerate(zip(plan.processes, commands.processes))]
        else:
            interface = interface_of(node_ip) if node_ip else None
            self.processes = [
                HostProcess(list(p.argv), process_env(contract.env, p.env, threads, interface),
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
        if self._keeper is not None and (failed := self._start_keeper()) is not None:
            return failed
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

    def _start_keeper(self) -> HostExit | None:
        """The container a multi-process host's `docker exec`s run in: running on return."""
        keeper = self._keeper
        REAPER.on_death(self._keeper_key, keeper.remove)
        try:  # an image not yet on this node is pulled first: minutes, not seconds
            done = subprocess.run(keeper.keeper, env={**os.environ, **keeper.secrets},
                                  capture_output=True, text=True, timeout=KEEPER_START_SECONDS)
            error = None if done.returncode == 0 else (done.stderr.strip() or
                                                        f"exit code {done.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if error is None:
            return None
        self._exit = HostExit(self.host, None, FailureReason(
            FailureCategory.CLIENT_ERROR, f"could not start {self.host}'s container: {error}"),
            self.plan.processes[0].log_name)
        return self._exit

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

    @property
    def _keeper_key(self) -> str:
        return f"keeper-{self._keeper.remove[-1]}"

    def terminate(self) -> None:
        if self._keeper is not None and not self._keeper_gone:
            run_quietly(self._keeper.stop, wait=True)  # SIGTERM to all its processes
        for process in self.processes:
            process.terminate()

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM to every process group at once, one grace period, then SIGKILL."""
        self.terminate()
        for process in self.processes:
            process.stop(grace_seconds)
        self._remove_keeper()  # its processes are gone (or past their grace): so is the host

    def close(self) -> None:
        for process in self.processes:
            process.close()
        self._remove_keeper()  # no process was started, or they are all gone now

    def _remove_keeper(self) -> None:
        if self._keeper is not None and not self._keeper_gone:
            run_quietly(self._keeper.remove, wait=True)
            REAPER.cancel(self._keeper_key)
            self._keeper_gone = True
