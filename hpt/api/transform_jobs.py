"""Batch transform jobs (CreateTransformJob, DescribeTransformJob, ListTransformJobs,
StopTransformJob): what the SageMaker SDK's `transformer.transform()` sends.

`create` checks everything that can be checked before it answers — the model exists and hpt
can serve its container, the plan of splitting, batching, filters and joins
(hpt/serving/batch_records.py), the S3 locations — and then starts the job's own process
(`python -m hpt.api.transform_runner`). Each job's folder is `.hpt-api/transform-jobs/<name>/`:
request.json (the request, the model's container and how it serves), state.json (status,
reason, times), done.jsonl (the objects whose output is in place), hosts/ (each instance's
model server and its serve.log, and the data log), runner.log.

A job that an earlier server left InProgress (the server was killed, or stopped) is started
again by the next one and skips the objects already done: no output is written twice, none
is lost. A clean stop of the server interrupts the runners without ending their jobs.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hpt.api.job_processes import JobProcesses
from hpt.experiment.api_requests import STATE, TRANSFORM_JOBS_DIR
from hpt.experiment.api_requests import TRANSFORM_STATUS as STATUS
from hpt.api.listing import by_name_time_status, list_page
from hpt.api.models import Records
from hpt.api.transform_runner import (DATA_LOG, ENDED, FAILED, HOSTS_DIR, IN_PROGRESS,
                                      INTERRUPTED_EXIT, REQUEST, RUNNER_LOG, read_json,
                                      write_state)
from hpt.api.tuning import STOPPING, arn
from hpt.api.wire_protocol import IN_USE, VALIDATION, ApiError
from hpt.core.schema import Column, File
from hpt.serving.backends import SERVE_LOG
from hpt.serving.batch_records import TransformPlan

# What a request may carry that hpt accepts and does not act on: said once, in the log.
NOT_ACTED_ON = {
    "DataCaptureConfig": "batch data capture is not written",
    "ExperimentConfig": "SageMaker Experiments is not here",
    "TransformOutput.KmsKeyId": "outputs are not encrypted with a KMS key",
    "TransformResources.VolumeKmsKeyId": "no volume is encrypted",
}
S3_DATA_TYPES = ("S3Prefix", "ManifestFile")


class TransformJobs:
    def __init__(self, root: Path, records: Records, say: Callable[[str], None] = print):
        """`root`: the server's own folder (.hpt-api)."""
        self.root = Path(root) / TRANSFORM_JOBS_DIR
        self.records, self.say = records, say
        self._lock = threading.RLock()
        self._runners = JobProcesses("hpt.api.transform_runner", self._runner_exited, say)

    def folder(self, name: str) -> Path:
        return self.root / name

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{REQUEST}"))

    # -- operations ----------------------------------------------------------------------

    def create(self, request: dict[str, Any], region: str) -> dict[str, Any]:
        from hpt.experiment.store import write_json_atomic

        name = request["TransformJobName"]
        with self._lock:
            if (self.folder(name) / REQUEST).is_file():
                raise ApiError(IN_USE, f"Job name must be unique within an AWS account and "
                                       f"region, and a job with this name already exists "
                                       f"({arn('transform-job', name, region)})")
            model = self.records.describe_model(request["ModelName"])
            container = self.records.container_of(model)
            serving = self.records.serving_of(container)
            _check(request)
            folder = self.folder(name)
            shutil.rmtree(folder, ignore_errors=True)  # a create that failed half-way
            folder.mkdir(parents=True)
            write_json_atomic(folder / REQUEST, {
                "Request": {k: v for k, v in request.items() if k != "Tags"},
                "Container": container, "Serving": list(serving),
                "TransformJobArn": arn("transform-job", name, region),
                "CreationTime": time.time()})
            for field in _not_acted_on(request):
                self.say(f"hpt api: transform job {name}: {field}: accepted; "
                         f"{NOT_ACTED_ON[field]}")
            self._launch(name)
        return {"TransformJobArn": arn("transform-job", name, region)}

    def describe(self, name: str) -> dict[str, Any]:
        job, state = self._read(name)
        request = job["Request"]
        plan = TransformPlan.from_request(request)
        status = state.get(STATUS, IN_PROGRESS)
        if status == IN_PROGRESS and (self.folder(name) / File.STOP_REQUESTED).exists():
            status = STOPPING
        out = {**request, "TransformJobArn": job["TransformJobArn"],
               "TransformJobStatus": status, "CreationTime": job["CreationTime"],
               "BatchStrategy": plan.strategy,
               "MaxConcurrentTransforms": request.get("MaxConcurrentTransforms") or 1,
               "MaxPayloadInMB": request.get("MaxPayloadInMB", plan.max_payload_bytes >> 20)}
        for key in ("TransformStartTime", "TransformEndTime", Column.FAILURE_REASON):
            if state.get(key) is not None:
                out[key] = state[key]
        return out

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        items = []
        for name in self.names():
            described = self.describe(name)
            items.append({**{k: described.get(k) for k in (
                "TransformJobName", "TransformJobArn", "CreationTime", "TransformEndTime",
                "TransformJobStatus", Column.FAILURE_REASON)},
                "LastModifiedTime": described.get("TransformEndTime")
                or described.get("TransformStartTime") or described["CreationTime"]})
        chunk, token = list_page(
            items, params, name_key="TransformJobName", status_key="TransformJobStatus",
            sort_keys=by_name_time_status("TransformJobName", "TransformJobStatus"),
            default_sort="CreationTime", page_size=10)
        return {"TransformJobSummaries": [{k: v for k, v in i.items() if v is not None}
                                          for i in chunk], "NextToken": token}

    def stop(self, name: str) -> dict[str, Any]:
        _, state = self._read(name)
        status = state.get(STATUS, IN_PROGRESS)
        if status in ENDED:
            raise ApiError(VALIDATION, f"The request was rejected because the transform job "
                                       f"{name} is in status {status}")
        (self.folder(name) / File.STOP_REQUESTED).write_text("StopTransformJob through hpt "
                                                            "api\n")
        return {}

    def log_of(self, name: str) -> tuple[dict[str, Path], float] | None:
        """Each instance's model server log, and the job's data log (CloudWatch Logs)."""
        job, state = self._read(name)
        hosts = self.folder(name) / HOSTS_DIR
        logs = {d.name: d / SERVE_LOG for d in sorted(hosts.glob("algo-*")) if d.is_dir()}
        if (hosts / DATA_LOG).is_file():
            logs["algo-1/data-log"] = hosts / DATA_LOG
        return logs, state.get("TransformStartTime") or job["CreationTime"]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """A job an earlier server left InProgress runs again from where it was."""
        for name in self.names():
            _, state = self._read(name)
            if state.get(STATUS, IN_PROGRESS) == IN_PROGRESS:
                self.say(f"hpt api: transform job {name} was running when the server "
                         f"stopped; it goes on, skipping the objects done")
                self._launch(name)
        self._runners.start_watching()

    def close(self) -> None:
        """The server's clean shutdown: each runner is interrupted (SIGINT) and its job stays
        InProgress, to go on at the next start."""
        self._runners.close(None)  # SIGINT to each

    # -- inside --------------------------------------------------------------------------

    def _launch(self, name: str) -> None:
        folder = self.folder(name)
        pid = self._runners.launch(name, [str(folder), "--container-engine",
                                          self.records.engine], folder / RUNNER_LOG)
        self.say(f"hpt api: started transform job {name} (pid {pid})")

    def _runner_exited(self, name: str, code: int) -> None:
        _, state = self._read(name)
        if state.get(STATUS, IN_PROGRESS) == IN_PROGRESS and code != INTERRUPTED_EXIT:
            write_state(self.folder(name), **{
                STATUS: FAILED, "TransformEndTime": time.time(),
                Column.FAILURE_REASON: f"InternalServerError: its process exited (code {code}) "
                                 f"before the job ended; its output: "
                                 f"{self.folder(name) / RUNNER_LOG}"})

    def _read(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        job = read_json(self.folder(name) / REQUEST)
        if job is None:
            raise ApiError(VALIDATION, f"Could not find requested job with name {name}")
        return job, read_json(self.folder(name) / STATE) or {}


def _check(request: dict[str, Any]) -> None:
    """What the job will need, checked now: ApiError naming the field."""
    try:
        TransformPlan.from_request(request)
    except ValueError as exc:
        raise ApiError(VALIDATION, f"{exc}") from None
    source = request["TransformInput"]["DataSource"]["S3DataSource"]
    if source["S3DataType"] not in S3_DATA_TYPES:
        raise ApiError(VALIDATION, f"TransformInput.DataSource.S3DataSource.S3DataType: "
                                   f"{source['S3DataType']} is not supported here; give "
                                   f"{' or '.join(S3_DATA_TYPES)}")
    for field, uri in (("TransformInput.DataSource.S3DataSource.S3Uri", source["S3Uri"]),
                       ("TransformOutput.S3OutputPath",
                        request["TransformOutput"]["S3OutputPath"])):
        if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
            raise ApiError(VALIDATION, f"{field}: {uri} is not an s3://bucket/prefix URI")


def _not_acted_on(request: dict[str, Any]) -> list[str]:
    found = []
    for field in NOT_ACTED_ON:
        parent, _, member = field.partition(".")
        value = (request.get(parent) or {}).get(member) if member else request.get(parent)
        if value:
            found.append(field)
    return found

