"""`runtime: local` and `runtime: docker`'s training job: its hosts as local process groups
(or containers) here and host actors elsewhere; contract -> tree -> processes.

Only how the job executes lives here (runtime/observed_job.py keeps what hpt observes of it:
metrics, the objective's stream, the deadline, the record). Knows nothing about Ray: the
Tune trainable drives it through `advance()`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from hpt.core.sagemaker_names import MODEL_ARCHIVE, SHARDED_BY_S3_KEY, distribution_hyperparameters
from hpt.core.trial import FailureCategory, FailureReason, TrialStatus
from hpt.runtime.job_protocol import TrialAssignment
from hpt.runtime.containers import ContainerSettings, TrialNetwork, container_addresses
from hpt.runtime.contract import HostContract, TrialContractInput, render_host_contract
from hpt.runtime.host import HostExit, HostGroup, free_ports
from hpt.runtime.observed_job import Exit, ObservedJob, Placement
from hpt.runtime.distribution_plan import HostAddress, HostPlan, plan_trial, processes_on_host
from hpt.runtime.host_process import pack_model
from hpt.runtime.pushed_metrics import PUSHED_METRICS_FILE, PushedMetricsTail

# How long a stop waits between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 10.0
# After the master exits 0, how long the other hosts get to finish on their own.
OTHER_HOSTS_GRACE_SECONDS = 30.0
# How often the other hosts are checked while the master's output streams.
CHECK_OTHERS_SECONDS = 0.5


class OtherHost(Protocol):
    """A host other than algo-1 (a Ray actor on its bundle's node; see runtime/ray_hosts.py)."""

    ip: str
    ports: tuple[int, ...]
    num_cpus: int
    gpu_ids: tuple[str, ...]

    def start(self, contract: HostContract, plan: HostPlan, source_dir: Path,
              channel_sources: dict[str, Path], trial_dir: Path, shard: tuple[int, int],
              sharded: frozenset[str],
              container: ContainerSettings | None = None) -> HostExit | None: ...

    def poll(self) -> HostExit | None: ...

    def terminate(self) -> None: ...  # SIGTERM, without waiting

    def stop(self, grace_seconds: float) -> None: ...


class LocalTrainingJob(ObservedJob):
    """Runs a training job: algo-1 as local process groups here, the other hosts (if any)
    through `OtherHost` handles. The objective is read from algo-1's lead process."""

    def __init__(self, spec, assignment: TrialAssignment, trial_dir: Path,
                 num_cpus: int = 1, gpu_ids: tuple[str, ...] = (),
                 python: str = sys.executable, ip: str = "127.0.0.1",
                 other_hosts: tuple[OtherHost, ...] = (), warm_socket: str | None = None,
                 container: ContainerSettings | None = None):
        """`container`: run algo-1 as a container (runtime: docker), else a process group."""
        super().__init__(spec, assignment, trial_dir)
        self.warm_socket = warm_socket
        self.container = container
        self.num_cpus = num_cpus
        self.gpu_ids = tuple(gpu_ids)
        self.python = python
        self.ip = ip
        self.other_hosts = tuple(other_hosts)
        self.hosts = tuple(f"algo-{i + 1}" for i in range(1 + len(self.other_hosts)))
        self.host = self.hosts[0]
        self.base_dir = self.trial_dir / self.host
        self.log_path = self.trial_dir / f"{self.host}.log"
        self.pushed = PushedMetricsTail(self.base_dir / PUSHED_METRICS_FILE,
                                        frozenset(self.parser.series))
        self.plans: tuple[HostPlan, ...] = ()
        self._group: HostGroup | None = None
        self._started_others: list[OtherHost] = []
        self._next_check = 0.0
        self._network: TrialNetwork | None = None

    # -- starting --------------------------------------------------------------------------

    def _contract_input(self) -> TrialContractInput:
        spec, trainer = self.spec, self.spec.trainer
        return TrialContractInput(
            job_name=self.assignment.training_job_name,
            entry_point=trainer.entry_point,
            hyperparameters=self.assignment.job_hyperparameters(spec.static_hyperparameters),
            channels={name: ch.distribution for name, ch in spec.channels.items()},
            hosts=self.hosts,
            objective_metric=spec.objective.metric if spec.objective else None,
            instance_type=trainer.instance_type,
            framework_params=distribution_hyperparameters(trainer.distribution,
                                                          trainer.processes_per_host),
            environment=dict(trainer.environment),
        )

    def _contracts(self) -> list[HostContract]:
        inp = self._contract_input()
        slots = [(self.num_cpus, self.gpu_ids)] + [
            (h.num_cpus, h.gpu_ids) for h in self.other_hosts]
        return [render_host_contract(
            inp, host=host, base_dir=str(self.trial_dir / host), num_cpus=cpus,
            num_gpus=len(gpus), gpu_ids=gpus,
            python="python" if self.container else self.python,  # the image's
            in_container=self.container is not None)
            for host, (cpus, gpus) in zip(self.hosts, slots)]

    def _execute(self) -> Exit | None:
        spec, trainer = self.spec, self.spec.trainer
        try:
            contracts = self._contracts()
        except ValueError as exc:
            # The space asks for what the contract cannot give (validation should have said
            # so): the job's own input, never a lost host, so it is not retried.
            return Exit(TrialStatus.FAILED, FailureReason(FailureCategory.CLIENT_ERROR,
                                                          str(exc)))
        master_port, addresses = self._addresses(
            processes_on_host(trainer.distribution, trainer.processes_per_host))
        self.plans = plan_trial(trainer.distribution, addresses, contracts[0].argv,
                                processes_per_host=trainer.processes_per_host,
                                master_port=master_port)
        channel_sources = {} if self.container else {
            name: Path(ch.uri) for name, ch in spec.channels.items()}
        sharded = frozenset(n for n, ch in spec.channels.items()
                            if ch.distribution == SHARDED_BY_S3_KEY)
        if self._network is not None and (error := self._network.create()) is not None:
            return Exit(TrialStatus.FAILED, FailureReason(FailureCategory.CLIENT_ERROR, error))
        self._group = HostGroup(contracts[0], self.plans[0], self.trial_dir, self.num_cpus,
                                stream_lead=True, warm_socket=self.warm_socket,
                                container=self.container,
                                node_ip=self.ip if len(self.hosts) > 1 else None)
        self._group.materialize(trainer.source_dir, channel_sources, (0, len(self.hosts)),
                                sharded)
        self.start_time = time.time()
        failed = self._group.start()
        for index, (other, contract, plan) in enumerate(
                zip(self.other_hosts, contracts[1:], self.plans[1:]), start=1):
            if failed is not None:
                break
            self._started_others.append(other)
            failed = other.start(contract, plan, trainer.source_dir, channel_sources,
                                 self.trial_dir, (index, len(self.hosts)), sharded,
                                 self.container)
        return None if failed is None else Exit(TrialStatus.FAILED, self._reason(failed))

    def _addresses(self, ports_per_host: int) -> tuple[int, list[HostAddress]]:
        """(rendezvous port, every host's address). Local hosts: their node's address and
        ports picked free there (algo-1 also holds the rendezvous port). Containers: their
        names (on the trial's own network, which this creates, for several hosts)."""
        if self.container is not None:  # also one host: its node's address is not its own
            if len(self.hosts) > 1:
                self._network = TrialNetwork(self.container, self.assignment.training_job_name,
                                             self.hosts)
                self.container = replace(self.container, network=self._network.name)
            return container_addresses(self.hosts, ports_per_host)
        master_port, *own_ports = free_ports(ports_per_host + 1, self.ip)
        return master_port, [HostAddress(self.host, self.ip, tuple(own_ports))] + [
            HostAddress(host, h.ip, h.ports) for host, h in zip(self.hosts[1:], self.other_hosts)]

    # -- running ---------------------------------------------------------------------------

    def _lines(self, timeout: float) -> list | None:
        try:
            line = self._group.lead.next_line(timeout=timeout)
        except EOFError:
            return None
        return [] if line is None else [line]

    def _failed(self) -> Exit | None:
        now = time.time()
        if now >= self._next_check:
            self._next_check = now + CHECK_OTHERS_SECONDS
            failed = self._failed_elsewhere()
            if failed is not None:
                return Exit(TrialStatus.FAILED, self._reason(failed), failed.exit_code)
        lead = self._group.lead
        if lead.log_error is not None:
            return Exit(TrialStatus.FAILED, FailureReason(
                FailureCategory.CLIENT_ERROR, f"hpt could not write {lead.log_path.name}: "
                f"{lead.log_error.strerror or lead.log_error}; the job was stopped (free "
                f"disk space, then hpt rerun it)"))
        return None

    def _failed_elsewhere(self) -> HostExit | None:
        """A failed process other than algo-1's lead: on algo-1 or on another host."""
        for exit_ in [self._group.poll(include_lead=False)] + [
                h.poll() for h in self._started_others]:
            if exit_ is not None and exit_.exit_code != 0:
                return exit_
        return None

    def _reason(self, exit_: HostExit) -> FailureReason:
        reason = exit_.reason or FailureReason(FailureCategory.ALGORITHM_ERROR,
                                               f"exit code {exit_.exit_code}")
        if len(self.hosts) == 1 and exit_.log_name == f"{self.host}.log":
            return reason
        return reason.on_host(exit_.host, exit_.log_name)

    # -- ending ----------------------------------------------------------------------------

    def _exit(self, deadline: float) -> Exit:
        code = self._group.lead.wait()
        if code != 0:
            failed = self._group.poll()
            self._halt()
            return Exit(TrialStatus.FAILED, self._reason(failed), code)
        # The master is done: the other processes get a grace period to end on their own.
        until = min(deadline, time.time() + OTHER_HOSTS_GRACE_SECONDS)
        while time.time() < until:
            failed = self._failed_elsewhere()
            if failed is not None:
                self._halt()
                return Exit(TrialStatus.FAILED, self._reason(failed), failed.exit_code)
            if self._group.poll() is not None and all(
                    h.poll() is not None for h in self._started_others):
                break
            time.sleep(0.1)
        self._halt()
        return Exit(TrialStatus.COMPLETED, exit_code=code)

    def _halt(self) -> Exit:
        """Stops every host at once (SIGTERM everywhere, then one grace period)."""
        for other in self._started_others:
            other.terminate()
        code = None
        if self._group is not None:
            self._group.stop(STOP_GRACE_SECONDS)
            code = self._group.lead.poll()
        for other in self._started_others:
            other.stop(STOP_GRACE_SECONDS)
        return Exit(TrialStatus.STOPPED, exit_code=code)

    def _artifact(self) -> str | None:
        return str(pack_model(self.base_dir / "model", self.trial_dir / MODEL_ARCHIVE))

    def _close(self) -> None:
        if self._group is not None:
            self._group.close()
        if self._network is not None:
            self._network.remove()

    def _placement(self) -> Placement:
        gpus = [list(self.gpu_ids)] + [list(h.gpu_ids) for h in self.other_hosts]
        return Placement(list(self.hosts), self.num_cpus, gpus[0] if len(self.hosts) == 1 else [
            f"{host}:{gpu}" for host, ids in zip(self.hosts, gpus) for gpu in ids])

    def _output_tail(self) -> list[str]:
        return list(self._group.lead.last_lines) if self._group is not None else []
