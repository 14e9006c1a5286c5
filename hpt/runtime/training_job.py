"""One training job (one trial) on the local runtime: contract -> tree -> process -> record.

Knows nothing about Ray: the Tune trainable drives it through `advance()`, which returns
each objective data point as it streams and, last, the job's final record.
"""

from __future__ import annotations

import json
import sys
from collections import deque
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from hpt.experiment.checkpoints import METRICS, read_points
from hpt.core.metric_parser import MetricParser, MetricPoint
from hpt.runtime.api import Progress, TrialAssignment
from hpt.runtime.contract import HostContract, TrialContractInput, render_host_contract
from hpt.runtime.containers import ContainerSettings, TrialNetwork, container_addresses
from hpt.runtime.host import HostExit, HostGroup, free_ports
from hpt.runtime.processes import pack_model
from hpt.runtime.plan import HostAddress, HostPlan, plan_trial, processes_on_host
from hpt.runtime.pushed_metrics import (PUSHED_METRICS_FILE, PUSHED_POLL_SECONDS,
                                        PushedMetricsTail, PushedValue)
from hpt.core.sagemaker_names import MODEL_ARCHIVE, SHARDED_BY_S3_KEY, distribution_hyperparameters
from hpt.core.trial import (EARLY_STOPPED, FailureCategory, FailureReason, TrainingJobRecord,
                       TrialStatus, never_matched)

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


class LocalTrainingJob:
    """Runs a training job: algo-1 as local process groups here, the other hosts (if any)
    through `OtherHost` handles. The objective is read from algo-1's lead process."""

    def __init__(self, spec, assignment: TrialAssignment, trial_dir: Path,
                 num_cpus: int = 1, gpu_ids: tuple[str, ...] = (),
                 python: str = sys.executable, ip: str = "127.0.0.1",
                 other_hosts: tuple[OtherHost, ...] = (), warm_socket: str | None = None,
                 container: ContainerSettings | None = None):
        """`container`: run algo-1 as a container (runtime: docker), else a process group."""
        self.spec = spec
        self.warm_socket = warm_socket
        self.container = container
        self.assignment = assignment
        self.trial_dir = Path(trial_dir)
        self.num_cpus = num_cpus
        self.gpu_ids = tuple(gpu_ids)
        self.python = python
        self.ip = ip
        self.other_hosts = tuple(other_hosts)
        self.hosts = tuple(f"algo-{i + 1}" for i in range(1 + len(self.other_hosts)))
        self.host = self.hosts[0]
        self.base_dir = self.trial_dir / self.host
        self.log_path = self.trial_dir / f"{self.host}.log"
        definitions = [(m.name, m.regex) for m in spec.metric_definitions]
        self.parser = MetricParser(definitions)
        self._pushed = PushedMetricsTail(self.base_dir / PUSHED_METRICS_FILE,
                                         frozenset(name for name, _ in definitions))
        self._next_push_read = 0.0
        self._pushed_queue: deque[PushedValue] = deque()  # read, not yet taken
        self._lead_exited = False  # its log is read to the end; the metrics file once more
        self.objective_name = spec.objective.metric
        # Every objective must be printed for the job to complete (the first one streams).
        self.objective_names = [o.metric for o in spec.all_objectives]
        self.plans: tuple[HostPlan, ...] = ()
        self._group: HostGroup | None = None
        self._started_others: list[OtherHost] = []
        self._metrics_file = None
        self._deadline = 0.0
        self._next_check = 0.0
        self._record: TrainingJobRecord | None = None
        self._pending: list[MetricPoint] = []
        self.start_time = 0.0
        self._start_called = 0.0
        self._launch_seconds: float | None = None
        self._ending_since: float | None = None
        self._network: TrialNetwork | None = None
        self.resumed_from_step: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _contract_input(self) -> TrialContractInput:
        spec, trainer = self.spec, self.spec.trainer
        return TrialContractInput(
            job_name=self.assignment.training_job_name,
            entry_point=trainer.entry_point,
            hyperparameters=self.assignment.job_hyperparameters(spec.static_hyperparameters),
            channels={name: ch.distribution for name, ch in spec.channels.items()},
            hosts=self.hosts,
            objective_metric=spec.objective.metric,
            instance_type=trainer.instance_type,
            framework_params=distribution_hyperparameters(trainer.distribution,
                                                          trainer.processes_per_host),
            environment=dict(trainer.environment),
        )

    def start(self) -> None:
        self._start_called = time.time()
        spec, trainer = self.spec, self.spec.trainer
        inp = self._contract_input()
        slots = [(self.ip, self.num_cpus, self.gpu_ids)] + [
            (h.ip, h.num_cpus, h.gpu_ids) for h in self.other_hosts]
        try:
            contracts = [render_host_contract(
                inp, host=host, base_dir=str(self.trial_dir / host), num_cpus=cpus,
                num_gpus=len(gpus), gpu_ids=gpus,
                python="python" if self.container else self.python,  # the image's
                in_container=self.container is not None)
                for host, (_, cpus, gpus) in zip(self.hosts, slots)]
        except ValueError as exc:
            # The space asks for what the contract cannot give (validation should have said
            # so): the job's own input, never a lost host, so it is not retried.
            self._finish(TrialStatus.FAILED, FailureReason(FailureCategory.CLIENT_ERROR,
                                                           str(exc)), exit_code=None)
            return
        master_port, addresses = self._addresses(
            processes_on_host(trainer.distribution, trainer.processes_per_host))
        self.plans = plan_trial(trainer.distribution, addresses, contracts[0].argv,
                                processes_per_host=trainer.processes_per_host,
                                master_port=master_port)
        channel_sources = {name: Path(ch.uri) for name, ch in spec.channels.items()}
        sharded = frozenset(n for n, ch in spec.channels.items()
                            if ch.distribution == SHARDED_BY_S3_KEY)
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        if self._network is not None and (error := self._network.create()) is not None:
            self._finish(TrialStatus.FAILED, FailureReason(FailureCategory.CLIENT_ERROR, error),
                         exit_code=None)
            return
        self._resume_from_carried()
        self._metrics_file = open(self.trial_dir / METRICS, "a", buffering=1 << 16)
        self._group = HostGroup(contracts[0], self.plans[0], self.trial_dir, self.num_cpus,
                                stream_lead=True, warm_socket=self.warm_socket,
                                container=self.container,
                                node_ip=self.ip if len(self.hosts) > 1 else None)
        self._group.materialize(trainer.source_dir, {} if self.container else channel_sources,
                                (0, len(self.hosts)), sharded)
        self.start_time = time.time()
        self._deadline = self.start_time + trainer.max_runtime_seconds
        failed = self._group.start()
        for index, (other, contract, plan) in enumerate(
                zip(self.other_hosts, contracts[1:], self.plans[1:]), start=1):
            if failed is not None:
                break
            self._started_others.append(other)
            failed = other.start(contract, plan, trainer.source_dir,
                                 {} if self.container else channel_sources, self.trial_dir,
                                 (index, len(self.hosts)), sharded, self.container)
        self._launch_seconds = time.time() - self._start_called
        if failed is not None:
            self._stop_all()
            self._finish(TrialStatus.FAILED, self._reason(failed), exit_code=None)

    def _resume_from_carried(self) -> None:
        """An attempt that starts with an earlier one's checkpoints (attempt_dir carried them,
        with its data points) counts its objective steps on from there."""
        carried = read_points(self.trial_dir / METRICS)
        self.parser.resume(carried)
        steps = len(self.parser.series[self.objective_name].points)
        self.resumed_from_step = steps if carried else None

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

    def advance(self, wait_seconds: float | None = None, poll_seconds: float = 0.5) -> Progress:
        """Blocks until the next objective data point or the end of the job (or, with
        `wait_seconds`, until that long passed: an empty Progress)."""
        if self._record is not None:
            return Progress(record=self._record)
        lead = self._group.lead
        give_up = None if wait_seconds is None else time.time() + wait_seconds
        while True:
            if self._pending:
                return Progress(point=self._pending.pop(0))
            if self._take_pushed(time.time(), read=False):
                continue
            if self._lead_exited:
                return Progress(record=self._finish_after_lead_exit())
            now = time.time()
            if now >= self._deadline:
                self._stop_all()
                limit = self.spec.trainer.max_runtime_seconds
                return Progress(record=self._finish(TrialStatus.FAILED, FailureReason(
                    FailureCategory.MAX_RUNTIME_EXCEEDED, f"the training job ran longer than "
                    f"trainer.max_runtime_seconds={limit} and was stopped"),
                    exit_code=lead.poll()))
            if now >= self._next_check:
                self._next_check = now + CHECK_OTHERS_SECONDS
                failed = self._failed_elsewhere()
                if failed is not None:
                    self._stop_all()
                    return Progress(record=self._finish(
                        TrialStatus.FAILED, self._reason(failed), exit_code=failed.exit_code))
            if lead.log_error is not None:
                self._stop_all()
                return Progress(record=self._finish(TrialStatus.FAILED, FailureReason(
                    FailureCategory.CLIENT_ERROR, f"hpt could not write {lead.log_path.name}: "
                    f"{lead.log_error.strerror or lead.log_error}; the job was stopped (free "
                    f"disk space, then hpt rerun it)"), exit_code=lead.poll()))
            if now >= self._next_push_read:
                self._next_push_read = now + PUSHED_POLL_SECONDS
                if self._take_pushed(now):
                    continue
            wait = min(poll_seconds, PUSHED_POLL_SECONDS, self._deadline - now)
            if give_up is not None:
                if now >= give_up:
                    return Progress()
                wait = min(wait, give_up - now)
            try:
                line = lead.next_line(timeout=wait)
            except EOFError:
                self._ending_since = time.time()
                self._lead_exited = True
                self._take_pushed(self._ending_since)  # what it wrote last
                continue
            if line is not None:
                self._take(self.parser.feed(line.text, line.timestamp))

    def _take_pushed(self, now: float, read: bool = True) -> bool:
        """Takes the values the script appended to its metrics file (read since the last look
        when `read`) up to the next objective point, so that a job stopped at a step counts
        that step, as with log lines; whether one is pending."""
        if read:
            self._pushed_queue.extend(self._pushed.read(now))
        while self._pushed_queue and not self._pending:
            value = self._pushed_queue.popleft()
            point = self.parser.push(value.metric, value.value, value.timestamp)
            self._take([point] if point is not None else [])
        return bool(self._pending)

    def _take(self, points: list[MetricPoint]) -> None:
        for point in points:
            self._metrics_file.write(json.dumps(
                {"metric": point.name, "step": point.step, "value": point.value,
                 "timestamp": point.timestamp}) + "\n")
            if point.name == self.objective_name:
                # On disk at each step: a retry resumes from the steps written here.
                self._metrics_file.flush()
                self._pending.append(point)

    def stop(self, reason: FailureReason = EARLY_STOPPED) -> TrainingJobRecord:
        """Stops the job (early stopping, user stop); status Stopped, last metrics kept."""
        if self._record is None:
            code = self._stop_all()
            self._finish(TrialStatus.STOPPED, reason, exit_code=code)
        return self._record

    # -- hosts -----------------------------------------------------------------------------

    def _failed_elsewhere(self) -> HostExit | None:
        """A failed process other than algo-1's lead: on algo-1 or on another host."""
        for exit_ in [self._group.poll(include_lead=False)] + [
                h.poll() for h in self._started_others]:
            if exit_ is not None and exit_.exit_code != 0:
                return exit_
        return None

    def _stop_all(self) -> int | None:
        """Stops every host at once (SIGTERM everywhere, then one grace period)."""
        if self._ending_since is None:  # teardown time starts at the decision to stop
            self._ending_since = time.time()
        for other in self._started_others:
            other.terminate()
        code = None
        if self._group is not None:
            self._group.stop(STOP_GRACE_SECONDS)
            code = self._group.lead.poll()
        for other in self._started_others:
            other.stop(STOP_GRACE_SECONDS)
        return code

    def _reason(self, exit_: HostExit) -> FailureReason:
        reason = exit_.reason or FailureReason(FailureCategory.ALGORITHM_ERROR,
                                               f"exit code {exit_.exit_code}")
        if len(self.hosts) == 1 and exit_.log_name == f"{self.host}.log":
            return reason
        return reason.on_host(exit_.host, exit_.log_name)

    # -- ending ----------------------------------------------------------------------------

    def _finish_after_lead_exit(self) -> TrainingJobRecord:
        code = self._group.lead.wait()
        if code != 0:
            failed = self._group.poll()
            self._stop_all()
            return self._finish(TrialStatus.FAILED, self._reason(failed), exit_code=code)
        # The master is done: the other processes get a grace period to end on their own.
        until = min(self._deadline, time.time() + OTHER_HOSTS_GRACE_SECONDS)
        while time.time() < until:
            failed = self._failed_elsewhere()
            if failed is not None:
                self._stop_all()
                return self._finish(TrialStatus.FAILED, self._reason(failed),
                                    exit_code=failed.exit_code)
            if self._group.poll() is not None and all(
                    h.poll() is not None for h in self._started_others):
                break
            time.sleep(0.1)
        self._stop_all()
        missing = next((self.parser.series[name] for name in self.objective_names
                        if not self.parser.series[name].points), None)
        if missing is not None:
            pushed = self._pushed.describe() if missing.regex is None or \
                self._pushed.lines_read else None
            return self._finish(TrialStatus.FAILED, never_matched(
                missing.name, missing.regex, "the job's output",
                list(self._group.lead.last_lines), pushed), exit_code=code)
        archive = pack_model(self.base_dir / "model", self.trial_dir / MODEL_ARCHIVE)
        return self._finish(TrialStatus.COMPLETED, None, exit_code=code,
                            model_artifact=str(archive))

    def _finish(self, status: TrialStatus, reason: FailureReason | None,
                exit_code: int | None, model_artifact: str | None = None) -> TrainingJobRecord:
        end = time.time()
        if self._group is not None:
            self._group.close()
        if self._network is not None:
            self._network.remove()
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        series = self.parser.series[self.objective_name]
        gpus = [list(self.gpu_ids)] + [list(h.gpu_ids) for h in self.other_hosts]
        self._record = TrainingJobRecord(
            trial_number=self.assignment.trial_number,
            training_job_name=self.assignment.training_job_name,
            hyperparameters=dict(self.assignment.hyperparameters),
            status=status,
            failure=reason,
            objective_value=series.final if status is not TrialStatus.FAILED else None,
            final_metrics=self.parser.final_values(),
            objective_steps=len(series.points),
            start_time=self.start_time or end,
            end_time=end,
            exit_code=exit_code,
            log_path=str(self.log_path),
            model_artifact=model_artifact,
            hosts=list(self.hosts),
            num_cpus=self.num_cpus,
            gpu_ids=gpus[0] if len(self.hosts) == 1 else [
                f"{host}:{gpu}" for host, ids in zip(self.hosts, gpus) for gpu in ids],
            queue_wait_seconds=_seconds(self.assignment.suggested_at, self._start_called),
            launch_seconds=_round(self._launch_seconds),
            teardown_seconds=_seconds(self._ending_since, time.time()),
            resumed_from_step=self.resumed_from_step,
        )
        return self._record


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _seconds(since: float | None, until: float) -> float | None:
    return _round(max(0.0, until - since)) if since and until else None
