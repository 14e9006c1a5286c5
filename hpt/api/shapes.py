"""SageMaker's response shapes of a tuning job and its training jobs, from hpt's record of
the job (pure): the request, the journal folded into `trial_rows`, and the job's state. What
boto3 and the SageMaker SDK read is what `hpt status` and the table say."""

from __future__ import annotations

import json
import math
from typing import Any

from hpt.api.tuning import (STOPPING, TUNING_OBJECTIVE, TuningRecord, arn, definition_of,
                            objective_of, s3_output_of)
from hpt.core.sagemaker_names import MODEL_ARCHIVE
from hpt.core.schema import Column, Event, Key
from hpt.experiment.best import BestSoFar
from hpt.spacefile.sagemaker_json.importing import decode_category, resource_config
from hpt.experiment.job_state import (COMPLETED, FAILED, IN_PROGRESS, RESUMABLE, STOPPED,
                                      JobState)
from hpt.core.trial import TrialStatus


def tuning_status(record: TuningRecord, state: JobState | None) -> str:
    """SageMaker's HyperParameterTuningJobStatus. A job the server will resume (its launcher
    was lost or interrupted) is still InProgress; one asked to stop is Stopping until its
    launcher ended it."""
    if record.failure:
        return FAILED
    if state is None:  # not launched yet
        return STOPPED if record.stop_requested else IN_PROGRESS
    if state.status == IN_PROGRESS:
        return STOPPING if record.stop_requested else IN_PROGRESS
    if state.status == STOPPED and state.reason in RESUMABLE and not record.stop_requested:
        return IN_PROGRESS
    return str(state.status)


def job_status(row: dict[str, Any], s3_output: bool,
               stop_asked: float | None = None) -> tuple[str, str, str | None]:
    """(TrainingJobStatus, SecondaryStatus, FailureReason) of one training job. A completed
    job whose model is still being uploaded is InProgress/Uploading, as on SageMaker: once it
    says Completed, ModelArtifacts exists. A running job asked to stop (StopTrainingJob) is
    Stopping until it has (`stop_asked`: when it was asked)."""
    status = str(row.get(Key.STATUS, IN_PROGRESS))
    reason = row.get(Key.FAILURE_REASON)
    if status == IN_PROGRESS and stop_asked is not None:
        return STOPPING, STOPPING, None
    if status == COMPLETED and s3_output and not row.get(Key.S3_MODEL_ARTIFACT):
        if row.get(Key.UPLOAD_FAILURE):
            return FAILED, FAILED, f"ClientError: uploading the model failed: " \
                                   f"{row[Key.UPLOAD_FAILURE]}"
        return IN_PROGRESS, "Uploading", None
    secondary = {IN_PROGRESS: "Training"}.get(status, status)
    if status == FAILED and reason and reason.startswith("MaxRuntimeExceeded"):
        secondary = "MaxRuntimeExceeded"
    return status, secondary, reason


def tuned_text(request: dict[str, Any], hyperparameters: dict[str, Any]) -> dict[str, str]:
    """The tuned hyperparameters as SageMaker writes them: a categorical value as the very
    string of the range (the SDK JSON-encodes them for framework estimators, and reads them
    back with json.loads), a number as its shortest text."""
    ranges = (request.get("HyperParameterTuningJobConfig") or {}).get("ParameterRanges") or {}
    out = {}
    for kind in ("IntegerParameterRanges", "ContinuousParameterRanges"):
        for r in ranges.get(kind) or []:
            if r["Name"] in hyperparameters:
                out[r["Name"]] = _number(hyperparameters[r["Name"]])
    for r in ranges.get("CategoricalParameterRanges") or []:
        if r["Name"] in hyperparameters:
            value = hyperparameters[r["Name"]]
            texts = dict(zip(map(_key, decode_category(r["Values"])), r["Values"]))
            out[r["Name"]] = texts.get(_key(value), _number(value))
    return out


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _number(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def objective_status(row: dict[str, Any]) -> str:
    if row.get(Key.STATUS, IN_PROGRESS) == IN_PROGRESS:
        return "Pending"
    return "Succeeded" if row.get(Key.OBJECTIVE_VALUE) is not None else str(FAILED)


def training_summary(record: TuningRecord, row: dict[str, Any], s3_output: bool) -> dict:
    """A HyperParameterTrainingJobSummary."""
    status, _, reason = job_status(row, s3_output)
    objective = objective_of(record.request)
    summary = {
        Column.TRAINING_JOB_NAME: row[Key.TRAINING_JOB_NAME],
        "TrainingJobArn": arn("training-job", row[Key.TRAINING_JOB_NAME], record.region),
        "TuningJobName": record.name,
        "CreationTime": row.get(Key.START_TIME),
        Column.TRAINING_START_TIME: row.get(Key.START_TIME),
        Column.TRAINING_END_TIME: row.get(Key.END_TIME) if status != IN_PROGRESS else None,
        Column.TRAINING_JOB_STATUS: status,
        "TunedHyperParameters": tuned_text(record.request, row.get(Key.HYPERPARAMETERS) or {}),
        Column.FAILURE_REASON: reason,
        "ObjectiveStatus": objective_status(row),
    }
    if row.get(Key.OBJECTIVE_VALUE) is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": objective.get("Type"), "MetricName": objective.get("MetricName"),
            "Value": float(row[Key.OBJECTIVE_VALUE])}
    return summary


def counters(rows: list[dict[str, Any]], s3_output: bool) -> tuple[dict, dict]:
    """(TrainingJobStatusCounters, ObjectiveStatusCounters)."""
    jobs = {str(COMPLETED): 0, str(IN_PROGRESS): 0, "RetryableError": 0,
            "NonRetryableError": 0, str(STOPPED): 0}
    objectives = {"Succeeded": 0, "Pending": 0, str(FAILED): 0}
    for row in rows:
        status = job_status(row, s3_output)[0]
        if status == FAILED:
            jobs["RetryableError" if row.get(Key.INFRASTRUCTURE_FAILURE) else
                 "NonRetryableError"] += 1
        else:
            jobs[status] += 1
        objectives[objective_status(row)] += 1
    return jobs, objectives


def describe_tuning_job(record: TuningRecord, state: JobState | None,
                        rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict:
    """The DescribeHyperParameterTuningJob response."""
    request = record.request
    s3_output = s3_output_of(request)
    status = tuning_status(record, state)
    jobs, objectives = counters(rows, s3_output)
    best = BestSoFar(objective_of(request).get("Type") == "Maximize")
    for row in rows:
        best.offer(row)
    end = next((e[Key.TIME] for e in reversed(events) if e.get(Key.EVENT) == Event.JOB_ENDED), None)
    definition = dict(definition_of(request))
    definition["StaticHyperParameters"] = {
        **(definition.get("StaticHyperParameters") or {}),
        TUNING_OBJECTIVE: json.dumps(objective_of(request).get("MetricName"))}
    # As SageMaker describes a job: the instances as a ResourceConfig even when the request
    # gave HyperParameterTuningResourceConfig (the SDK's attach reads ResourceConfig), and
    # the defaults it applied written out.
    definition["ResourceConfig"] = {"VolumeSizeInGB": 30, "InstanceCount": 1,
                                    **resource_config(definition)}
    definition.pop("HyperParameterTuningResourceConfig", None)  # one or the other, as on AWS
    config = dict(request["HyperParameterTuningJobConfig"])
    config.setdefault("Strategy", "Bayesian")
    config.setdefault("TrainingJobEarlyStoppingType", "Off")
    config["ResourceLimits"] = {"MaxParallelTrainingJobs": 1, **config["ResourceLimits"]}
    response = {
        "HyperParameterTuningJobName": record.name,
        "HyperParameterTuningJobArn": arn("hyper-parameter-tuning-job", record.name,
                                          record.region),
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        "HyperParameterTuningJobStatus": status,
        "CreationTime": record.creation_time,
        "HyperParameterTuningEndTime": end if status in (COMPLETED, FAILED, STOPPED) else None,
        "LastModifiedTime": events[-1][Key.TIME] if events else record.creation_time,
        "TrainingJobStatusCounters": jobs,
        "ObjectiveStatusCounters": objectives,
        "WarmStartConfig": request.get("WarmStartConfig"),
        Column.FAILURE_REASON: record.failure or (state.failure if state and status == FAILED
                                            else None),
    }
    if best.record is not None:
        response["BestTrainingJob"] = training_summary(record, best.record, s3_output)
    if end is not None and state is not None and state.reason:
        response["TuningJobCompletionDetails"] = {
            "NumberOfTrainingJobsObjectiveNotImproving": _not_improving(rows, best.maximize)}
    started = events[0][Key.TIME] if events else None
    if started is not None:
        response["ConsumedResources"] = {"RuntimeInSeconds": int(
            (end if end and status != IN_PROGRESS else events[-1][Key.TIME]) - started)}
    return response


def _not_improving(rows: list[dict[str, Any]], maximize: bool) -> int:
    """Completed jobs since the last one that improved the best (in trial order)."""
    best = BestSoFar(maximize)
    since = 0
    for row in rows:
        if row.get(Key.STATUS) != TrialStatus.COMPLETED or row.get(Key.OBJECTIVE_VALUE) is None:
            continue
        since = 0 if best.offer(row) else since + 1
    return since


def tuning_summary(record: TuningRecord, state: JobState | None,
                   rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict:
    """A HyperParameterTuningJobSummary (ListHyperParameterTuningJobs)."""
    described = describe_tuning_job(record, state, rows, events)
    config = record.request["HyperParameterTuningJobConfig"]
    return {
        "HyperParameterTuningJobName": record.name,
        "HyperParameterTuningJobArn": described["HyperParameterTuningJobArn"],
        "HyperParameterTuningJobStatus": described["HyperParameterTuningJobStatus"],
        "Strategy": config.get("Strategy", "Bayesian"),
        "CreationTime": record.creation_time,
        "HyperParameterTuningEndTime": described.get("HyperParameterTuningEndTime"),
        "LastModifiedTime": described["LastModifiedTime"],
        "TrainingJobStatusCounters": described["TrainingJobStatusCounters"],
        "ObjectiveStatusCounters": described["ObjectiveStatusCounters"],
        "ResourceLimits": config.get("ResourceLimits"),
    }


def describe_training_job(record: TuningRecord, row: dict[str, Any],
                          stop_asked: float | None = None, alone: bool = False) -> dict:
    """DescribeTrainingJob of a tuning job's training job, or (`alone`) of one on its own:
    `record` holds its request in tuning form (api/training.py), no tuning ARN, objective."""
    request = record.request
    definition = definition_of(request)
    name = row[Key.TRAINING_JOB_NAME]
    s3_output = s3_output_of(request)
    status, secondary, reason = job_status(row, s3_output, stop_asked)
    output = (definition.get("OutputDataConfig") or {}).get("S3OutputPath", "")
    start, end = row.get(Key.START_TIME), row.get(Key.END_TIME)
    ended = status != IN_PROGRESS
    # Whole seconds, at least 1 (SageMaker's minimum, as its model says): a job of 0.4 s
    # was still a job
    seconds = max(1, math.ceil(end - start)) if ended and start and end else None
    steps = transitions(row, secondary, stop_asked)
    response = {
        Column.TRAINING_JOB_NAME: name,
        "TrainingJobArn": arn("training-job", name, record.region),
        "TuningJobArn": arn("hyper-parameter-tuning-job", record.name, record.region),
        "ModelArtifacts": {"S3ModelArtifacts": row.get(Key.S3_MODEL_ARTIFACT) or
                           f"{output.rstrip('/')}/{name}/output/{MODEL_ARCHIVE}"},
        Column.TRAINING_JOB_STATUS: status,
        "SecondaryStatus": secondary,
        Column.FAILURE_REASON: reason,
        "HyperParameters": _hyperparameters_of(request, row, alone),
        # With the defaults SageMaker fills in (the SDK's attach reads them).
        "AlgorithmSpecification": {"TrainingInputMode": "File",
                                   **definition["AlgorithmSpecification"]},
        "RoleArn": definition.get("RoleArn"),
        "InputDataConfig": definition.get("InputDataConfig"),
        "OutputDataConfig": {"KmsKeyId": "", **(definition.get("OutputDataConfig") or {})},
        "ResourceConfig": {"VolumeSizeInGB": 30, "InstanceCount": 1,
                           **resource_config(definition)},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400,
                              **(definition.get("StoppingCondition") or {})},
        # Created when the tuning job proposed it (before its wait to be placed)
        "CreationTime": steps[0]["StartTime"] if steps else record.creation_time,
        Column.TRAINING_START_TIME: start,
        Column.TRAINING_END_TIME: end if ended else None,
        "LastModifiedTime": steps[-1]["StartTime"] if steps else record.creation_time,
        "SecondaryStatusTransitions": steps,
        "FinalMetricDataList": [
            {"MetricName": metric, "Value": float(value), "Timestamp": end or start}
            for metric, value in (row.get(Key.FINAL_METRICS) or {}).items()
            if value is not None],
        "EnableNetworkIsolation": definition.get("EnableNetworkIsolation", False),
        "EnableInterContainerTrafficEncryption":
            definition.get("EnableInterContainerTrafficEncryption", False),
        "EnableManagedSpotTraining": definition.get("EnableManagedSpotTraining", False),
        "CheckpointConfig": definition.get("CheckpointConfig"),
        "VpcConfig": definition.get("VpcConfig"),
        "TrainingTimeInSeconds": seconds,
        "BillableTimeInSeconds": seconds,
    }
    if definition.get("Environment"):
        response["Environment"] = definition["Environment"]
    if alone:
        del response["TuningJobArn"]
    return response


def _hyperparameters_of(request: dict[str, Any], row: dict[str, Any],
                        alone: bool) -> dict[str, str]:
    """What the job ran with, as SageMaker echoes it: the static ones and the tuned ones, and
    the tuning objective SageMaker adds to a tuning job's training jobs."""
    found = {**(definition_of(request).get("StaticHyperParameters") or {}),
             **tuned_text(request, row.get(Key.HYPERPARAMETERS) or {})}
    if not alone:
        found[TUNING_OBJECTIVE] = json.dumps(objective_of(request).get("MetricName"))
    return found


# What SageMaker says in each SecondaryStatusTransition (the SDK prints them while it waits).
PHASE_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    STOPPING: "Stopping the training job",
    COMPLETED: "Training job completed",
    FAILED: "Training job failed",
    STOPPED: "Training job stopped",
    "MaxRuntimeExceeded": "Training job exceeded the MaxRuntimeInSeconds provided",
}


def transitions(row: dict[str, Any], secondary: str,
                stop_asked: float | None = None) -> list[dict[str, Any]]:
    """SecondaryStatusTransitions of one training job, from what its row knows (pure):
    Starting while it waited to be placed (its queue wait), Downloading while hpt built its
    /opt/ml tree and channels and started it (its launch), Training while the script ran,
    Uploading until its model reached S3, Stopping from the StopTrainingJob, then how it
    ended. The queue wait and launch are known once the job ended; until then the job is
    Starting, then Training, from its start."""
    start = row.get(Key.START_TIME)
    if start is None:
        return []
    end = row.get(Key.END_TIME) if secondary not in ("Training", STOPPING) else None
    began = start - (row.get(Key.LAUNCH_SECONDS) or 0.0)
    phases: list[tuple[str, float, float | None]] = [
        ("Starting", began - (row.get(Key.QUEUE_WAIT_SECONDS) or 0.0), began),
        ("Downloading", began, start), ("Training", start, end)]
    if end is None:
        if stop_asked is not None and secondary == STOPPING:
            phases[-1] = ("Training", start, max(start, stop_asked))
            phases.append((STOPPING, max(start, stop_asked), None))
    elif secondary == "Uploading":
        phases.append(("Uploading", end, None))
    else:
        uploaded = row.get(Key.UPLOAD_TIME)
        if uploaded is not None and secondary == COMPLETED:
            phases.append(("Uploading", end, uploaded))
            end = uploaded
        phases.append((secondary, end, end))
    steps = []
    for status, begin, finish in phases:
        step = {"Status": status, "StartTime": begin,
                "StatusMessage": PHASE_MESSAGES.get(status, status)}
        if finish is not None:
            step["EndTime"] = finish
        steps.append(step)
    return steps