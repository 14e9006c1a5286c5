"""One training job (one trial) on the local runtime: contract -> tree -> process -> record.

Knows nothing about Ray: the Tune trainable drives it through `advance()`, which returns
each objective data point as it streams and, last, the job's final record.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpt.metrics import MetricParser, MetricPoint
from hpt.runtime.contract import TrialContractInput, render_host_contract
from hpt.runtime.local import HostProcess, failure_reason, pack_model
from hpt.runtime.tree import materialize

# How long a stop waits between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 10.0
# Variables of the launcher's own environment that must not leak into a trial's contract.
_CONTRACT_PREFIXES = ("SM_", "SAGEMAKER_")


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class TrialAssignment:
    """What the search strategy decided for one trial."""

    trial_number: int
    training_job_name: str
    hyperparameters: dict[str, Any]  # tuned values only, decoded types


@dataclass
class TrainingJobRecord:
    """The final state of a training job: one row of the experiment table."""

    trial_number: int
    training_job_name: str
    hyperparameters: dict[str, Any]
    status: str  # Completed | Failed | Stopped
    failure_reason: str | None
    objective_value: float | None
    final_metrics: dict[str, float]
    objective_steps: int
    start_time: float
    end_time: float
    exit_code: int | None
    log_path: str
    model_artifact: str | None
    hosts: list[str] = field(default_factory=list)
    num_cpus: int = 1
    gpu_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Progress:
    """An objective data point (`point`) or the end of the job (`record`)."""

    point: MetricPoint | None = None
    record: TrainingJobRecord | None = None


class LocalTrainingJob:
    """Runs a single-host training job as a local process group."""

    def __init__(self, spec, assignment: TrialAssignment, trial_dir: Path,
                 num_cpus: int = 1, gpu_ids: tuple[str, ...] = (),
                 python: str = sys.executable):
        self.spec = spec
        self.assignment = assignment
        self.trial_dir = Path(trial_dir)
        self.num_cpus = num_cpus
        self.gpu_ids = tuple(gpu_ids)
        self.python = python
        self.host = "algo-1"
        self.base_dir = self.trial_dir / self.host
        self.log_path = self.trial_dir / f"{self.host}.log"
        definitions = [(m.name, m.regex) for m in spec.metric_definitions]
        self.parser = MetricParser(definitions)
        self.objective_name = spec.objective.metric
        self._process: HostProcess | None = None
        self._metrics_file = None
        self._deadline = 0.0
        self._record: TrainingJobRecord | None = None
        self._pending: list[MetricPoint] = []
        self.start_time = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        spec = self.spec
        hps = {**spec.static_hyperparameters, **self.assignment.hyperparameters}
        contract_input = TrialContractInput(
            job_name=self.assignment.training_job_name,
            entry_point=spec.trainer.entry_point,
            hyperparameters=hps,
            channels={name: ch.distribution for name, ch in spec.channels.items()},
            hosts=(self.host,),
            objective_metric=spec.objective.metric,
            instance_type=spec.trainer.instance_type,
            environment=dict(spec.trainer.environment),
        )
        contract = render_host_contract(
            contract_input, host=self.host, base_dir=str(self.base_dir),
            num_cpus=self.num_cpus, num_gpus=len(self.gpu_ids), gpu_ids=self.gpu_ids,
            python=self.python,
        )
        materialize(contract, spec.trainer.source_dir,
                    {name: Path(ch.uri) for name, ch in spec.channels.items()})
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTRACT_PREFIXES)}
        env.update({"PYTHONUNBUFFERED": "TRUE", "OMP_NUM_THREADS": str(self.num_cpus)})
        env.update(contract.env)
        self._metrics_file = open(self.trial_dir / "metrics.jsonl", "a", buffering=1 << 16)
        self._process = HostProcess(list(contract.argv), env, contract.cwd, self.log_path)
        self.start_time = time.time()
        self._deadline = self.start_time + spec.trainer.max_runtime_seconds
        try:
            self._process.start()
        except OSError as exc:  # entry point not executable, interpreter missing, ...
            self._finish("Failed", f"ClientError: could not start {contract.argv[0]!r}: {exc}",
                         exit_code=None)

    def advance(self, poll_seconds: float = 0.5) -> Progress:
        """Blocks until the next objective data point or the end of the job."""
        if self._record is not None:
            return Progress(record=self._record)
        while True:
            if self._pending:
                return Progress(point=self._pending.pop(0))
            if time.time() >= self._deadline:
                self._process.stop(STOP_GRACE_SECONDS)
                limit = self.spec.trainer.max_runtime_seconds
                return Progress(record=self._finish(
                    "Failed", f"MaxRuntimeExceeded: the training job ran longer than "
                              f"trainer.max_runtime_seconds={limit} and was stopped",
                    exit_code=self._process.poll()))
            try:
                line = self._process.next_line(timeout=min(poll_seconds, self._deadline - time.time()))
            except EOFError:
                return Progress(record=self._finish_after_exit())
            if line is None:
                continue
            for point in self.parser.feed(line.text, line.timestamp):
                self._metrics_file.write(json.dumps(
                    {"metric": point.name, "step": point.step, "value": point.value,
                     "timestamp": point.timestamp}) + "\n")
                if point.name == self.objective_name:
                    self._pending.append(point)

    def stop(self, reason: str = "Stopped by the tuning job") -> TrainingJobRecord:
        """Stops the job (early stopping, user stop); status Stopped, last metrics kept."""
        if self._record is None:
            code = self._process.stop(STOP_GRACE_SECONDS) if self._process else None
            self._finish("Stopped", reason, exit_code=code)
        return self._record

    # -- ending ----------------------------------------------------------------------------

    def _finish_after_exit(self) -> TrainingJobRecord:
        code = self._process.wait()
        if code != 0:
            reason = failure_reason(code, self.base_dir / "output" / "failure",
                                    list(self._process.stderr_tail))
            return self._finish("Failed", reason, exit_code=code)
        missing = self.parser.series[self.objective_name]
        if not missing.points:
            lines = "\n".join(list(self._process.last_lines)[-10:]) or "(the job printed nothing)"
            reason = (f"ObjectiveMetricNeverMatched: the objective metric {missing.name!r} never "
                      f"matched its regex {missing.regex!r} in the job's output; last log lines:\n"
                      f"{lines}")
            return self._finish("Failed", reason[:1024], exit_code=code)
        archive = pack_model(self.base_dir / "model", self.trial_dir / "model.tar.gz")
        return self._finish("Completed", None, exit_code=code, model_artifact=str(archive))

    def _finish(self, status: str, reason: str | None, exit_code: int | None,
                model_artifact: str | None = None) -> TrainingJobRecord:
        end = time.time()
        if self._process is not None:
            self._process.close()
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        series = self.parser.series[self.objective_name]
        self._record = TrainingJobRecord(
            trial_number=self.assignment.trial_number,
            training_job_name=self.assignment.training_job_name,
            hyperparameters=dict(self.assignment.hyperparameters),
            status=status,
            failure_reason=reason,
            objective_value=series.final if status != "Failed" else None,
            final_metrics=self.parser.final_values(),
            objective_steps=len(series.points),
            start_time=self.start_time or end,
            end_time=end,
            exit_code=exit_code,
            log_path=str(self.log_path),
            model_artifact=model_artifact,
            hosts=[self.host],
            num_cpus=self.num_cpus,
            gpu_ids=list(self.gpu_ids),
        )
        return self._record
