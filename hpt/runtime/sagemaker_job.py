"""`runtime: sagemaker`: each trial is a real SageMaker training job.

`create_training_job_request` (pure) turns a trial into a `CreateTrainingJob` request as the
SageMaker Python SDK's script mode writes it: the image, the role, hyperparameters as JSON
strings (with `sagemaker_program`, `sagemaker_submit_directory` pointing at the source_dir
tarball hpt uploads once per tuning job, and `_tuning_objective_metric`), metric definitions,
S3 channels, output path, instance type/count, stopping condition and checkpoint config.
`SageMakerTrainingJob` is how such a job executes, over the core every runtime shares
(runtime/observed_job.py: metrics.jsonl, the objective's stream, the record): it polls
`DescribeTrainingJob`, reads the job's log lines from CloudWatch Logs
(`/aws/sagemaker/TrainingJobs`, stream `<job>/algo-1-…`) into algo-1.log and the core's
metric parser, so early stopping sees every intermediate objective, and calls
`StopTrainingJob` on a stop.
"""

from __future__ import annotations

import collections
import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpt.core import sagemaker_names
from hpt.core.sagemaker_names import (LEAD_LOG, SAGEMAKER_CONTAINER_LOG_LEVEL, SAGEMAKER_JOB_NAME,
                                      SAGEMAKER_PROGRAM, SAGEMAKER_REGION,
                                      SAGEMAKER_SUBMIT_DIRECTORY, TUNING_OBJECTIVE_METRIC,
                                      container_command, distribution_hyperparameters)
from hpt.core.schema import Column
from hpt.core.trial import ENDED, FailureReason, TrialStatus
from hpt.runtime.job_protocol import TrialAssignment
from hpt.runtime.encoding import encode_hyperparameters
from hpt.runtime.observed_job import Exit, ObservedJob, Placement

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
POLL_SECONDS = 15.0  # DescribeTrainingJob's rate limits make faster polling pointless
STOP_WAIT_SECONDS = 600.0
SOURCE_ARCHIVE = sagemaker_names.SOURCE_ARCHIVE


def source_uri(output: str, tuning_job: str) -> str:
    return f"{output.rstrip('/')}/{tuning_job}/source/{SOURCE_ARCHIVE}"


def pack_source(source_dir: Path) -> bytes:
    """source_dir as the SDK packs it: its contents at the archive root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in sorted(Path(source_dir).iterdir()):
            if entry.name not in ("__pycache__", ".git"):
                tar.add(entry, arcname=entry.name)
    return buffer.getvalue()


def create_training_job_request(spec, assignment: TrialAssignment, role_arn: str,
                                code_uri: str, region: str) -> dict[str, Any]:
    """The CreateTrainingJob request of one trial (pure)."""
    trainer = spec.trainer
    hyperparameters = encode_hyperparameters({
        **assignment.job_hyperparameters(spec.static_hyperparameters),
        # data_parallel / parameter_server / torchrun: the switches the SDK sends, which the
        # toolkit in the container reads to start the processes (else N independent hosts).
        **distribution_hyperparameters(trainer.distribution, trainer.processes_per_host),
        SAGEMAKER_PROGRAM: trainer.entry_point,
        SAGEMAKER_SUBMIT_DIRECTORY: code_uri,
        SAGEMAKER_REGION: region,
        SAGEMAKER_CONTAINER_LOG_LEVEL: 20,
        SAGEMAKER_JOB_NAME: assignment.training_job_name,
        TUNING_OBJECTIVE_METRIC: spec.objective.metric,
    })
    output = spec.output.rstrip("/")
    request: dict[str, Any] = {
        Column.TRAINING_JOB_NAME: assignment.training_job_name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": {
            "TrainingImage": trainer.image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": m.name, "Regex": m.regex}
                                  for m in spec.metric_definitions],
            **container_command(trainer),
        },
        "RoleArn": role_arn,
        "InputDataConfig": [{
            "ChannelName": name,
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": channel.uri,
                                            "S3DataDistributionType": channel.distribution}},
            "InputMode": "File",
        } for name, channel in spec.channels.items()],
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {"InstanceType": trainer.instance_type,
                           "InstanceCount": trainer.instance_count, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": trainer.max_runtime_seconds},
        "CheckpointConfig": {"S3Uri": f"{output}/{assignment.training_job_name}/checkpoints"},
        "Tags": [{"Key": "hpt:tuning-job", "Value": spec.name},
                 {"Key": "hpt:trial-number", "Value": str(assignment.trial_number)}],
    }
    if trainer.environment:
        request["Environment"] = dict(trainer.environment)
    if not request["InputDataConfig"]:
        del request["InputDataConfig"]
    return request


@dataclass(frozen=True)
class LogEvent:
    """One line of a job's CloudWatch log stream."""

    text: str
    timestamp: float


class SageMakerTrainingJob(ObservedJob):
    """One trial as a SageMaker training job, driven through boto3 clients."""

    output_name = "the job's CloudWatch logs"
    # SageMaker stops a job at StoppingCondition.MaxRuntimeInSeconds itself (its queue and
    # provisioning time not counted), so hpt's own deadline would stop it too early.
    enforces_max_runtime = True

    def __init__(self, spec, assignment: TrialAssignment, trial_dir: Path, *, role_arn: str,
                 code_uri: str, sagemaker, logs, region: str = "us-east-1",
                 poll_seconds: float = POLL_SECONDS):
        super().__init__(spec, assignment, trial_dir)
        self.name = assignment.training_job_name
        self.request = create_training_job_request(spec, assignment, role_arn, code_uri, region)
        self.sagemaker, self.logs = sagemaker, logs
        self.poll_seconds = poll_seconds
        self.log_path = self.trial_dir / LEAD_LOG
        self._job: dict[str, Any] = {}  # the last DescribeTrainingJob
        self._next_poll = 0.0
        self._log_tokens: dict[str, str | None] = {}
        self._log_file = None
        self._last_lines: collections.deque[str] = collections.deque(maxlen=5)

    def _execute(self) -> Exit | None:
        self._log_file = open(self.log_path, "a", buffering=1)
        self.start_time = time.time()
        self.sagemaker.create_training_job(**self.request)
        return None

    def _describe(self) -> dict[str, Any]:
        self._job = self.sagemaker.describe_training_job(TrainingJobName=self.name)
        return self._job

    def _lines(self, timeout: float) -> list[LogEvent] | None:
        """The lines since the last poll (DescribeTrainingJob, then the logs), at most one
        poll per `poll_seconds`; None once the job ended and its last lines were read."""
        wait = self._next_poll - time.time()
        if wait > 0:
            time.sleep(min(wait, timeout))
            if time.time() < self._next_poll:
                return []
        self._next_poll = time.time() + self.poll_seconds
        job = self._describe()
        lines = self._read_logs()
        if lines or job[Column.TRAINING_JOB_STATUS] not in ENDED:
            return lines
        return self._read_logs() or None  # the last lines may land just before the end

    def _exit(self, deadline: float) -> Exit:
        job = self._job
        return Exit(TrialStatus(job[Column.TRAINING_JOB_STATUS]),
                    FailureReason.parse(job.get(Column.FAILURE_REASON)),  # SageMaker's own words
                    final_metrics={m["MetricName"]: float(m["Value"])
                                   for m in job.get("FinalMetricDataList", [])},
                    start_time=_epoch(job.get(Column.TRAINING_START_TIME)),
                    end_time=_epoch(job.get(Column.TRAINING_END_TIME)))

    def _halt(self) -> Exit:
        job = self._describe()
        if job[Column.TRAINING_JOB_STATUS] not in ENDED:
            self.sagemaker.stop_training_job(TrainingJobName=self.name)
            deadline = time.time() + STOP_WAIT_SECONDS
            while job[Column.TRAINING_JOB_STATUS] not in ENDED and time.time() < deadline:
                time.sleep(self.poll_seconds)
                job = self._describe()
        self._feed(self._read_logs())
        return self._exit(deadline=0.0)

    def _artifact(self) -> str | None:
        return (self._job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")

    def _close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _placement(self) -> Placement:
        return Placement([f"algo-{i + 1}" for i in range(self.spec.trainer.instance_count)])

    def _output_tail(self) -> list[str]:
        return list(self._last_lines)

    # -- logs ------------------------------------------------------------------------------

    def _read_logs(self) -> list[LogEvent]:
        """New log lines of algo-1's stream (each also written to algo-1.log)."""
        try:
            streams = self.logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.name}/")["logStreams"]
        except self.logs.exceptions.ResourceNotFoundException:
            return []  # no log group yet: the job has not started writing
        lines = []
        for stream in sorted(s["logStreamName"] for s in streams):
            if "/algo-1-" not in stream:
                continue  # the objective is read from the master host, as SageMaker does
            lines += self._read_stream(stream)
        for line in lines:
            if self._log_file is not None:
                self._log_file.write(line.text + "\n")
            self._last_lines.append(line.text)
        return lines

    def _read_stream(self, stream: str) -> list[LogEvent]:
        lines = []
        while True:
            kwargs = {"logGroupName": LOG_GROUP, "logStreamName": stream,
                      "startFromHead": True}
            if self._log_tokens.get(stream):
                kwargs["nextToken"] = self._log_tokens[stream]
            page = self.logs.get_log_events(**kwargs)
            lines += [LogEvent(event["message"].rstrip("\n"), event["timestamp"] / 1000.0)
                      for event in page["events"]]
            token = page.get("nextForwardToken")
            if token == self._log_tokens.get(stream):
                return lines  # CloudWatch returns the same token once the stream is read
            self._log_tokens[stream] = token
            if not page["events"]:
                return lines


def _epoch(value) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value)

