"""A CreateHyperParameterTuningJob request, as hpt runs it (pure).

`space_from_request` turns the request into the space.yaml hpt launches (through `hpt
import-sagemaker`'s reader, then the choices only a server can make: where the code was
unpacked, how many CPUs an instance type gets here, which runtime runs the image);
`refusals` says what hpt cannot run and what to change. `TuningRecord` is what the server
keeps of a job it created; shapes.py turns it and the job's journal into SageMaker's
responses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hpt.api.instances import Resources
from hpt.api.wire_protocol import VALIDATION, ApiError
from hpt.experiment.api_requests import DEFAULT_REGION, TuningRecord  # noqa: F401 - hpt.api's names
from hpt.core.sagemaker_names import (RESERVED_PREFIX, SAGEMAKER_PROGRAM,
                                      SAGEMAKER_SUBMIT_DIRECTORY, TUNING_OBJECTIVE_METRIC,
                                      is_reserved)
from hpt.spacefile.sagemaker_json.importing import (RequestError, from_request,
                                               resource_config)
from hpt.spacefile.sagemaker_json.names import is_placeholder

STOPPING = "Stopping"
TUNING_OBJECTIVE = TUNING_OBJECTIVE_METRIC  # SageMaker adds it to every training job
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
    statics = definition_of(request).get("StaticHyperParameters") or {}
    value = statics.get(SAGEMAKER_SUBMIT_DIRECTORY)
    return _loads(value) if value is not None else None


def training_image(request: dict[str, Any]) -> str:
    return (definition_of(request).get("AlgorithmSpecification") or {}).get("TrainingImage", "")


def instance_type(request: dict[str, Any]) -> str:
    return resource_config(definition_of(request)).get("InstanceType", "")


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
    cleaned = without_reserved(request)
    try:
        space, notes = from_request(cleaned)
    except RequestError as exc:
        raise ApiError(VALIDATION, str(exc)) from None
    # The reader's notes speak to someone editing a space.yaml; here the server fills in
    # what it says to fix, so only the rest are kept.
    notes = [n for n in notes if "source_dir" not in n and RESERVED_PREFIX not in n]
    return placed(space, placement), notes + placement.notes


def placed(space: dict[str, Any], placement: Placement) -> dict[str, Any]:
    """The space with the server's choices: the unpacked code, each host's share of the
    machine, the image and the runtime that runs it."""
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
    return space


def without_reserved(request: dict[str, Any]) -> dict[str, Any]:
    """The request without the static hyperparameters SageMaker keeps for itself (hpt writes
    its own into every job), except the two that say what code to run."""
    definition = dict(definition_of(request))
    statics = definition.get("StaticHyperParameters") or {}
    definition["StaticHyperParameters"] = {
        k: v for k, v in statics.items()
        if not is_reserved(k) or k in (SAGEMAKER_PROGRAM, SAGEMAKER_SUBMIT_DIRECTORY)
        or k.startswith(("sagemaker_mpi", "sagemaker_parameter_server",
                         "sagemaker_torch_distributed"))}
    return {**request, "TrainingJobDefinition": definition}


def objective_of(request: dict[str, Any]) -> dict[str, Any]:
    return (request.get("HyperParameterTuningJobConfig") or {}).get(
        "HyperParameterTuningJobObjective") or {}


def s3_output_of(request: dict[str, Any]) -> bool:
    """Whether the models go to S3 (the placeholder `hpt export-sagemaker` writes for a space
    without an output does not: they stay in the experiment folder)."""
    path = (definition_of(request).get("OutputDataConfig") or {}).get("S3OutputPath", "")
    return path.startswith("s3://") and not is_placeholder(path)


def definition_of(request: dict[str, Any]) -> dict[str, Any]:
    return request.get("TrainingJobDefinition") or {}


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


# The request's names for the space.yaml fields a problem can name (longest first), so a
# refusal speaks of what the client sent.
REQUEST_FIELDS = {
    "objective.metric": "HyperParameterTuningJobObjective.MetricName",
    "objective.type": "HyperParameterTuningJobObjective.Type",
    "metric_definitions": "AlgorithmSpecification.MetricDefinitions",
    "static_hyperparameters": "StaticHyperParameters",
    "hyperparameters": "ParameterRanges",
    "trainer.entry_point": "StaticHyperParameters.sagemaker_program",
    "trainer.source_dir": "StaticHyperParameters.sagemaker_submit_directory",
    "trainer.max_runtime_seconds": "StoppingCondition.MaxRuntimeInSeconds",
    "trainer.instance_count": "ResourceConfig.InstanceCount",
    "trainer.environment": "Environment",
    "trainer": "TrainingJobDefinition",
    "limits.max_trials": "ResourceLimits.MaxNumberOfTrainingJobs",
    "limits.max_parallel": "ResourceLimits.MaxParallelTrainingJobs",
    "limits.max_runtime_seconds": "ResourceLimits.MaxRuntimeInSeconds",
    "channels": "InputDataConfig",
    "warm_start": "WarmStartConfig",
    "completion": "TuningJobCompletionCriteria",
    "strategy_config": "StrategyConfig",
    "strategy": "Strategy",
    "early_stopping": "TrainingJobEarlyStoppingType",
    "output": "OutputDataConfig.S3OutputPath",
    "seed": "RandomSeed",
    "name": "HyperParameterTuningJobName",
}


def in_request_terms(problem: str) -> str:
    """`hyperparameters.lr.min: must be <= max` -> `ParameterRanges lr.min: must be <= max`."""
    path, sep, rest = problem.partition(": ")
    for spec_field, name in REQUEST_FIELDS.items():
        if path == spec_field or path.startswith(spec_field + "."):
            inner = path[len(spec_field) + 1:]
            return f"{name}{' ' + inner if inner else ''}{sep}{rest}"
    return problem

