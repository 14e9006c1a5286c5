"""The training jobs `hpt api` runs on their own (CreateTrainingJob: the SDK's `fit()`).

`create` checks and stages everything before it answers, as a tuning job's create does
(placement, the code from `sagemaker_submit_directory`, the channels' data, the spec
validated once and frozen), then starts the job's own process (`python -m
hpt.api.training_runner`), which holds the job's CPUs and GPUs on the server's Ray while it
runs, so training jobs and tuning jobs share the machine without sharing a GPU. Each job's
folder is `.hpt-api/training-jobs/<name>/`: request.json, validated-spec.json, source/, job/
(the hosts' trees, logs, metrics, model) and state.json (its row, written by the runner).

A runner is in a process group of its own, registered with the reaper: if the server dies
the job dies with it. A job the next server finds still InProgress, with no runner, is
Failed with that reason (SageMaker's jobs do not outlive their hosts either); nothing of it
is removed.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hpt.api.cloudwatch_logs import host_logs
from hpt.api.job_processes import JobProcesses
from hpt.experiment.api_requests import TRAINING_JOBS_DIR
from hpt.api.shapes import describe_training_job, job_status
from hpt.api.staging import ServerResources, check_channels, fetch_code, placement_of
from hpt.api.training import as_tuning_request, training_space
from hpt.api.training_runner import (JOB_DIR, REQUEST, RUNNER_LOG, VALIDATED_SPEC,
                                     definition_of_job, failed_row, frozen_spec,
                                     hosts_placement, read_state, write_state)
from hpt.api.tuning import Placement, TuningRecord, s3_output_of, submit_directory
from hpt.api.warm_pools import IN_USE as POOL_IN_USE
from hpt.api.warm_pools import (AVAILABLE, KEEP_ALIVE, WarmPool, keep_alive_refusal,
                                keep_alive_seconds, pool_key, warm_pool_status)
from hpt.api.wire_protocol import IN_USE, VALIDATION, ApiError
from hpt.core.schema import Column, File, Key
from hpt.core.trial import FailureCategory, FailureReason
from hpt.experiment.job_state import IN_PROGRESS
from hpt.spacefile.sagemaker_json.names import is_placeholder



class TrainingJobs:
    def __init__(self, root: Path, server: ServerResources, ray_address: Callable[[], str],
                 say: Callable[[str], None] = print):
        """`root`: the server's own folder (.hpt-api); `ray_address`: the server's Ray now
        (it may have been started again)."""
        self.root = Path(root) / TRAINING_JOBS_DIR
        self.server, self.ray_address, self.say = server, ray_address, say
        self._lock = threading.RLock()
        self._runners = JobProcesses("hpt.api.training_runner", self._runner_exited, say)

    def folder(self, name: str) -> Path:
        return self.root / name

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{REQUEST}"))

    def has(self, name: str) -> bool:
        return (self.folder(name) / REQUEST).is_file()

    # -- operations ----------------------------------------------------------------------

    def create(self, request: dict[str, Any], region: str,
               taken: Callable[[str], bool]) -> dict[str, Any]:
        """`taken(name)`: a tuning job's training job has that name already."""
        from hpt.spacefile.training_spec import training_job_spec
        from hpt.experiment.store import write_json_atomic

        name = request[Column.TRAINING_JOB_NAME]
        with self._lock:
            if self.has(name) or taken(name):
                raise ApiError(IN_USE, f"Training job {name} already exists; training job "
                                       f"names must be unique: pick another TrainingJobName")
            folder = self.folder(name)
            shutil.rmtree(folder, ignore_errors=True)  # a create that failed half-way
            folder.mkdir(parents=True)
            try:
                space, notes = training_space(request, self._placement(request, folder))
                check_channels(space.get("channels") or {})
                try:
                    spec = training_job_spec(space, folder / REQUEST)
                except ValueError as exc:
                    raise ApiError(VALIDATION, f"hpt cannot run this training job: {exc}") \
                        from None
                write_json_atomic(folder / VALIDATED_SPEC, spec.to_frozen_dict())
                record = TuningRecord(as_tuning_request(request), time.time(), region)
                write_json_atomic(folder / REQUEST, record.to_json())
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            for note in notes:
                self.say(f"hpt api: training job {name}: {note}")
            if not self._on_a_warm_pool(name):
                self._launch(name)
        return {"TrainingJobArn": self.describe(name)["TrainingJobArn"]}

    def describe(self, name: str) -> dict[str, Any]:
        record, row = self._read(name)
        asked = self.folder(name) / JOB_DIR / File.STOP_REQUESTED
        described = describe_training_job(record, row, asked.stat().st_mtime
                                          if asked.is_file() else None, alone=True)
        warm = warm_pool_status(WarmPool(self.folder(name)).state(), time.time())
        if warm is not None:
            described["WarmPoolStatus"] = warm
        return described

    def summaries(self) -> list[dict[str, Any]]:
        """ListTrainingJobs' summaries of every training job on its own."""
        found = []
        for name in self.names():
            described = self.describe(name)
            found.append({k: described.get(k) for k in (
                Column.TRAINING_JOB_NAME, "TrainingJobArn", "CreationTime",
                Column.TRAINING_END_TIME, "LastModifiedTime", Column.TRAINING_JOB_STATUS,
                "SecondaryStatus", "WarmPoolStatus") if k in described})
        return found

    def update(self, params: dict[str, Any]) -> dict[str, Any]:
        """UpdateTrainingJob: a warm pool's KeepAlivePeriodInSeconds (0 ends it now, as on
        SageMaker); profiler and remote-debug settings are accepted and said to do nothing."""
        name = params[Column.TRAINING_JOB_NAME]
        self._read(name)  # it exists
        for key in ("ProfilerConfig", "ProfilerRuleConfigurations", "RemoteDebugConfig"):
            if params.get(key):
                self.say(f"hpt api: training job {name}: UpdateTrainingJob {key}: accepted; "
                         f"it does not run here")
        resources = params.get("ResourceConfig") or {}
        if KEEP_ALIVE in resources:
            self._update_keep_alive(name, int(resources[KEEP_ALIVE]))
        return {"TrainingJobArn": self.describe(name)["TrainingJobArn"]}

    def _update_keep_alive(self, name: str, seconds: int) -> None:
        refused = keep_alive_refusal({"ResourceConfig": {KEEP_ALIVE: seconds}})
        if refused:
            raise ApiError(VALIDATION, refused)
        pool = WarmPool(self.folder(name))
        status = (pool.state() or {}).get("status")
        with self._lock:
            if status not in (AVAILABLE, POOL_IN_USE) or not self._runners.running(name):
                raise ApiError(VALIDATION, f"Training job {name} has no warm pool to update "
                                           f"(its WarmPoolStatus is {status or 'absent'}): "
                                           f"only an Available or InUse one can be")
            pool.set_keep_alive(seconds)
            if seconds == 0 and status == AVAILABLE:
                pool.claim(None, "UpdateTrainingJob set KeepAlivePeriodInSeconds to 0")

    def stop(self, name: str) -> dict[str, Any]:
        from hpt.experiment.store import request_training_job_stop

        record, row = self._read(name)
        status, _, _ = job_status(row, s3_output_of(record.request))
        if status != IN_PROGRESS:
            raise ApiError(VALIDATION, f"The request was rejected because the training job "
                                       f"{name} is in status {status}")
        (self.folder(name) / JOB_DIR).mkdir(exist_ok=True)
        request_training_job_stop(self.folder(name), JOB_DIR, "StopTrainingJob through hpt api")
        return {}

    def log_of(self, name: str) -> tuple[dict[str, Path], float] | None:
        """Its hosts' logs and start time (CloudWatch Logs)."""
        _, row = self._read(name)
        return host_logs(self.folder(name) / JOB_DIR), row.get(Key.START_TIME) or 0.0

    def folders(self):
        """(name, job folder) of each: its metrics (CloudWatch)."""
        for name in self.names():
            yield name, self.folder(name) / JOB_DIR

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """A job an earlier server left InProgress has no runner any more. One that keeps
        checkpoints (CheckpointConfig) or asked for managed spot training starts again, from
        its checkpoints, as spot training restarts an interrupted job; any other is Failed,
        said so."""
        for name in self.names():
            WarmPool(self.folder(name)).terminate_if_left("the hpt api server stopped")
            state = read_state(self.folder(name))
            if state is not None and state.get(Key.STATUS, IN_PROGRESS) != IN_PROGRESS:
                continue
            if self._restartable(name):
                self.say(f"hpt api: training job {name} was running when the server stopped; "
                         f"it starts again from its checkpoints")
                self._launch(name)
            else:
                self._lost(name, "the hpt api server stopped while the training job ran; "
                                 "create it again (a new TrainingJobName) to run it, or give "
                                 "it a CheckpointConfig to have it restarted from its "
                                 "checkpoints")
        self._runners.start_watching()

    def _runner_exited(self, name: str, code: int) -> None:
        """A runner that exited before its job's state says it ended: Failed, with why; its
        warm pool, if it had one, ends with it."""
        WarmPool(self.folder(name)).terminate_if_left(f"its process exited (code {code})")
        state = read_state(self.folder(name)) or {}
        if state.get(Key.STATUS, IN_PROGRESS) == IN_PROGRESS:
            self._lost(name, f"its process exited (code {code}) before the job ended; its "
                             f"output: {self.folder(name) / RUNNER_LOG}")

    def close(self) -> None:
        """The server's clean shutdown: each running job is stopped, and says so; one that
        restarts from its checkpoints (start) is interrupted instead, to go on at the next
        start."""
        def ask(name: str) -> bool:
            pool = WarmPool(self.folder(name))
            if pool.is_available():  # its job ended: the pool ends
                pool.claim(None, "the hpt api server stopped")
                return True
            if self._restartable(name):
                return False
            (self.folder(name) / JOB_DIR).mkdir(exist_ok=True)
            (self.folder(name) / JOB_DIR / File.STOP_REQUESTED).write_text(
                "the hpt api server stopped\n")
            return True

        self._runners.close(ask)

    def _restartable(self, name: str) -> bool:
        definition = self._read(name)[0].request["TrainingJobDefinition"]
        return bool(definition.get("CheckpointConfig")
                    or definition.get("EnableManagedSpotTraining"))

    # -- inside --------------------------------------------------------------------------

    def _placement(self, request: dict[str, Any], folder: Path) -> Placement:
        tuning = as_tuning_request(request)
        placement = placement_of(tuning, self.server, self.say)
        submit = submit_directory(tuning)
        if submit and not is_placeholder(submit):
            fetch_code(submit, folder / "source")
            placement = Placement(placement.runtime, str(folder / "source"), placement.image,
                                  placement.resources, placement.notes)
        return placement

    def _on_a_warm_pool(self, name: str) -> bool:
        """Hands the new job `name` to an Available warm pool it matches, if it asked for one
        and there is one (the oldest first): True when one took it."""
        definition = definition_of_job(self.folder(name))
        if not keep_alive_seconds(definition):
            return False
        key = self._pool_key(name, definition)
        for other in self.names():
            pool = WarmPool(self.folder(other))
            if other == name or not pool.is_available() or not self._runners.running(other) \
                    or self._pool_key(other) != key:
                continue
            if pool.claim(name):
                self._runners.hand_over(other, name)
                self.say(f"hpt api: training job {name} runs on the warm pool of {other}")
                return True
        return False

    def _pool_key(self, name: str, definition: dict[str, Any] | None = None) -> str:
        from hpt.runtime.runtimes import RUNTIMES

        folder = self.folder(name)
        spec = frozen_spec(folder)
        return pool_key(definition or definition_of_job(folder),
                        hosts_placement(spec, RUNTIMES[spec.runtime]))

    def _launch(self, name: str) -> None:
        folder = self.folder(name)
        pid = self._runners.launch(name, [str(folder), "--address", self.ray_address(),
                                          "--container-engine", self.server.engine],
                                   folder / RUNNER_LOG)
        self.say(f"hpt api: started training job {name} (pid {pid})")

    def _read(self, name: str) -> tuple[TuningRecord, dict[str, Any]]:
        folder = self.folder(name)
        try:
            record = TuningRecord.from_json(json.loads((folder / REQUEST).read_text()))
        except (OSError, ValueError):
            raise ApiError(VALIDATION, f"Requested resource not found: training job {name} "
                                       f"does not exist") from None
        row = read_state(folder) or {Key.TRAINING_JOB_NAME: name, Key.STATUS: IN_PROGRESS,
                                     Key.FINAL_METRICS: {}}
        if row.get(Key.START_TIME) is None:  # it never started: its times are its creation's
            row[Key.START_TIME] = record.creation_time
        return record, row

    def _lost(self, name: str, why: str) -> None:
        state = read_state(self.folder(name)) or {}
        write_state(self.folder(name), failed_row(name, state.get(Key.START_TIME), FailureReason(
            FailureCategory.INTERNAL_SERVER_ERROR, why)))
        self.say(f"hpt api: training job {name} failed: {why}")

