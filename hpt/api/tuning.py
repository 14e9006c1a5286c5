"""SageMaker's tuning-job and training-job resources, from hpt's record of a tuning job (pure).

`space_from_request` turns a CreateHyperParameterTuningJob request into the space.yaml hpt
launches (through `hpt import-sagemaker`'s reader, then the choices only a server can make:
where the code was unpacked, how many CPUs an instance type gets here, which runtime runs
the image). The describe/summary functions turn the request, the job's journal (folded into
`trial_rows`) and its state back into SageMaker's response shapes, so what boto3 or the
SageMaker SDK read is exactly what `hpt status` and the table say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hpt.api.instances import Resources
from hpt.api.protocol import VALIDATION, ApiError
from hpt.experiment.best import BestSoFar
from hpt.experiment.job_state import (COMPLETED, FAILED, IN_PROGRESS, RESUMABLE, STOPPED,
                                      JobState)
from hpt.sagemaker_names import is_reserved
from hpt.spec.sagemaker_json.importing import (RequestError, _decode_category, from_request,
                                               resource_config)
from hpt.trial import TrialStatus

STOPPING = "Stopping"
TUNING_OBJECTIVE = "_tuning_objective_metric"  # SageMaker adds it to every training job
DEFAULT_REGION = "us-east-1"
ACCOUNT = "000000000000"  # hpt's one account: STS GetCallerIdentity says the same


def arn(kind: str, name: str, region: str = DEFAULT_REGION) -> str:
    """`arn:aws:sagemaker:us-east-1:000000000000:training-job/name` (SageMaker lower-cases
    the name in its ARNs)."""
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name.lower()}"


# -- the request -> the space ------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where and how the training jobs of a request run (the server's choices)."""
    runtime: str                  # local | docker
    source_dir: str | None        # the unpacked sagemaker_submit_directory; None: the image's
    image: str | None             # the local image a docker runtime runs
    resources: Resources          # per host
    notes: list[str] = field(default_factory=list)


def submit_directory(request: dict[str, Any]) -> str | None:
    """The S3 URI of the training code (script mode's `sagemaker_submit_directory`)."""
    statics = _definition(request).get("StaticHyperParameters") or {}
    value = statics.get("sagemaker_submit_directory")
    return _loads(value) if value is not None else None


def training_image(request: dict[str, Any]) -> str:
    return (_definition(request).get("AlgorithmSpecification") or {}).get("TrainingImage", "")


def instance_type(request: dict[str, Any]) -> str:
    return resource_config(_definition(request)).get("InstanceType", "")


def refusals(request: dict[str, Any]) -> list[str]:
    """What hpt cannot do, each with what to change (SageMaker's ValidationException)."""
    found = []
    if request.get("TrainingJobDefinitions"):
        found.append("TrainingJobDefinitions: hpt runs one training job definition per tuning "
                     "job; send a single TrainingJobDefinition")
    if request.get("Autotune"):
        found.append("Autotune: hpt does not choose the tuning settings for you; give "
                     "HyperParameterTuningJobConfig in full and leave Autotune out")
    if not request.get("TrainingJobDefinition"):
        found.append("TrainingJobDefinition: required; give the training job definition")
        return found
    definition = request["TrainingJobDefinition"]
    algorithm = definition.get("AlgorithmSpecification") or {}
    if algorithm.get("AlgorithmName"):
        found.append("AlgorithmSpecification.AlgorithmName: marketplace and built-in "
                     "algorithms run on AWS only; give a TrainingImage with your script")
    if algorithm.get("TrainingInputMode", "File") != "File":
        found.append(f"AlgorithmSpecification.TrainingInputMode: {algorithm['TrainingInputMode']}"
                     f" is not supported; hpt gives every channel as files (File)")
    for i, channel in enumerate(definition.get("InputDataConfig") or []):
        source = channel.get("DataSource") or {}
        if "S3DataSource" not in source:
            found.append(f"InputDataConfig[{i}].DataSource: only S3DataSource channels are "
                         f"supported; put the data in S3")
        elif (source["S3DataSource"].get("S3DataType") or "S3Prefix") != "S3Prefix":
            found.append(f"InputDataConfig[{i}].DataSource.S3DataSource.S3DataType: only "
                         f"S3Prefix is supported; point S3Uri at the prefix holding the data")
    if len((definition.get("HyperParameterTuningResourceConfig") or {}).get(
            "InstanceConfigs") or []) > 1:
        found.append("HyperParameterTuningResourceConfig.InstanceConfigs: hpt runs one "
                     "instance type per tuning job; give one")
    config = request.get("HyperParameterTuningJobConfig") or {}
    if "MaxNumberOfTrainingJobs" not in (config.get("ResourceLimits") or {}):
        found.append("HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs: "
                     "hpt needs a number of training jobs; set it")
    return found


def space_from_request(request: dict[str, Any], placement: Placement) -> tuple[dict, list[str]]:
    """The space.yaml (a dict) hpt launches for the request, and the notes of what was
    assumed; ApiError ValidationException for what hpt cannot run."""
    problems = refusals(request)
    if problems:
        raise ApiError(VALIDATION, "; ".join(problems))
    cleaned = _without_reserved(request)
    try:
        space, notes = from_request(cleaned)
    except RequestError as exc:
        raise ApiError(VALIDATION, str(exc)) from None
    # The reader's notes speak to someone editing a space.yaml; here the server fills in
    # what it says to fix, so only the rest are kept.
    notes = [n for n in notes if "source_dir" not in n and "sagemaker_" not in n]
    trainer = space["trainer"]
    if placement.source_dir is not None:
        trainer["source_dir"] = placement.source_dir
    trainer["cpus_per_host"] = placement.resources.cpus
    trainer["gpus_per_host"] = placement.resources.gpus
    if placement.image:
        trainer["image"] = placement.image
    else:
        trainer.pop("image", None)
    space["runtime"] = placement.runtime
    return space, notes + placement.notes


def _without_reserved(request: dict[str, Any]) -> dict[str, Any]:
    """The request without the static hyperparameters SageMaker keeps for itself (hpt writes
    its own into every job), except the two that say what code to run."""
    definition = dict(_definition(request))
    statics = definition.get("StaticHyperParameters") or {}
    definition["StaticHyperParameters"] = {
        k: v for k, v in statics.items()
        if not is_reserved(k) or k in ("sagemaker_program", "sagemaker_submit_directory")
        or k.startswith(("sagemaker_mpi", "sagemaker_parameter_server",
                         "sagemaker_torch_distributed"))}
    return {**request, "TrainingJobDefinition": definition}


# -- the job's record -> SageMaker's shapes ----------------------------------------------------


@dataclass(frozen=True)
class TuningRecord:
    """What the server keeps of a tuning job it created (request.json in its folder)."""
    request: dict[str, Any]
    creation_time: float
    region: str = DEFAULT_REGION
    stop_requested: float | None = None
    failure: str | None = None  # the job could not start (e.g. its code did not download)

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


def job_status(row: dict[str, Any], s3_output: bool) -> tuple[str, str, str | None]:
    """(TrainingJobStatus, SecondaryStatus, FailureReason) of one training job. A completed
    job whose model is still being uploaded is InProgress/Uploading, as on SageMaker: once it
    says Completed, ModelArtifacts exists."""
    status = str(row.get("status", IN_PROGRESS))
    reason = row.get("failure_reason")
    if status == COMPLETED and s3_output and not row.get("s3_model_artifact"):
        if row.get("upload_failure"):
            return FAILED, FAILED, f"ClientError: uploading the model failed: " \
                                   f"{row['upload_failure']}"
        return IN_PROGRESS, "Uploading", None
    secondary = {IN_PROGRESS: "Training"}.get(status, status)
    if status == FAILED and reason and reason.startswith("MaxRuntimeExceeded"):
        secondary = "MaxRuntimeExceeded"
    return status, secondary, reason


def _objective(request: dict[str, Any]) -> dict[str, Any]:
    return (request.get("HyperParameterTuningJobConfig") or {}).get(
        "HyperParameterTuningJobObjective") or {}


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
            texts = dict(zip(map(_key, _decode_category(r["Values"])), r["Values"]))
            out[r["Name"]] = texts.get(_key(value), _number(value))
    return out


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _number(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def objective_status(row: dict[str, Any]) -> str:
    if row.get("status", IN_PROGRESS) == IN_PROGRESS:
        return "Pending"
    return "Succeeded" if row.get("objective_value") is not None else "Failed"


def training_summary(record: TuningRecord, row: dict[str, Any], s3_output: bool) -> dict:
    """A HyperParameterTrainingJobSummary."""
    status, _, reason = job_status(row, s3_output)
    objective = _objective(record.request)
    summary = {
        "TrainingJobName": row["training_job_name"],
        "TrainingJobArn": arn("training-job", row["training_job_name"], record.region),
        "TuningJobName": record.name,
        "CreationTime": row.get("start_time"),
        "TrainingStartTime": row.get("start_time"),
        "TrainingEndTime": row.get("end_time") if status != IN_PROGRESS else None,
        "TrainingJobStatus": status,
        "TunedHyperParameters": tuned_text(record.request, row.get("hyperparameters") or {}),
        "FailureReason": reason,
        "ObjectiveStatus": objective_status(row),
    }
    if row.get("objective_value") is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": objective.get("Type"), "MetricName": objective.get("MetricName"),
            "Value": float(row["objective_value"])}
    return summary


def counters(rows: list[dict[str, Any]], s3_output: bool) -> tuple[dict, dict]:
    """(TrainingJobStatusCounters, ObjectiveStatusCounters)."""
    jobs = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0,
            "Stopped": 0}
    objectives = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    for row in rows:
        status = job_status(row, s3_output)[0]
        if status == FAILED:
            jobs["RetryableError" if row.get("infrastructure_failure") else
                 "NonRetryableError"] += 1
        else:
            jobs[status] += 1
        objectives[objective_status(row)] += 1
    return jobs, objectives


def s3_output_of(request: dict[str, Any]) -> bool:
    path = (_definition(request).get("OutputDataConfig") or {}).get("S3OutputPath", "")
    return path.startswith("s3://")


def describe_tuning_job(record: TuningRecord, state: JobState | None,
                        rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict:
    """The DescribeHyperParameterTuningJob response."""
    request = record.request
    s3_output = s3_output_of(request)
    status = tuning_status(record, state)
    jobs, objectives = counters(rows, s3_output)
    best = BestSoFar(_objective(request).get("Type") == "Maximize")
    for row in rows:
        best.offer(row)
    end = next((e["time"] for e in reversed(events) if e.get("event") == "job_ended"), None)
    definition = dict(_definition(request))
    definition["StaticHyperParameters"] = {
        **(definition.get("StaticHyperParameters") or {}),
        TUNING_OBJECTIVE: json.dumps(_objective(request).get("MetricName"))}
    # As SageMaker describes a job: the instances as a ResourceConfig even when the request
    # gave HyperParameterTuningResourceConfig (the SDK's attach reads ResourceConfig), and
    # the defaults it applied written out.
    definition.setdefault("ResourceConfig", {"VolumeSizeInGB": 30, "InstanceCount": 1,
                                             **resource_config(definition)})
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
        "LastModifiedTime": events[-1]["time"] if events else record.creation_time,
        "TrainingJobStatusCounters": jobs,
        "ObjectiveStatusCounters": objectives,
        "WarmStartConfig": request.get("WarmStartConfig"),
        "FailureReason": record.failure or (state.failure if state and status == FAILED
                                            else None),
    }
    if best.record is not None:
        response["BestTrainingJob"] = training_summary(record, best.record, s3_output)
    if end is not None and state is not None and state.reason:
        response["TuningJobCompletionDetails"] = {
            "NumberOfTrainingJobsObjectiveNotImproving": _not_improving(rows, best.maximize)}
    started = events[0]["time"] if events else None
    if started is not None:
        response["ConsumedResources"] = {"RuntimeInSeconds": int(
            (end if end and status != IN_PROGRESS else events[-1]["time"]) - started)}
    return response


def _not_improving(rows: list[dict[str, Any]], maximize: bool) -> int:
    """Completed jobs since the last one that improved the best (in trial order)."""
    best = BestSoFar(maximize)
    since = 0
    for row in rows:
        if row.get("status") != TrialStatus.COMPLETED or row.get("objective_value") is None:
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


def describe_training_job(record: TuningRecord, row: dict[str, Any]) -> dict:
    """The DescribeTrainingJob response of one training job of a tuning job."""
    request = record.request
    definition = _definition(request)
    name = row["training_job_name"]
    s3_output = s3_output_of(request)
    status, secondary, reason = job_status(row, s3_output)
    output = (definition.get("OutputDataConfig") or {}).get("S3OutputPath", "")
    hyperparameters = {**(definition.get("StaticHyperParameters") or {}),
                       **tuned_text(request, row.get("hyperparameters") or {}),
                       TUNING_OBJECTIVE: json.dumps(_objective(request).get("MetricName"))}
    start, end = row.get("start_time"), row.get("end_time")
    ended = status != IN_PROGRESS
    seconds = int(end - start) if ended and start and end else None
    response = {
        "TrainingJobName": name,
        "TrainingJobArn": arn("training-job", name, record.region),
        "TuningJobArn": arn("hyper-parameter-tuning-job", record.name, record.region),
        "ModelArtifacts": {"S3ModelArtifacts": row.get("s3_model_artifact") or
                           f"{output.rstrip('/')}/{name}/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "FailureReason": reason,
        "HyperParameters": hyperparameters,
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
        "CreationTime": start or record.creation_time,
        "TrainingStartTime": start,
        "TrainingEndTime": end if ended else None,
        "LastModifiedTime": (end if ended else start) or record.creation_time,
        "SecondaryStatusTransitions": _transitions(start, end if ended else None, secondary),
        "FinalMetricDataList": [
            {"MetricName": metric, "Value": float(value), "Timestamp": end or start}
            for metric, value in (row.get("final_metrics") or {}).items()
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
    return response


def _transitions(start, end, last: str) -> list[dict[str, Any]]:
    if start is None:
        return []
    steps = [{"Status": "Starting", "StartTime": start, "EndTime": start,
              "StatusMessage": "Preparing the instances for training"},
             {"Status": "Training", "StartTime": start,
              "StatusMessage": "Training image download completed. Training in progress."}]
    if end is not None:
        steps[-1]["EndTime"] = end
        if last != "Training":
            steps.append({"Status": last, "StartTime": end, "EndTime": end,
                          "StatusMessage": f"Training job {last.lower()}"})
    return steps


def _definition(request: dict[str, Any]) -> dict[str, Any]:
    return request.get("TrainingJobDefinition") or {}


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text
