"""runtime: docker -- the I/O side of a host's container: the commands that run its processes
(`docker run`, or a keeper and one `docker exec` each), the CPU list it sees, and the network
of a multi-host trial. The argv builders themselves are pure, in runtime/docker_commands.py."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hpt.core.redaction import looks_secret
from hpt.runtime.contract import HostContract
from hpt.runtime.docker_commands import (CONTAINER_ML, FIRST_PROCESS_PORT, KEEPER, MASTER_PORT,
                                ContainerPlan, container_env, container_name, exec_argv,
                                labels_for, network_create_argv, network_name,
                                network_remove_argv, online_cpus, remove_argv, run_argv,
                                secret_env, stop_argv, terminate_all_argv)
from hpt.runtime.host_process import run_quietly
from hpt.runtime.distribution_plan import HostAddress, HostPlan, ProcessPlan
from hpt.processes.reaper import REAPER


@dataclass(frozen=True)
class ContainerSettings:
    """runtime: docker -- how this host's processes run in a container."""

    engine: str
    image: str
    tuning_job: str
    grace_seconds: float = 10.0
    channels: tuple[tuple[str, str], ...] = ()  # (local data folder, channel name)
    writable_channels: frozenset[str] = frozenset()  # mounted read-write (hpt's own copies)
    network: str | None = None  # the trial's own network (multi-host trials)
    # Each process runs through the toolkit's `train`, as on SageMaker. Not for data_parallel,
    # whose `train` would start mpirun over SSH (hpt starts every rank itself, as locally),
    # nor torchrun, which is its own launcher: those run the planned command.
    toolkit: bool = True
    # SageMaker's ContainerEntrypoint and ContainerArguments: every host runs them instead of
    # `train` (the image's own drivers then do any distribution, as on SageMaker).
    entrypoint: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()


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
    """(command, workdir) of a planned process inside the image: the request's
    ContainerEntrypoint's arguments and ContainerArguments, SageMaker's `train` (the toolkit
    runs the entry point), or the planned argv itself (the image's python)."""
    if settings.entrypoint or settings.arguments:
        return (*settings.entrypoint[1:], *settings.arguments), None
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
        writable_channels=settings.writable_channels,
        command=command if single else KEEPER, detach=not single,
        workdir=workdir if single else None, cpus_online=cpus_online,
        entrypoint=settings.entrypoint[0] if settings.entrypoint and single else None)
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
