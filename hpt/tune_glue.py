"""The Ray Tune side of a tuning job: the callback that journals every trial event, and the
stopper that ends the whole job (hpt stop, Ctrl-C, a completion criterion, the deadline).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from ray import tune

from hpt.dashboard_metrics import TuningJobMetrics
from hpt.experiment.job_state import INTERRUPTED, MAX_RUNTIME_EXCEEDED, STOP_REQUESTED
from hpt.experiment.store import ExperimentStore, read_journal
from hpt.experiment.table import build_table, trial_rows, write_table
from hpt.trial import (EARLY_STOPPED, OBJECTIVE, OBJECTIVE_STEP, PLACEMENT, RECORD, STATUS,
                       FailureCategory, FailureReason, TrainingJobRecord, TrialStatus,
                       job_ended)
from hpt.view import LaunchView

TABLE_REFRESH_SECONDS = 2.0


class JournalCallback(tune.Callback):
    """Tune callback: trial events -> journal, table, live view."""

    def __init__(self, store: ExperimentStore, spec, view: LaunchView, control=None,
                 artifacts=None):
        self.store = store
        self.spec = spec
        self.view = view
        self.control = control
        self.artifacts = artifacts  # the artifact uploader (output: s3://...), if any
        self.started: dict[str, float] = {}
        self.metrics = TuningJobMetrics(spec.name, spec.objective.type == "maximize")
        self._table_due = 0.0

    def __getstate__(self):
        # Tune pickles its config into tuner.pkl for Tuner.restore, which hpt never uses (hpt
        # resumes from its own journal); open files and the terminal are not part of that state.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("store", "view", "control", "metrics", "artifacts")}

    def on_trial_start(self, iteration, trials, trial, **info):
        cfg = trial.config
        name = cfg["training_job_name"]
        self.started[name] = time.time()
        trial_dir = self.store.root / name
        self.store.append("trial_started", trial_number=cfg["trial_number"],
                          training_job_name=name, hyperparameters=cfg["hyperparameters"],
                          log_path=str(trial_dir / "algo-1.log"))
        self.view.trial_started(name)
        self.metrics.started()
        if self.artifacts is not None:
            self.artifacts.started(name)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if STATUS in result or OBJECTIVE not in result:
            return
        name = trial.config["training_job_name"]
        self.store.append("trial_progress", durable=False, training_job_name=name,
                          value=result[OBJECTIVE], step=result.get(OBJECTIVE_STEP))
        self.view.trial_progress(name, result[OBJECTIVE], result.get(OBJECTIVE_STEP),
                                 result.get(PLACEMENT))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get(RECORD):
            self._ended(last[RECORD])
            return
        # Tune stopped it: early stopping, or the end of the whole tuning job.
        ending = self.control.end_reason if self.control is not None else None
        reason = job_ended(ending) if ending else EARLY_STOPPED
        self._ended(self._record_of(trial, last, TrialStatus.STOPPED, reason).to_json())

    def on_trial_recover(self, iteration, trials, trial, **info):
        # Tune runs the training job again (its host or actor was lost): say so, then the
        # next trial_started event begins the new attempt.
        error = _last_error_line(trial)
        name = trial.config["training_job_name"]
        self.store.append("trial_retried", training_job_name=name, error=str(error)[:1024])
        # Ray has just logged the lost actor's traceback: say in one line what hpt does.
        self.view.print(f"{name}: its Ray worker or host was lost ({str(error)[:200]}); "
                        f"running it again (an infrastructure retry, in the Retries column)")

    def on_trial_error(self, iteration, trials, trial, **info):
        # Its actor failed more often than the retries allow: hpt's failure, not the script's.
        reason = FailureReason(FailureCategory.INTERNAL_SERVER_ERROR, _last_error_line(trial))
        record = self._record_of(trial, trial.last_result or {}, TrialStatus.FAILED, reason)
        self._ended(record.to_json())

    def _record_of(self, trial, last: dict, status: TrialStatus,
                   reason: FailureReason) -> TrainingJobRecord:
        cfg = trial.config
        name = cfg["training_job_name"]
        return TrainingJobRecord.ended(
            trial_number=cfg["trial_number"], training_job_name=name,
            hyperparameters=cfg["hyperparameters"], status=status, failure=reason,
            objective_value=last.get(OBJECTIVE), objective_metric=self.spec.objective.metric,
            objective_steps=last.get(OBJECTIVE_STEP, 0),
            start_time=self.started.get(name, time.time()), end_time=time.time(),
            log_path=str(self.store.root / name / "algo-1.log"), hosts=_hosts(self.spec))

    def _ended(self, record: dict) -> None:
        self.metrics.ended(record["status"], record.get("objective_value"))
        self.store.append("trial_ended", training_job_name=record["training_job_name"],
                          record=record)
        if self.artifacts is not None:
            self.artifacts.ended(record)
        # The journal is the record (fsynced above); the table is a view of it, rebuilt at
        # most once per TABLE_REFRESH_SECONDS while trials stream (and always at the end).
        if time.time() >= self._table_due:
            rebuild_table(self.store, self.spec)
            self._table_due = time.time() + TABLE_REFRESH_SECONDS
        self.view.trial_ended(record["training_job_name"], record["status"],
                              record.get("objective_value"),
                              record["end_time"] - record["start_time"],
                              record.get("failure_reason"))


class ArtifactUploader:
    """`output: s3://...`: while a training job runs, its `output/intermediate/` and
    `checkpoints/` are synced every SYNC_SECONDS (changed files only); when it completes, its
    model.tar.gz (and output/data as output.tar.gz) is uploaded. All in background threads, so
    the tuning job never waits on S3; the journal records each upload (or why it failed) and
    close() waits for all of them."""

    SYNC_SECONDS = 10.0

    def __init__(self, output: str, store: ExperimentStore, view: LaunchView, client):
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.output, self.store, self.view, self.client = output, store, view, client
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hpt-upload")
        self.syncs: dict = {}  # running training job -> its FolderSync (runtime/channels.py)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                        name="hpt-s3-sync")
        self._syncer.start()

    def started(self, name: str) -> None:
        from hpt.runtime.channels import FolderSync

        with self._lock:
            self.syncs[name] = FolderSync(self.client, self.store.root / name / "algo-1",
                                          self.output, name)

    def ended(self, record: dict) -> None:
        with self._lock:
            sync = self.syncs.pop(record["training_job_name"], None)
        self.pool.submit(self._finish, record, sync)

    def _sync_loop(self) -> None:
        while not self._closing.wait(self.SYNC_SECONDS):
            with self._lock:
                syncs = list(self.syncs.values())
            for sync in syncs:
                self._sync(sync)

    def _sync(self, sync) -> None:
        try:
            sync.run()
        except Exception as exc:  # noqa: BLE001 - S3 errors of every kind: journaled, job goes on
            self.store.append("trial_upload_failed", training_job_name=sync.training_job,
                              reason=f"sync: {type(exc).__name__}: {exc}")

    def _finish(self, record: dict, sync) -> None:
        if sync is not None:
            self._sync(sync)  # the last checkpoints, whatever the status
        if record["status"] == TrialStatus.COMPLETED:
            self._upload(record)

    def _upload(self, record: dict) -> None:
        from hpt.runtime.channels import pack_output_data, upload_artifacts

        name = record["training_job_name"]
        trial_dir = self.store.root / name
        try:
            data = pack_output_data(trial_dir / "algo-1" / "output" / "data",
                                    trial_dir / "output.tar.gz")
            model = Path(record["model_artifact"]) if record.get("model_artifact") else None
            uris = upload_artifacts(self.client, self.output, name, model, data)
            self.store.append("trial_uploaded", training_job_name=name, uris=uris)
        except Exception as exc:  # noqa: BLE001 - S3 errors of every kind: recorded, job goes on
            reason = f"{type(exc).__name__}: {exc}"
            self.store.append("trial_upload_failed", training_job_name=name, reason=reason)
            self.view.print(f"{name}: upload to {self.output} failed: {reason}")

    def close(self) -> None:
        self._closing.set()
        self._syncer.join(timeout=self.SYNC_SECONDS + 5)
        self.pool.shutdown(wait=True)


def _last_error_line(trial) -> str:
    """The exception that ended a trial's actor, from Tune's error file (its last line)."""
    try:
        text = Path(trial.error_file).read_text(errors="replace").strip() if trial.error_file \
            else ""
    except OSError:
        text = ""
    return text.splitlines()[-1] if text else "the trial's Ray actor failed"


def _hosts(spec) -> list[str]:
    return [f"algo-{i + 1}" for i in range(spec.trainer.instance_count)]


def rebuild_table(store: ExperimentStore, spec):
    events = list(read_journal(store.journal_path))
    df = build_table(events, list(spec.hyperparameters), [m.name for m in spec.metric_definitions])
    write_table(df, store.root)
    return df


def close_unfinished(store: ExperimentStore, spec, end_reason: str) -> list[TrainingJobRecord]:
    """Trials the journal shows as started but never ended get a Stopped record: nothing
    silent. (They run again first when the job is resumed.) Returns those records."""
    closed = []
    for row in trial_rows(list(read_journal(store.journal_path))):
        if row["status"] == TrialStatus.IN_PROGRESS:
            record = TrainingJobRecord.ended(
                trial_number=row["trial_number"], training_job_name=row["training_job_name"],
                hyperparameters=row["hyperparameters"], status=TrialStatus.STOPPED,
                failure=job_ended(end_reason), objective_value=row.get("objective_value"),
                objective_metric=spec.objective.metric,
                objective_steps=row.get("objective_steps") or 0,
                start_time=row["start_time"], end_time=time.time(),
                log_path=row.get("log_path") or "", hosts=_hosts(spec))
            store.append("trial_ended", training_job_name=row["training_job_name"],
                         record=record.to_json())
            closed.append(record)
    return closed


class JobControl(tune.Stopper):
    """Ends the whole tuning job: `hpt stop` (a request file), Ctrl-C / SIGTERM, or a
    completion criterion (the wrapped stopper). `end_reason` says which."""

    def __init__(self, stop_file: Path, criteria: tune.Stopper | None = None,
                 deadline: float | None = None):
        self.stop_file = stop_file
        self.criteria = criteria
        self.deadline = deadline  # the tuning job's max_runtime_seconds, as a time.time()
        self.end_reason: str | None = None

    def __getstate__(self):  # pickled into tuner.pkl like the callback; see JournalCallback
        return {"end_reason": self.end_reason}

    def request_stop(self, reason: str) -> None:
        self.end_reason = self.end_reason or reason

    def __call__(self, trial_id, result) -> bool:
        if self.criteria is not None and self.criteria(trial_id, result):
            self.request_stop(getattr(self.criteria, "reason", None) or "CompletionCriteriaMet")
        return False

    def stop_all(self) -> bool:
        if self.end_reason is None and self.deadline is not None and time.time() >= self.deadline:
            self.request_stop(MAX_RUNTIME_EXCEEDED)
        if self.end_reason is None and self.stop_file.exists():
            self.request_stop(STOP_REQUESTED)
        if self.end_reason is None and self.criteria is not None and self.criteria.stop_all():
            self.request_stop(getattr(self.criteria, "reason", None) or "CompletionCriteriaMet")
        return self.end_reason is not None


class StopOnSignals:
    """First Ctrl-C / SIGTERM: stop cleanly (trials Stopped, job resumable); second: abort."""

    def __init__(self, control: JobControl):
        self.control = control
        self.saved: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig, reason in ((signal.SIGINT, INTERRUPTED), (signal.SIGTERM, STOP_REQUESTED)):
                self.saved[sig] = signal.signal(sig, self._handler(sig, reason))
        return self

    def _handler(self, sig, reason):
        def handle(signum, frame):
            self.control.request_stop(reason)
            signal.signal(sig, self.saved[sig])  # a second signal acts as usual
        return handle

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
