"""The experiment folder and its durable, append-only journal of trial events.

Layout of `<experiments-dir>/<name>/`:
    spec.json           the frozen, validated spec the job was launched with
    journal.jsonl       one JSON event per line, written at once, on disk within 50 ms
    optuna.journal      the Optuna study (journal storage; `optuna-dashboard` opens it)
    table.parquet/.csv  the experiment table, rebuilt from the journal
    mlflow.json         with MLflow tracking: the runs made for it (hpt/tracking)
    <training-job>/     one folder per trial: its /opt/ml tree(s), logs, metrics, model.tar.gz
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from hpt.core.schema import File
from hpt.experiment.checkpoints import carry_checkpoints, latest_with_checkpoint
from hpt.experiment.durability import SYNCER

JOURNAL = File.JOURNAL
SPEC = File.SPEC
STUDY = File.STUDY
# `hpt stop NAME` writes this file into the experiment folder; the launcher watches for it.
STOP_FILE = File.STOP_REQUESTED


def training_job_name(tuning_job: str, trial_number: int, hyperparameters: dict[str, Any],
                      seed: int) -> str:
    """SageMaker-style `<tuning-job>-<NNN>-<8 hex>`; the hex is a digest, so names are
    reproducible."""
    payload = json.dumps([tuning_job, trial_number, seed, hyperparameters], sort_keys=True,
                         default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
    return f"{tuning_job}-{trial_number:03d}-{digest}"


class ExperimentStore:
    """Owns one experiment folder. Single writer: the launching process."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._journal = None
        self._sealed = False  # the launcher's last event is written: nothing after it

    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL

    @property
    def study_path(self) -> Path:
        return self.root / STUDY

    def exists(self) -> bool:
        return (self.root / SPEC).is_file()

    def create(self, frozen_spec: dict[str, Any]) -> None:
        from hpt.core.redaction import redact_spec

        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / SPEC, redact_spec(frozen_spec))  # no secret on disk

    def read_spec(self) -> dict[str, Any]:
        return json.loads((self.root / SPEC).read_text())

    def trial_dir(self, training_job_name: str) -> Path:
        path = self.root / training_job_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def append(self, event: str, durable: bool = True, **fields: Any) -> dict[str, Any]:
        """Appends one event: written to the OS at once (a killed launcher loses nothing),
        on disk when `durable` -- every event but a running trial's progress -- within
        durability.SYNC_LAG_SECONDS (group commit)."""
        record = {"event": event, "time": time.time(), **fields}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            if self._sealed:
                return record
            if self._journal is None:
                self._journal = open(self.journal_path, "ab", buffering=0)
                if _ends_torn(self.journal_path):
                    # A crash mid-write left half a line: end it, so this event stands alone.
                    self._journal.write(b"\n")
            self._journal.write(line)
            if durable:
                SYNCER.soon(self._journal.fileno())
        return record

    def seal(self, event: str, **fields: Any) -> None:
        """Appends a last event, on disk when this returns; events appended later (by threads
        of a process that is about to end) are not written."""
        self.append(event, **fields)
        with self._lock:
            self._sealed = True
            if self._journal is not None:
                SYNCER.now(self._journal.fileno())

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                SYNCER.now(self._journal.fileno())
                self._journal.close()
                self._journal = None


def _ends_torn(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def attempt_dir(root: Path, training_job_name: str, carry_from: Path | None = None) -> Path:
    """The training job's folder, ready for an attempt: created, an earlier attempt's files
    (a retry, a resumed job's re-run) moved aside, and the checkpoints the latest of them
    left carried into the new one (hpt/experiment/checkpoints.py). `carry_from`: a snapshot
    to start from instead (the Ray Tune checkpoint a paused or exploiting trial restores)."""
    trial_dir = Path(root) / training_job_name
    trial_dir.mkdir(parents=True, exist_ok=True)
    archived = archive_attempt(trial_dir)
    earlier = carry_from if carry_from is not None else \
        latest_with_checkpoint(attempts(trial_dir)) if archived is not None else None
    if earlier is not None:
        carry_checkpoints(earlier, trial_dir)
    return trial_dir


def request_training_job_stop(root: Path, training_job_name: str, who: str) -> Path:
    """Asks one running training job of the tuning job in `root` to stop (StopTrainingJob,
    `hpt stop NAME --training-job JOB`): a file in its folder, which the job's own core looks
    for (runtime/observed_job.py). It ends Stopped and its tuning job goes on. `who` (one
    line) becomes its FailureReason's message."""
    path = Path(root) / training_job_name / STOP_FILE
    path.write_text(f"{who} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    return path


def attempts(trial_dir: Path) -> list[Path]:
    """The archived attempts of a training job, oldest first."""
    found = [p for p in Path(trial_dir).glob("attempt-*") if p.name[8:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[8:]))


def archive_attempt(trial_dir: Path) -> Path | None:
    """Before a training job runs again (retry, resume), its earlier files move to
    `attempt-<k>/` inside its folder: nothing of the earlier attempt is lost. A stop asked
    for the job (StopTrainingJob) stays where the next attempt looks for it: a retry does not
    undo it."""
    earlier = [p for p in Path(trial_dir).iterdir()
               if not p.name.startswith("attempt-") and p.name != STOP_FILE] \
        if Path(trial_dir).is_dir() else []
    if not earlier:
        return None
    k = 1 + sum(1 for p in Path(trial_dir).glob("attempt-*"))
    target = Path(trial_dir) / f"attempt-{k}"
    target.mkdir()
    for path in earlier:
        os.replace(path, target / path.name)
    return target


def read_journal(path: Path, skipped: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """Yields the journal's events; a torn line (crash mid-write) is skipped, its 1-based
    line number appended to `skipped` when given."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield json.loads(raw)
            except ValueError:
                if skipped is not None:
                    skipped.append(number)


def unreadable_lines(path: Path) -> list[int]:
    """Line numbers (1-based) of journal lines that are not JSON: torn by a crash mid-write."""
    skipped: list[int] = []
    for _ in read_journal(path, skipped):
        pass
    return skipped


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
