"""Where `hpt api` keeps what it was asked to create, beside the experiments it runs.

    <experiments>/.hpt-api/tuning-jobs/<name>/request.json   the request, when, stop asked
                                              space.yaml     what hpt launches for it
                                              source/        the unpacked training code
                                              launcher.log   the launcher's output
    <experiments>/.hpt-api/<kind>/<name>.json                models, endpoint-configs,
                                                             endpoints (request + state)

Each file is written whole and renamed into place, so a server killed at any moment leaves
the previous or the next version, never a torn one; the tuning job itself is the hpt
experiment `<experiments>/<name>/` (`hpt ls`, `hpt status`, `hpt report` see it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from hpt.experiment.api_requests import API_DIR, REQUEST, TuningRecord
from hpt.experiment.store import write_json_atomic

KINDS = ("models", "endpoint-configs", "endpoints")


class ApiStore:
    def __init__(self, experiments: Path):
        self.experiments = Path(experiments).resolve()
        self.root = self.experiments / API_DIR
        self.root.mkdir(parents=True, exist_ok=True)

    # -- tuning jobs -------------------------------------------------------------------------

    def tuning_dir(self, name: str) -> Path:
        return self.root / "tuning-jobs" / name

    def experiment_dir(self, name: str) -> Path:
        return self.experiments / name

    def save_tuning(self, record: TuningRecord) -> None:
        folder = self.tuning_dir(record.name)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / REQUEST, record.to_json())

    def tuning(self, name: str) -> TuningRecord | None:
        path = self.tuning_dir(name) / REQUEST
        try:
            return TuningRecord.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            return None

    def tuning_names(self) -> list[str]:
        folder = self.root / "tuning-jobs"
        return sorted(p.parent.name for p in folder.glob(f"*/{REQUEST}")) if folder.is_dir() \
            else []

    def tunings(self) -> Iterator[TuningRecord]:
        for name in self.tuning_names():
            record = self.tuning(name)
            if record is not None:
                yield record

    # -- models, endpoint configs, endpoints -------------------------------------------------

    def _path(self, kind: str, name: str) -> Path:
        assert kind in KINDS, kind
        return self.root / kind / f"{name}.json"

    def save(self, kind: str, name: str, data: dict[str, Any]) -> None:
        path = self._path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, data)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(kind, name).read_text())
        except (OSError, ValueError):
            return None

    def delete(self, kind: str, name: str) -> None:
        self._path(kind, name).unlink(missing_ok=True)

    def all(self, kind: str) -> list[dict[str, Any]]:
        folder = self.root / kind
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return found
