"""The tuning jobs `hpt api` runs: each one a launcher process joined to the server's Ray.

`create` checks and stages everything a launch needs before it answers (the code from
`sagemaker_submit_directory`, the space.yaml, hpt's own validation of it: the only one, as
the launcher runs the spec that validation froze), so a request hpt cannot run is a
ValidationException, never a job that fails later. The request is then recorded
(request.json) and a launcher started (`python -m hpt.api.job_runner`: hpt's launch of the
frozen spec). A watcher thread keeps every recorded job going: a job whose launcher is gone
before the job ended (the server was restarted or killed, the launcher crashed) is continued
with --resume, as `hpt launch --resume` would; a stop asked for is handed to the launcher
the way `hpt stop` does.

The launchers run in process groups of their own, registered with the reaper: if the server
dies, however it dies, they die too (SIGKILL: their jobs are left resumable, and the next
server resumes them). A clean shutdown interrupts them (SIGINT, also resumable).

When the server's own Ray dies mid-job, its launchers cannot go on: the watcher ends what
is left of that Ray's session (its launchers with it: their jobs stay resumable, no ending
written), starts a new Ray and resumes them on it, as after a restart of the server. If no
Ray starts again, the jobs that were running fail with a FailureReason that names the lost
Ray. A tuning job is never ended by such an exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hpt.api.cloudwatch_logs import host_logs
from hpt.api.launched_jobs import launched_names, launched_record, refuse_control
from hpt.api.listing import by_name_time_status, list_page
from hpt.api.wire_protocol import IN_USE, NOT_FOUND, VALIDATION, ApiError
from hpt.api.staging import ServerResources, stage
from hpt.api.records import ApiStore
from hpt.api.shapes import (describe_training_job, describe_tuning_job, job_status,
                            training_summary, tuning_status, tuning_summary)
from hpt.api.tuning import TuningRecord, s3_output_of
from hpt.core.schema import Column, File, Key
from hpt.experiment.job_state import COMPLETED, FAILED, IN_PROGRESS, STOPPED
from hpt.experiment.store import (JOURNAL, SPEC, STOP_FILE, read_journal,
                                 request_training_job_stop)
from hpt.experiment.table import trial_rows
from hpt.report.summary import state_of
from hpt.processes.reaper import REAPER

WATCH_SECONDS = 1.0
MAX_RESTARTS = 3  # launcher exits before its job ended, per job and server run
STOP_GRACE_SECONDS = 30.0


class TuningJobs:
    def __init__(self, store: ApiStore, ray_address: str, cpus: float, gpus: float,
                 image_map: dict[str, str], engine: str = "docker",
                 say: Callable[[str], None] = print, ray_head=None):
        """`ray_head`: the server's own Ray (api/ray_head.py), started again if it dies; None
        for a cluster the server joined (--address), which is the cluster's to keep."""
        self.store = store
        self.ray_address = ray_address
        self.ray_head = ray_head
        self.ray_failure: str | None = None  # the own Ray was lost and did not start again
        self.server = ServerResources(cpus, gpus, dict(image_map), engine)
        self.say = say
        self._lock = threading.RLock()
        self._launchers: dict[str, subprocess.Popen] = {}
        self._restarts: dict[str, int] = {}
        self._ended: set[str] = set()  # jobs that ended for good: the watcher reads them no more
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="hpt-api-jobs", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._watcher.start()

    def close(self) -> None:
        """Interrupts every launcher (their jobs stay resumable) and waits for them."""
        self._closing.set()
        self._watcher.join(timeout=5)
        with self._lock:
            launchers = dict(self._launchers)
        for proc in launchers.values():
            _signal(proc, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in launchers.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            REAPER.unregister(proc.pid)

    # -- operations --------------------------------------------------------------------------

    def create(self, request: dict[str, Any], region: str) -> dict[str, Any]:
        name = request["HyperParameterTuningJobName"]
        with self._lock:
            if self.store.tuning(name) is not None or (
                    self.store.experiment_dir(name) / SPEC).exists():
                raise ApiError(IN_USE, f"Tuning job {name} already exists; pick another "
                                       f"HyperParameterTuningJobName")
            folder = self.store.tuning_dir(name)
            shutil.rmtree(folder, ignore_errors=True)  # a create that failed half-way
            folder.mkdir(parents=True)
            try:
                stage(request, folder, self.server, self.say)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            record = TuningRecord(request, time.time(), region)
            self.store.save_tuning(record)
            self._launch(record, resume=False)
        return {"HyperParameterTuningJobArn": describe_tuning_job(
            record, None, [], [])["HyperParameterTuningJobArn"]}

    def describe(self, name: str) -> dict[str, Any]:
        record, state, rows, events = self._read(name)
        return describe_tuning_job(record, state, rows, events)

    def records(self):
        """Every tuning job of the experiments folder: the API's own, then those `hpt
        launch` started (read-only)."""
        own = list(self.store.tunings())
        yield from own
        for name in launched_names(self.store.experiments, {r.name for r in own}):
            record = launched_record(self.store.experiment_dir(name))
            if record is not None:
                yield record

    def record(self, name: str) -> TuningRecord | None:
        """The API's own record of `name`, or the read-only one of an `hpt launch` job."""
        record = self.store.tuning(name)
        if record is None and not name.startswith("."):
            record = launched_record(self.store.experiment_dir(name))
        return record

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        summaries = []
        for record in self.records():
            _, state, rows, events = self._read(record.name, record)
            summaries.append(tuning_summary(record, state, rows, events))
        chunk, token = list_page(
            summaries, params, name_key="HyperParameterTuningJobName",
            status_key="HyperParameterTuningJobStatus", sort_keys=by_name_time_status(
                "HyperParameterTuningJobName", "HyperParameterTuningJobStatus"),
            default_sort="Name", page_size=100)
        return {"HyperParameterTuningJobSummaries": chunk, "NextToken": token}

    def stop(self, name: str) -> dict[str, Any]:
        with self._lock:
            record, state, _, _ = self._read(name)
            refused = refuse_control(record, "stop")
            if refused:
                raise ApiError(VALIDATION, refused)
            status = tuning_status(record, state)
            if status != IN_PROGRESS:
                raise ApiError(VALIDATION, f"Tuning job {name} is {status}; only a job "
                                           f"InProgress can be stopped")
            record = TuningRecord(record.request, record.creation_time, record.region,
                                  time.time(), record.failure)
            self.store.save_tuning(record)
            self._hand_stop(record)
        return {}

    def training_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        record, _, rows, _ = self._read(params["HyperParameterTuningJobName"])
        s3_output = s3_output_of(record.request)
        summaries = [training_summary(record, row, s3_output) for row in rows]
        chunk, token = _training_job_page(summaries, params, "Name", FinalObjectiveMetricValue=(
            lambda s: (s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")))
        return {"TrainingJobSummaries": chunk, "NextToken": token}

    def describe_training_job(self, name: str) -> dict[str, Any]:
        record, row = self._training_job(name)
        asked = self.store.experiment_dir(record.name) / name / STOP_FILE
        return describe_training_job(record, row,
                                     asked.stat().st_mtime if asked.is_file() else None)

    def stop_training_job(self, name: str) -> dict[str, Any]:
        """StopTrainingJob of one training job of a tuning job, as SageMaker allows: that job
        ends Stopped (Stopping until then) and its tuning job goes on."""
        record, row = self._training_job(name)
        refused = refuse_control(record, "stop", f"hpt stop {record.name} --training-job {name}")
        if refused:
            raise ApiError(VALIDATION, refused)
        status, _, _ = job_status(row, s3_output_of(record.request))
        if status != IN_PROGRESS:
            raise ApiError(VALIDATION, f"The request was rejected because the training job "
                                       f"{name} is in status {status}")
        request_training_job_stop(self.store.experiment_dir(record.name), name,
                                  "StopTrainingJob through hpt api")
        return {}

    def list_all_training_jobs(self, params: dict[str, Any],
                               alone: list[dict[str, Any]] = ()) -> dict[str, Any]:
        """Every tuning job's training jobs, and `alone`: the summaries of those on their own."""
        summaries = list(alone)
        for record in self.records():
            _, _, rows, _ = self._read(record.name, record)
            s3_output = s3_output_of(record.request)
            for row in rows:
                status, secondary, _ = job_status(row, s3_output)
                described = describe_training_job(record, row)
                summaries.append({
                    Column.TRAINING_JOB_NAME: row[Key.TRAINING_JOB_NAME],
                    "TrainingJobArn": described["TrainingJobArn"],
                    "CreationTime": described["CreationTime"],
                    Column.TRAINING_END_TIME: described.get(Column.TRAINING_END_TIME),
                    "LastModifiedTime": described["LastModifiedTime"],
                    Column.TRAINING_JOB_STATUS: status, "SecondaryStatus": secondary})
        if params.get("WarmPoolStatusEquals"):  # a tuning job's training jobs have none
            summaries = [s for s in summaries if (s.get("WarmPoolStatus") or {}).get(
                "Status") == params["WarmPoolStatusEquals"]]
        chunk, token = _training_job_page(summaries, params, "CreationTime")
        return {"TrainingJobSummaries": chunk, "NextToken": token}

    def training_job_folders(self):
        """(name, folder) of every training job with a folder yet (CloudWatch's metrics)."""
        for record in self.records():
            for row in self._read(record.name, record)[2]:
                if row.get(Key.LOG_PATH):
                    yield row[Key.TRAINING_JOB_NAME], Path(row[Key.LOG_PATH]).parent

    def training_job_log(self, name: str) -> tuple[dict[str, Path], float] | None:
        """A training job's hosts' logs and its start time (CloudWatch Logs)."""
        record, row = self._training_job(name)
        path = row.get(Key.LOG_PATH)
        return (host_logs(Path(path).parent), row[Key.START_TIME]) if path else None

    # -- reading a job -----------------------------------------------------------------------

    def _read(self, name: str, record: TuningRecord | None = None):
        record = record or self.record(name)
        if record is None:
            raise ApiError(NOT_FOUND, f"Amazon SageMaker can't find a tuning job with name "
                                      f"{name}")
        folder = self.store.experiment_dir(name)
        if not (folder / SPEC).is_file():
            return record, None, [], []
        events = list(read_journal(folder / JOURNAL))
        return record, state_of(folder, events), trial_rows(events), events

    def has_training_job(self, name: str) -> bool:
        """Whether a tuning job has a training job of that name."""
        try:
            self._training_job(name)
        except ApiError:
            return False
        return True

    def _training_job(self, name: str) -> tuple[TuningRecord, dict[str, Any]]:
        tuning = name.rsplit("-", 2)[0] if name.count("-") >= 2 else None
        record = self.record(tuning) if tuning else None
        if record is not None:
            _, _, rows, _ = self._read(tuning, record)
            for row in rows:
                if row[Key.TRAINING_JOB_NAME] == name:
                    return record, row
        raise ApiError(VALIDATION, f"Requested resource not found: training job {name} "
                                   f"does not exist")

    # -- staging and launching ---------------------------------------------------------------

    def _launch(self, record: TuningRecord, resume: bool) -> None:
        folder = self.store.tuning_dir(record.name)
        # The job's own process (it outlives the server), on the spec `stage` validated
        # and froze: the request is not validated a second time (hpt/api/job_runner.py).
        argv = [sys.executable, "-m", "hpt.api.job_runner", str(folder),
                "--experiments-dir", str(self.store.experiments), "--address",
                self.ray_address] + (["--resume"] if resume else [])
        with open(folder / File.LAUNCHER_LOG, "ab") as log:
            log.write(f"--- hpt api: {' '.join(argv)} at "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        REAPER.register(proc.pid)  # the server's death kills it: the job stays resumable
        self._launchers[record.name] = proc
        self.say(f"hpt api: {'resumed' if resume else 'started'} tuning job {record.name} "
                 f"(launcher pid {proc.pid})")

    def _hand_stop(self, record: TuningRecord) -> None:
        """`hpt stop`'s request, while the launcher runs: it removes an old request file when
        it starts, so the file is written again until the launcher has acted on it."""
        folder = self.store.experiment_dir(record.name)
        proc = self._launchers.get(record.name)
        if proc is not None and proc.poll() is None and folder.is_dir() and \
                not (folder / STOP_FILE).exists():
            (folder / STOP_FILE).write_text(f"requested through hpt api at {time.time()}\n")

    def _keep_ray(self) -> None:
        """A new Ray for the server's own if it was lost; the jobs' launchers, which exit when
        their Ray is gone, are then resumed on it (their exits do not count as restarts)."""
        if self.ray_head is None or self.ray_failure is not None:
            return
        why = self.ray_head.lost()
        if why is None:
            return
        lost = self.ray_address
        self.say(f"hpt api: its Ray at {lost} was lost ({why}); starting a new one")
        with self._lock:  # no launcher starts meanwhile, on either Ray
            try:
                self.ray_address = self.ray_head.restart()
            except Exception as exc:  # noqa: BLE001 - said, and the running jobs fail with it
                self.ray_failure = (f"the hpt api server's Ray at {lost} was lost ({why}) and "
                                    f"did not start again ({exc})")
                self.say(f"hpt api: {self.ray_failure}")
                return
            self._restarts.clear()
        self.say(f"hpt api: a new Ray {self.ray_address} in {self.ray_head.temp}; the tuning "
                 f"jobs that were running resume on it")

    def _watch(self) -> None:
        while not self._closing.wait(WATCH_SECONDS):
            try:
                self._keep_ray()
            except Exception as exc:  # noqa: BLE001 - the jobs' watch goes on
                self.say(f"hpt api: watching its Ray: {type(exc).__name__}: {exc}")
            for name in self.store.tuning_names():
                if name in self._ended:
                    continue
                try:
                    with self._lock:
                        record = self.store.tuning(name)
                        if record is not None and not self._closing.is_set():
                            self._keep_going(record)
                except Exception as exc:  # noqa: BLE001 - one job's trouble spares the rest
                    self.say(f"hpt api: tuning job {name}: {type(exc).__name__}: {exc}")

    def _keep_going(self, record: TuningRecord) -> None:
        proc = self._launchers.get(record.name)
        if proc is not None and proc.poll() is None:
            if record.stop_requested:
                self._hand_stop(record)
            return
        if proc is not None:
            REAPER.unregister(proc.pid)
            self._launchers.pop(record.name, None)
        _, state, _, _ = self._read(record.name, record)
        status = tuning_status(record, state)
        if status in (COMPLETED, FAILED, STOPPED) or record.failure:
            self._ended.add(record.name)  # none of these ever runs again
            return
        if state is not None and state.writer is not None:
            return  # a launcher of an earlier server still holds it: wait until it is gone
        if record.stop_requested:
            return  # stopped before it ran again: Stopped as it is
        if self.ray_failure is not None:
            self.store.save_tuning(TuningRecord(record.request, record.creation_time,
                                                record.region, record.stop_requested,
                                                self.ray_failure))
            return
        count = self._restarts.get(record.name, 0)
        if proc is not None:  # it exited before its job ended
            count += 1
            self._restarts[record.name] = count
        if count >= MAX_RESTARTS:
            tail = _tail(self.store.tuning_dir(record.name) / File.LAUNCHER_LOG)
            failed = TuningRecord(record.request, record.creation_time, record.region,
                                  record.stop_requested,
                                  f"its launcher exited {count} times before the job ended; "
                                  f"last output: {tail}")
            self.store.save_tuning(failed)
            return
        self._launch(record, resume=(self.store.experiment_dir(record.name) / SPEC).exists())


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ListTrainingJobs and ListTrainingJobsForHyperParameterTuningJob sort by these; the latter
# also by the objective.
_TRAINING_JOB_SORTS = by_name_time_status(Column.TRAINING_JOB_NAME, Column.TRAINING_JOB_STATUS)


def _training_job_page(summaries: list[dict], params: dict[str, Any], default_sort: str,
                       **more_sorts) -> tuple[list[dict], str | None]:
    return list_page(summaries, params, name_key=Column.TRAINING_JOB_NAME,
                     status_key=Column.TRAINING_JOB_STATUS,
                     sort_keys={**_TRAINING_JOB_SORTS, **more_sorts},
                     default_sort=default_sort, page_size=10)
