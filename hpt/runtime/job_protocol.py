"""What a runtime is: the protocol of a training job, the types every runtime shares, and the
entry each runtime registers (`hpt/runtime/runtimes/`).

A training job is driven the same way wherever it runs (local processes, containers, a
SageMaker training job): `start()`, then `advance()` until it returns the record, `stop()`
at any time. The Tune adapter and `hpt rerun` know only this protocol; a runtime's entry
says what else differs: its checks of a space, the Ray resources of one trial, what is
staged before the first trial (downloads, uploads), and how one job is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from hpt.core.metric_parser import MetricPoint
from hpt.core.schema import Key
from hpt.core.trial import EARLY_STOPPED, FailureReason, TrainingJobRecord


@dataclass
class TrialAssignment:
    """What the search strategy decided for one trial."""

    trial_number: int
    training_job_name: str
    hyperparameters: dict[str, Any]  # tuned values only, decoded types
    suggested_at: float | None = None  # when the search strategy proposed it
    # What the scheduler sets on top (promotion mode: the rung's budget, `{"epochs": 3}`).
    budget: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, config: dict[str, Any]) -> "TrialAssignment":
        """From a trial's config as the searcher proposes it (both controllers)."""
        return cls(config[Key.TRIAL_NUMBER], config[Key.TRAINING_JOB_NAME],
                   dict(config["hyperparameters"]), config.get("suggested_at"),
                   dict(config.get("budget") or {}))

    def job_hyperparameters(self, static: dict[str, Any]) -> dict[str, Any]:
        """What the training job gets: the static ones, the tuned ones, the budget."""
        return {**static, **self.hyperparameters, **self.budget}


@dataclass(frozen=True)
class Progress:
    """An objective data point (`point`), the end of the job (`record`), or neither (nothing
    within the wait `advance` was given)."""

    point: MetricPoint | None = None
    record: TrainingJobRecord | None = None
    # With several objectives: each one's latest value when `point` (the first's) was read
    objectives: dict[str, float] | None = None


class TrainingJob(Protocol):
    """One trial as a training job, on any runtime."""

    assignment: TrialAssignment

    def start(self) -> None:
        """Starts it; a job that cannot start has its (Failed) record at the first advance."""

    def advance(self, wait_seconds: float | None = None) -> Progress:
        """Blocks until the next objective data point or the job's end (its record); with
        `wait_seconds`, an empty Progress once that long passed without either (so that
        whoever drives the job can act on a stop in between)."""

    def stop(self, reason: FailureReason = EARLY_STOPPED) -> TrainingJobRecord:
        """Stops it (status Stopped, last metrics kept); its record once it already ended."""


@dataclass(frozen=True)
class Slot:
    """Where the Tune trial that runs a job sits: its node and the GPUs Ray gave it, and the
    hosts algo-2..N (Ray actors on the trial's other bundles) when the runtime uses them."""

    ip: str = "127.0.0.1"
    num_cpus: int = 1
    gpu_ids: tuple[str, ...] = ()
    other_hosts: tuple[Any, ...] = ()  # runtime/ray_hosts.RayHost


@dataclass(frozen=True)
class JobContext:
    """Everything a runtime's entry gets to build one training job."""

    spec: Any  # the Spec the trials run with (staged: s3:// channels downloaded, ...)
    assignment: TrialAssignment
    trial_dir: Path
    settings: dict[str, Any]  # what the runtime's staging produced (JSON-able, sent to Ray)
    slot: Slot = Slot()


@dataclass(frozen=True)
class Staged:
    """What staging before the first trial gives the tuning job."""

    trial_spec: Any  # the spec the trials run with
    settings: dict[str, Any] = field(default_factory=dict)  # handed to every job of the runtime
    events: tuple[dict[str, Any], ...] = ()  # journal events to append (channel_downloaded ...)


@dataclass(frozen=True)
class StageContext:
    """What staging may use: the job's folder, an S3 client when the space uses S3, and the
    launch options (`container_engine`, `sagemaker_role`)."""

    spec: Any
    root: Path
    s3: Any
    options: dict[str, Any]


@dataclass(frozen=True)
class Runtime:
    """One runtime's registration (hpt/runtime/runtimes/<name>.py)."""

    name: str
    # Rules of a space for this runtime, on its validated sections: [(field path, message)].
    problems: Callable[[dict[str, Any]], list[tuple[tuple, str]]]
    # The Ray bundles one trial reserves (a placement group: all at once).
    bundles: Callable[[Any], list[dict[str, float]]]
    stage: Callable[[StageContext], Staged]
    job: Callable[[JobContext], TrainingJob]
    # Where a running job is, for the live view ("10.0.0.5 GPU 0,1", "SageMaker ml.p3.2xlarge").
    placement: Callable[[JobContext], str]
    host_actors: bool = True  # algo-2..N run in Ray actors on the trial's other bundles
    hpt_uploads_artifacts: bool = True  # `output: s3://`: hpt uploads model.tar.gz itself
    forks_trials: bool = True  # trainer.warm_start applies (trials are local processes)
    bundle_strategy: str = "PACK"  # how Ray places a trial's bundles (hosts) on nodes
