"""What a trial's thread tells the local controller's loop (hpt/controller/local_controller.py),
one dataclass per kind of event: the loop owns every decision, the threads only report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpt.core.trial import TrainingJobRecord


@dataclass(frozen=True)
class TrialEvent:
    trial: Any  # the local controller's Trial


@dataclass(frozen=True)
class PointReported(TrialEvent):
    """An objective data point (hpt.core.trial.point_result); the job waits to be judged."""

    result: dict[str, Any]


@dataclass(frozen=True)
class JobEnded(TrialEvent):
    """The job ended on its own: its runtime's record (a lost host says so in it)."""

    record: TrainingJobRecord


@dataclass(frozen=True)
class JobStopped(TrialEvent):
    """The job stopped as the controller asked (early stopping, the tuning job's end)."""

    record: TrainingJobRecord


@dataclass(frozen=True)
class DriveFailed(TrialEvent):
    """hpt's own failure driving the job (not the script's): the trial is lost."""

    error: str
