"""What `hpt api` keeps of a tuning job it was asked for (`<experiments>/.hpt-api/tuning-jobs/
<name>/request.json`), the jobs it knows that have no experiment folder yet, and the training
and transform jobs it ran on their own (`.hpt-api/training-jobs/<name>/`,
`.hpt-api/transform-jobs/<name>/`: request.json, and state.json, which their runners write).

It sits with the experiment's own files because `hpt ls`, `hpt status` and
`hpt.list_experiments` read it beside the experiments; the server (hpt/api/records.py) writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpt.core.schema import File

API_DIR = ".hpt-api"
REQUEST = File.API_REQUEST
TRAINING_JOBS_DIR = "training-jobs"
TRANSFORM_JOBS_DIR = "transform-jobs"
STATE = "state.json"  # a training or transform job's runner writes it
TRANSFORM_STATUS = "TransformJobStatus"  # a transform job's state.json: SageMaker's fields
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class TuningRecord:
    """What the server keeps of a tuning job it created (request.json in its folder)."""
    request: dict[str, Any]
    creation_time: float
    region: str = DEFAULT_REGION
    stop_requested: float | None = None
    failure: str | None = None  # the job could not start (e.g. its code did not download)
    # A job `hpt launch` started, which the API shows but does not control (never saved)
    launched_by_hpt: bool = False

    @property
    def name(self) -> str:
        return self.request["HyperParameterTuningJobName"]

    def to_json(self) -> dict[str, Any]:
        return {"Request": self.request, "CreationTime": self.creation_time,
                "Region": self.region, "StopRequested": self.stop_requested,
                "Failure": self.failure}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TuningRecord:
        return cls(data["Request"], data["CreationTime"], data.get("Region", DEFAULT_REGION),
                   data.get("StopRequested"), data.get("Failure"))


def unlaunched_tuning_jobs(experiments: Path) -> list[dict[str, Any]]:
    """The tuning jobs hpt api was asked for that have no experiment folder: failed or
    stopped before their launcher made one, or not started yet. `hpt ls` and `hpt status`
    show them with the server's reason. Reads only (creates no folder)."""
    from hpt.experiment.job_state import FAILED, IN_PROGRESS, STOPPED

    experiments = Path(experiments)
    found = []
    for path in sorted((experiments / API_DIR / "tuning-jobs").glob(f"*/{REQUEST}")):
        name = path.parent.name
        if (experiments / name / File.SPEC).is_file():
            continue
        try:
            record = TuningRecord.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            continue
        status = FAILED if record.failure else STOPPED if record.stop_requested else IN_PROGRESS
        found.append({"TuningJobName": name, "Status": str(status), "Failure": record.failure,
                      "Description": f"{status}: {record.failure}" if record.failure else
                      f"{status} (created through hpt api; its launcher has not started it)",
                      "CreationTime": record.creation_time,
                      "LauncherLog": str(path.parent / File.LAUNCHER_LOG)})
    return found


def jobs_on_their_own(experiments: Path) -> list[dict[str, Any]]:
    """The training and transform jobs hpt api ran on their own (no tuning job), oldest
    first: what `hpt ls` shows below the tuning jobs. Reads only."""
    from hpt.core.schema import Column, Key
    from hpt.experiment.job_state import IN_PROGRESS

    api = Path(experiments) / API_DIR
    found = []
    for kind, folder, status, reason, end in (
            ("TrainingJob", TRAINING_JOBS_DIR, Key.STATUS, Key.FAILURE_REASON, Key.END_TIME),
            ("TransformJob", TRANSFORM_JOBS_DIR, TRANSFORM_STATUS, Column.FAILURE_REASON,
             "TransformEndTime")):
        for path in sorted((api / folder).glob(f"*/{REQUEST}")):
            try:
                request = json.loads(path.read_text())
                state = json.loads((path.parent / STATE).read_text()) \
                    if (path.parent / STATE).is_file() else {}
            except (OSError, ValueError):
                continue
            found.append({"Kind": kind, "Name": path.parent.name,
                          "Status": str(state.get(status) or IN_PROGRESS),
                          "Reason": " ".join(str(state[reason]).split()) if state.get(reason)
                          else None, "CreationTime": request["CreationTime"],
                          "EndTime": state.get(end)})
    return sorted(found, key=lambda job: job["CreationTime"])
