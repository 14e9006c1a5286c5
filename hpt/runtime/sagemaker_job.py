"""`runtime: sagemaker`: each trial is a real SageMaker training job.

`create_training_job_request` (pure) turns a trial into a `CreateTrainingJob` request as the
SageMaker Python SDK's script mode writes it: the image, the role, hyperparameters as JSON
strings (with `sagemaker_program`, `sagemaker_submit_directory` pointing at the source_dir
tarball hpt uploads once per tuning job, and `_tuning_objective_metric`), metric definitions,
S3 channels, output path, instance type/count, stopping condition and checkpoint config.
`SageMakerTrainingJob` has the same start/advance/stop interface as `LocalTrainingJob`: it
polls `DescribeTrainingJob`, reads the job's log lines from CloudWatch Logs
(`/aws/sagemaker/TrainingJobs`, stream `<job>/algo-1-…`) through hpt's own metric parser, so
early stopping sees every intermediate objective, and calls `StopTrainingJob` on a stop.
"""

from __future__ import annotations

import collections
import io
import tarfile
import time
from pathlib import Path
from typing import Any

from hpt.core import sagemaker_names
from hpt.core.metric_parser import MetricParser, MetricPoint
from hpt.core.schema import Column
from hpt.runtime.encoding import encode_hyperparameters
from hpt.core.sagemaker_names import (LEAD_LOG, SAGEMAKER_CONTAINER_LOG_LEVEL, SAGEMAKER_JOB_NAME,
                                      SAGEMAKER_PROGRAM, SAGEMAKER_REGION,
                                      SAGEMAKER_SUBMIT_DIRECTORY, TUNING_OBJECTIVE_METRIC,
                                      distribution_hyperparameters)
from hpt.runtime.api import Progress, TrialAssignment
from hpt.core.trial import (EARLY_STOPPED, ENDED, FailureReason, TrainingJobRecord, TrialStatus,
                       never_matched)

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


class SageMakerTrainingJob:
    """One trial as a SageMaker training job, driven through boto3 clients."""

    def __init__(self, spec, assignment: TrialAssignment, trial_dir: Path, *, role_arn: str,
                 code_uri: str, sagemaker, logs, region: str = "us-east-1",
                 poll_seconds: float = POLL_SECONDS):
        self.spec = spec
        self.assignment = assignment
        self.name = assignment.training_job_name
        self.trial_dir = Path(trial_dir)
        self.request = create_training_job_request(spec, assignment, role_arn, code_uri, region)
        self.sagemaker, self.logs = sagemaker, logs
        self.poll_seconds = poll_seconds
        self.parser = MetricParser([(m.name, m.regex) for m in spec.metric_definitions])
        self.objective_name = spec.objective.metric
        self.objective_names = [o.metric for o in spec.all_objectives]
        self._pending: list[MetricPoint] = []
        self._record: TrainingJobRecord | None = None
        self._log_tokens: dict[str, str | None] = {}
        self._log_file = None
        self._last_lines: collections.deque[str] = collections.deque(maxlen=5)
        self.start_time = 0.0
        self._queued_at = assignment.suggested_at

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.trial_dir / LEAD_LOG, "a", buffering=1)
        self.start_time = time.time()
        self.sagemaker.create_training_job(**self.request)

    def advance(self, wait_seconds: float | None = None,
                poll_seconds: float | None = None) -> Progress:
        """Blocks until the next objective data point or the end of the training job (or,
        with `wait_seconds`, until that long passed: an empty Progress)."""
        give_up = None if wait_seconds is None else time.time() + wait_seconds
        while self._record is None:
            if self._pending:
                return Progress(point=self._pending.pop(0))
            job = self.sagemaker.describe_training_job(TrainingJobName=self.name)
            self._read_logs()
            if self._pending:
                continue
            if job[Column.TRAINING_JOB_STATUS] in ENDED:
                self._read_logs()  # the last lines may land just before the end
                if self._pending:
                    continue
                return Progress(record=self._finish(job))
            if give_up is not None and time.time() >= give_up:
                return Progress()
            time.sleep(self.poll_seconds if poll_seconds is None else poll_seconds)
        return Progress(record=self._record)

    def stop(self, reason: FailureReason = EARLY_STOPPED) -> TrainingJobRecord:
        if self._record is not None:
            return self._record
        job = self.sagemaker.describe_training_job(TrainingJobName=self.name)
        if job[Column.TRAINING_JOB_STATUS] not in ENDED:
            self.sagemaker.stop_training_job(TrainingJobName=self.name)
            deadline = time.time() + STOP_WAIT_SECONDS
            while job[Column.TRAINING_JOB_STATUS] not in ENDED and time.time() < deadline:
                time.sleep(self.poll_seconds)
                job = self.sagemaker.describe_training_job(TrainingJobName=self.name)
        self._read_logs()
        return self._finish(job, stopped_reason=reason)

    # -- logs and metrics ------------------------------------------------------------------

    def _read_logs(self) -> None:
        """New log lines of every host's stream; objective points go to the pending list."""
        try:
            streams = self.logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.name}/")["logStreams"]
        except self.logs.exceptions.ResourceNotFoundException:
            return  # no log group yet: the job has not started writing
        for stream in sorted(s["logStreamName"] for s in streams):
            if "/algo-1-" not in stream:
                continue  # the objective is read from the master host, as SageMaker does
            while True:
                kwargs = {"logGroupName": LOG_GROUP, "logStreamName": stream,
                          "startFromHead": True}
                if self._log_tokens.get(stream):
                    kwargs["nextToken"] = self._log_tokens[stream]
                page = self.logs.get_log_events(**kwargs)
                for event in page["events"]:
                    self._line(event["message"], event["timestamp"] / 1000.0)
                token = page.get("nextForwardToken")
                if token == self._log_tokens.get(stream):
                    break  # CloudWatch returns the same token once the stream is read
                self._log_tokens[stream] = token
                if not page["events"]:
                    break

    def _line(self, text: str, timestamp: float) -> None:
        if self._log_file is not None:
            self._log_file.write(text.rstrip("\n") + "\n")
        self._last_lines.append(text.rstrip("\n"))
        for point in self.parser.feed(text, timestamp):
            if point.name == self.objective_name:
                self._pending.append(point)

    # -- ending ----------------------------------------------------------------------------

    def _finish(self, job: dict[str, Any], stopped_reason: FailureReason | None = None
                ) -> TrainingJobRecord:
        status = TrialStatus(job[Column.TRAINING_JOB_STATUS])
        series = self.parser.series[self.objective_name]
        final = {m["MetricName"]: float(m["Value"]) for m in job.get("FinalMetricDataList", [])}
        objective = final.get(self.objective_name, series.final)
        reason = FailureReason.parse(job.get(Column.FAILURE_REASON))  # SageMaker's own words
        if status is TrialStatus.STOPPED:
            reason = stopped_reason or EARLY_STOPPED
        elif status is TrialStatus.COMPLETED:
            known = {**self.parser.final_values(), **final}
            missing = next((n for n in self.objective_names if known.get(n) is None), None)
            if missing is not None:
                status, reason = TrialStatus.FAILED, never_matched(
                    missing, self.parser.series[missing].regex, "the job's CloudWatch logs",
                    self._last_lines)
        started = _epoch(job.get(Column.TRAINING_START_TIME)) or self.start_time
        ended = _epoch(job.get(Column.TRAINING_END_TIME)) or time.time()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._record = TrainingJobRecord(
            trial_number=self.assignment.trial_number,
            training_job_name=self.name,
            hyperparameters=dict(self.assignment.hyperparameters),
            status=status,
            failure=reason,
            objective_value=objective if status is not TrialStatus.FAILED else None,
            final_metrics={**self.parser.final_values(), **final},
            objective_steps=len(series.points),
            start_time=started, end_time=ended, exit_code=None,
            log_path=str(self.trial_dir / LEAD_LOG),
            model_artifact=(job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
            if status is TrialStatus.COMPLETED else None,
            hosts=[f"algo-{i + 1}" for i in range(self.spec.trainer.instance_count)],
            queue_wait_seconds=round(self.start_time - self._queued_at, 4)
            if self._queued_at else None,
        )
        return self._record


def _epoch(value) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value)

