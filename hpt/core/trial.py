"""The vocabulary of a training job, defined once: its status, its failure reason, its record
(one row of the experiment table), and the keys of the results a trial hands Ray Tune.

Pure data: no Ray, no processes. Every runtime (local, docker, SageMaker), the Tune adapter,
the journal, resume and the reports speak these names. The journal stores a record as
`TrainingJobRecord.to_json()` and a reason as its text, so folders written by earlier
releases load as they are (`FailureReason.parse` reads a reason back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from hpt.core.words import shorten


class TrialStatus(str, Enum):
    """A training job's status, SageMaker's names (`TrainingJobStatus`)."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"

    # A status is its name everywhere: "Completed" in f-strings, JSON and prints, and as a
    # dict key or a pandas value it is the string (Python 3.10's Enum hashes the member name).
    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


ENDED = (TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.STOPPED)

# Keys of the result dicts a trial reports to Tune (and the schedulers, stoppers and the
# journal callback read).
OBJECTIVE = "objective_value"  # the objective's latest value: the record's own name (schema.Key)
OBJECTIVE_STEP = "objective_step"  # how many objective values so far: the time axis
STATUS = "hpt_status"  # present only in the last result: the job ended with this status
RECORD = "hpt_record"  # with STATUS: the job's TrainingJobRecord.to_json()
PLACEMENT = "hpt_placement"  # where the job runs, for the live view: "node-ip GPU 0,1"
# With several objectives: {metric: latest value} of each, when the first one reported
OBJECTIVES = "hpt_objectives"


def point_result(value: float, step: int, placement: str | None,
                 objectives: dict[str, float] | None = None) -> dict:
    """The result an engine's schedulers, stoppers and searcher see for an objective data
    point of a running job (`objectives`: every objective's latest value, with several)."""
    result = {OBJECTIVE: value, OBJECTIVE_STEP: step, PLACEMENT: placement}
    if objectives:
        result[OBJECTIVES] = dict(objectives)
    return result


def final_result(record) -> dict:
    """The result they see for the job's end (a TrainingJobRecord); `done` ends the trial."""
    result = {OBJECTIVE_STEP: record.objective_steps, STATUS: str(record.status),
              RECORD: record.to_json(), "done": True}
    if record.objective_value is not None:
        result[OBJECTIVE] = record.objective_value
    return result


def final_metrics(result: dict) -> dict[str, float]:
    """The job's final metric values from its last result. Tune hands searchers the result
    flattened (`hpt_record/final_metrics/<metric>` keys); a nested one is read as it is."""
    nested = result.get(RECORD)
    if isinstance(nested, dict):
        return dict(nested.get("final_metrics") or {})
    prefix = f"{RECORD}/final_metrics/"
    return {key[len(prefix):]: value for key, value in result.items() if key.startswith(prefix)}


def latest_objectives(result: dict) -> dict[str, float]:
    """Every objective's latest value from a point's result (point_result), nested or as
    Tune hands it to its schedulers, flattened (`hpt_objectives/<metric>` keys)."""
    nested = result.get(OBJECTIVES)
    if isinstance(nested, dict):
        return dict(nested)
    prefix = f"{OBJECTIVES}/"
    return {key[len(prefix):]: value for key, value in result.items() if key.startswith(prefix)}


# Retries of a training job whose host (or its Ray actor) was lost, never of the script's
# own failure: the same on every controller.
MAX_RETRIES = 2

# SageMaker's FailureReason is at most 1024 characters; so is every reason hpt writes.
MAX_REASON_CHARS = 1024


class FailureCategory(str, Enum):
    """Why a training job did not complete: SageMaker's categories, and hpt's stops."""

    ALGORITHM_ERROR = "AlgorithmError"  # the script failed (exit code, signal, failure file)
    CLIENT_ERROR = "ClientError"  # its input or environment (a tree that cannot be written)
    INTERNAL_SERVER_ERROR = "InternalServerError"  # hpt's or Ray's own failure
    MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
    OBJECTIVE_METRIC_NEVER_MATCHED = "ObjectiveMetricNeverMatched"
    LOST = "Lost"  # a host or its Ray actor was lost: the tuning job retries it
    EARLY_STOPPED = "EarlyStopped"  # Stopped by the early-stopping rule
    JOB_ENDED = "JobEnded"  # Stopped because the tuning job ended: runs again on --resume
    STOP_REQUESTED = "StopRequested"  # Stopped by a request for this one training job
    PAUSED = "Paused"  # promotion mode: ended at its rung's budget, may be promoted (resumed)

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


# Reasons of the two stops, as the journal has always written them.
_EARLY_STOPPED_TEXT = "Stopped by early stopping"
_JOB_ENDED_TEXT = "Stopped: the tuning job ended"
_PREFIXED = re.compile(r"^(?:(?P<host>algo-\d+) \((?P<log>[^)]*)\): )?"
                       r"(?P<category>[A-Za-z]+): (?P<message>.*)$", re.S)


@dataclass(frozen=True)
class FailureReason:
    """A typed reason; `text()` is what the table's FailureReason column shows."""

    category: FailureCategory
    message: str
    # Lines quoted after the message (a stderr tail, the last log lines): when the reason is
    # too long their beginning goes, because their end usually holds the error.
    details: str = ""
    host: str | None = None  # set when the failing process is not algo-1's (or on a host)
    log: str | None = None  # that process's log file name
    verbatim: bool = False  # the script's own words (its failure file): shown as written

    @property
    def retryable(self) -> bool:
        """hpt's or the machine's failure, which the tuning job runs again; never the
        script's own."""
        return self.category is FailureCategory.LOST

    def text(self) -> str:
        if self.category is FailureCategory.EARLY_STOPPED:
            head = _EARLY_STOPPED_TEXT
        elif self.category is FailureCategory.JOB_ENDED:
            head = f"{_JOB_ENDED_TEXT} ({self.message})"
        elif self.verbatim:
            head = self.message
        else:
            # A lost host reads as SageMaker would say it: an internal error.
            shown = FailureCategory.INTERNAL_SERVER_ERROR if self.retryable else self.category
            head = f"{shown}: {self.message}"
        if self.host:
            head = f"{self.host} ({self.log}): {head}"
        if not self.details:
            return head[:MAX_REASON_CHARS]
        room = MAX_REASON_CHARS - len(head) - 1
        if room <= 3:
            return head[:MAX_REASON_CHARS]
        details = self.details if len(self.details) <= room else \
            "..." + self.details[-(room - 3):]
        return f"{head}\n{details}"

    def on_host(self, host: str, log: str) -> FailureReason:
        """The same reason, said of a process other than algo-1's lead."""
        return FailureReason(self.category, self.message, self.details, host, log,
                             self.verbatim)

    @classmethod
    def parse(cls, text: str | None) -> FailureReason | None:
        """A reason read back from the journal's text (what `text()` wrote, in any release)."""
        if not text:
            return None
        if text.startswith(_EARLY_STOPPED_TEXT):
            return cls(FailureCategory.EARLY_STOPPED, "")
        if text.startswith(_JOB_ENDED_TEXT):
            inner = text[len(_JOB_ENDED_TEXT):].strip()
            return cls(FailureCategory.JOB_ENDED, inner[1:-1] if inner.startswith("(") else inner)
        found = _PREFIXED.match(text)
        known = {c.value for c in FailureCategory}
        if found is None or found["category"] not in known:
            return cls(FailureCategory.ALGORITHM_ERROR, text, verbatim=True)
        message, _, details = found["message"].partition("\n")
        return cls(FailureCategory(found["category"]), message, details, found["host"],
                   found["log"])


def job_ended(end_reason: str) -> FailureReason:
    """The reason of a training job that was stopped because its tuning job ended."""
    return FailureReason(FailureCategory.JOB_ENDED, end_reason)


EARLY_STOPPED = FailureReason(FailureCategory.EARLY_STOPPED, "")


@dataclass
class TrainingJobRecord:
    """The final state of a training job: one row of the experiment table. Every runtime
    builds it, and the Tune adapter builds it for a job that ended without one
    (`TrainingJobRecord.ended`); the journal stores `to_json()`."""

    trial_number: int
    training_job_name: str
    hyperparameters: dict[str, Any]
    status: TrialStatus
    failure: FailureReason | None
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
    # hpt's own cost around the script: proposed -> job start, job start -> processes
    # running (contract, tree, spawn), script ended -> job record written (model packed).
    queue_wait_seconds: float | None = None
    launch_seconds: float | None = None
    teardown_seconds: float | None = None
    # The objective step its checkpoint carried it to (hpt/experiment/checkpoints.py): the
    # attempt resumed there; None: it started from scratch.
    resumed_from_step: int | None = None

    @property
    def failure_reason(self) -> str | None:
        return self.failure.text() if self.failure is not None else None

    @property
    def infrastructure_failure(self) -> bool:
        """A lost host: retried by the tuning job."""
        return self.failure is not None and self.failure.retryable

    def to_json(self) -> dict[str, Any]:
        """The journal's form (the same keys in every release)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "failure"}
        data["status"] = str(self.status)
        data["failure_reason"] = self.failure_reason
        data["infrastructure_failure"] = self.infrastructure_failure
        return data

    @classmethod
    def ended(cls, *, trial_number: int, training_job_name: str,
              hyperparameters: dict[str, Any], status: TrialStatus, failure: FailureReason,
              objective_value: float | None, objective_metric: str, objective_steps: int,
              start_time: float, end_time: float, log_path: str, hosts: list[str],
              gpu_ids: list[str] | None = None) -> TrainingJobRecord:
        """The record of a job that ended without its runtime's own record: stopped by
        Tune (early stopping, the end of the tuning job), its actor failed, or found
        unfinished in the journal. Its last objective value is all that is known."""
        return cls(trial_number=trial_number, training_job_name=training_job_name,
                   hyperparameters=hyperparameters, status=status, failure=failure,
                   objective_value=objective_value if status is TrialStatus.STOPPED else None,
                   final_metrics={objective_metric: objective_value}
                   if objective_value is not None else {},
                   objective_steps=objective_steps, start_time=start_time, end_time=end_time,
                   exit_code=None, log_path=log_path, model_artifact=None, hosts=hosts,
                   gpu_ids=gpu_ids or [])


def never_matched(metric: str, regex: str | None, where: str, last_lines: list[str],
                  pushed: str | None = None) -> FailureReason:
    """ObjectiveMetricNeverMatched, quoting the last few log lines (each shortened, so that
    all of them fit in a reason); `pushed`: what the job's metrics file gave."""
    lines = "\n".join(shorten(line, 150) for line in last_lines[-5:]) or \
        "(the job printed nothing)"
    how = (f"never matched its regex {regex!r} in {where}" if regex is not None else
           "has no regex and was never written to the metrics file")
    if pushed:
        how += f" ({pushed})"
    return FailureReason(FailureCategory.OBJECTIVE_METRIC_NEVER_MATCHED,
                         f"the objective metric {metric!r} {how}; last log lines:", lines)
