"""One host of a trial: its tree and its processes, started, watched and stopped together.

Used in the trainable's own process for the master host (algo-1) and inside a Ray actor for
every other host (runtime/ray_hosts.py), so the same code runs a host wherever it lands.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hpt.redaction import looks_secret
from hpt.runtime.contract import HostContract
from hpt.runtime.docker import (CONTAINER_ML, FIRST_PROCESS_PORT, KEEPER, MASTER_PORT,
                                ContainerPlan, container_env, container_name, exec_argv,
                                labels_for, network_create_argv, network_name,
                                network_remove_argv, online_cpus, remove_argv, run_argv,
                                secret_env, stop_argv, terminate_all_argv)
from hpt.runtime.local import HostProcess, failure_reason, run_quietly
from hpt.runtime.plan import HostAddress, HostPlan, ProcessPlan
from hpt.runtime.reaper import REAPER
from hpt.runtime.tree import materialize
from hpt.trial import FailureCategory, FailureReason

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


@dataclass(frozen=True)
class ContainerSettings:
    """runtime: docker -- how this host's processes run in a container."""

    engine: str
    image: str
    tuning_job: str
    grace_seconds: float = 10.0
    channels: tuple[tuple[str, str], ...] = ()  # (local data folder, channel name)
    network: str | None = None  # the trial's own network (multi-host trials)
    # Each process runs through the toolkit's `train`, as on SageMaker. Not for data_parallel,
    # whose `train` would start mpirun over SSH (hpt starts every rank itself, as locally),
    # nor torchrun, which is its own launcher: those run the planned command.
    toolkit: bool = True


@dataclass(frozen=True)
class ContainerCommands:
    """What runs one host's container: a keeper (`docker run -d`) when the host runs several
    processes, the argv of each process, and the stop/remove commands of the container."""

    keeper: list[str] | None
    processes: list[list[str]]
    stop: list[str]  # a one-process host: `docker stop`; a keeper: SIGTERM to its processes
    remove: list[str]
    secrets: dict[str, str]  # the variables the engine CLI's environment must carry


def _in_container(process: ProcessPlan, settings: ContainerSettings
                  ) -> tuple[tuple[str, ...], str | None]:
    """(command, workdir) of a planned process inside the image: SageMaker's `train` (the
    toolkit runs the entry point), or the planned argv itself (the image's python)."""
    if settings.toolkit:
        return ("train",), None
    return process.argv, f"{CONTAINER_ML}/code"


def cpus_online_file(folder: Path, count: int) -> str:
    """A file holding the online-CPU list of a `count`-CPU container (written once)."""
    path = folder / f".cpus-online-{count}"
    if not path.exists():
        path.write_text(online_cpus(count) + "\n")
    return str(path)


def container_commands(contract: HostContract, plan: HostPlan, num_cpus: int,
                       settings: ContainerSettings,
                       cpus_online: str | None = None) -> ContainerCommands:
    job = contract.env["TRAINING_JOB_NAME"]
    gpu_ids = tuple(g for g in contract.env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g)
    name = container_name(job, contract.host)
    single = len(plan.processes) == 1
    # One process: its variables are the container's. Several: each brings its own to exec.
    base_env = {"PYTHONUNBUFFERED": "TRUE", **contract.env,
                **(plan.processes[0].env if single else {})}
    command, workdir = _in_container(plan.processes[0], settings)
    container = ContainerPlan(
        engine=settings.engine, image=settings.image, name=name, host_tree=contract.base_dir,
        hostname=contract.host, env=container_env(base_env, gpu_ids), gpu_ids=gpu_ids,
        cpus=float(num_cpus), network=settings.network,
        labels=labels_for(settings.tuning_job, job, contract.host), channels=settings.channels,
        command=command if single else KEEPER, detach=not single,
        workdir=workdir if single else None, cpus_online=cpus_online)
    secrets = secret_env(container)
    if single:
        processes = [run_argv(container)]
    else:
        processes = []
        for process in plan.processes:
            command, workdir = _in_container(process, settings)
            processes.append(exec_argv(settings.engine, name, process.env, command, workdir))
            secrets.update({k: v for k, v in process.env.items() if looks_secret(k)})
    stop = (stop_argv(settings.engine, name, settings.grace_seconds) if single
            else terminate_all_argv(settings.engine, name))
    return ContainerCommands(None if single else run_argv(container), processes, stop,
                             remove_argv(settings.engine, name), secrets)


def container_addresses(hosts: tuple[str, ...], ports_per_host: int
                        ) -> tuple[int, list[HostAddress]]:
    """(rendezvous port, addresses) of a multi-host container trial: every host by its name on
    the trial's network, with the same fixed ports (each container has its own)."""
    ports = tuple(range(FIRST_PROCESS_PORT, FIRST_PROCESS_PORT + ports_per_host))
    return MASTER_PORT, [HostAddress(host, host, ports) for host in hosts]


class TrialNetwork:
    """The network of one multi-host container trial, on which algo-1..N resolve."""

    REMOVE_SECONDS = 30.0  # containers started with --rm leave it shortly after they stop

    def __init__(self, settings: ContainerSettings, training_job: str, hosts: tuple[str, ...]):
        self.engine = settings.engine
        self.name = network_name(training_job)
        self.labels = labels_for(settings.tuning_job, training_job, "net")
        # Every host's container, whichever process or node started it: a network cannot
        # be removed while one is attached.
        self.remove_hosts = [self.engine, "rm", "--force",
                             *(container_name(training_job, host) for host in hosts)]
        self.created = False

    def create(self) -> str | None:
        """None once the network exists, else why it could not be made."""
        # If this process dies: the containers go first, then the network (last registered,
        # first run).
        REAPER.on_death(f"network-{self.name}", network_remove_argv(self.engine, self.name))
        REAPER.on_death(f"hosts-{self.name}", self.remove_hosts)
        # A previous attempt's, if a launcher died before removing it.
        run_quietly(network_remove_argv(self.engine, self.name), wait=True)
        try:
            done = subprocess.run(network_create_argv(self.engine, self.name, self.labels),
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"could not create the network {self.name}: {exc}"
        self.created = done.returncode == 0
        return None if self.created else (f"could not create the network {self.name}: "
                                          f"{done.stderr.strip()}")

    def remove(self) -> None:
        """Removes every host's container, then the network (retried while the engine
        finishes removing them); the reaper keeps both commands if it never succeeds."""
        if not self.created:
            return
        run_quietly(self.remove_hosts, wait=True)
        deadline = time.monotonic() + self.REMOVE_SECONDS
        while True:
            done = run_quietly(network_remove_argv(self.engine, self.name), wait=True)
            if done is not None and done.returncode == 0:
                break
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        self.created = False
        REAPER.cancel(f"hosts-{self.name}")
        REAPER.cancel(f"network-{self.name}")


class HostGroup:
    """The processes of one host. The first is the host's lead process; on algo-1 its lines
    are streamed to the caller (the objective is read from it), the others only logged."""

    def __init__(self, contract: HostContract, plan: HostPlan, trial_dir: Path, num_cpus: int,
                 stream_lead: bool, warm_socket: str | None = None,
                 container: ContainerSettings | None = None, node_ip: str | None = None):
        """`node_ip`: this node's address in the trial (a multi-host trial's processes talk
        to the other hosts' over the interface that holds it)."""
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
            interface = interface_of(node_ip) if node_ip and len(
                json.loads(contract.env.get("SM_HOSTS", "[]"))) > 1 else None
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
