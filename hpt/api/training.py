"""A CreateTrainingJob request, as hpt runs it (pure).

A training job shares its fields with a tuning job's TrainingJobDefinition (the algorithm,
channels, output, resources, stopping condition, environment), its HyperParameters being
that definition's static ones. So the request is read as that definition
(`as_tuning_request`), and refused, placed and staged by the same rules as a tuning job's
(hpt/api/tuning.py, staging.py); what differs is the space: a TrainingJobSpec, no ranges, no
objective, named as asked (hpt/spacefile/training_spec.py).
"""

from __future__ import annotations

from typing import Any

from hpt.api.tuning import Placement, placed, refusals, without_reserved
from hpt.api.warm_pools import keep_alive_refusal
from hpt.api.wire_protocol import VALIDATION, ApiError
from hpt.core.sagemaker_names import RESERVED_PREFIX
from hpt.core.schema import Column
from hpt.spacefile.sagemaker_json.importing import RequestError, training_job_space

CHECKPOINTS_PATH = "/opt/ml/checkpoints"  # CheckpointConfig.LocalPath's default
# What SageMaker accepts that hpt takes without acting on it, said once per job at create.
ACCEPTED_AS_IS = {
    "DebugHookConfig": "SageMaker Debugger does not run here",
    "DebugRuleConfigurations": "SageMaker Debugger rules do not run here",
    "ProfilerConfig": "SageMaker Profiler does not run here",
    "ProfilerRuleConfigurations": "SageMaker Profiler rules do not run here",
    "TensorBoardOutputConfig": "TensorBoard output stays in the job's folder",
    "EnableManagedSpotTraining": "the job runs on this machine, not on spot capacity (a job "
                                 "the server's death cut short is started again, as spot "
                                 "training restarts an interrupted one)",
    "VpcConfig": "the job runs on this machine's network",
}


def as_tuning_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request as the tuning request whose one definition it is (for the rules tuning
    requests are refused, placed and fetched by)."""
    definition = {k: v for k, v in request.items() if k not in (
        Column.TRAINING_JOB_NAME, "HyperParameters", "Tags")}
    definition["StaticHyperParameters"] = dict(request.get("HyperParameters") or {})
    return {"HyperParameterTuningJobName": request[Column.TRAINING_JOB_NAME],
            "HyperParameterTuningJobConfig": {"ResourceLimits": {"MaxNumberOfTrainingJobs": 1}},
            "TrainingJobDefinition": definition, "Tags": request.get("Tags") or []}


def training_refusals(request: dict[str, Any]) -> list[str]:
    """What hpt cannot run of this training job, each with what to change."""
    found = refusals(as_tuning_request(request))
    keep_alive = keep_alive_refusal(request)
    if keep_alive:
        found.append(keep_alive)
    local_path = (request.get("CheckpointConfig") or {}).get("LocalPath")
    if local_path and local_path.rstrip("/") != CHECKPOINTS_PATH:
        found.append(f"CheckpointConfig.LocalPath: {local_path}; hpt syncs the job's "
                     f"{CHECKPOINTS_PATH} (its tree's checkpoints/); leave LocalPath out")
    return found


def accepted_as_is(request: dict[str, Any]) -> list[str]:
    """What the request sets that hpt accepts but does not act on (said once, never silently
    wrong)."""
    return [f"{key}: accepted; {why}" for key, why in ACCEPTED_AS_IS.items()
            if request.get(key)]


def training_space(request: dict[str, Any], placement: Placement) -> tuple[dict, list[str]]:
    """The training job's space (a dict for TrainingJobSpec) and the notes of what was
    assumed; ApiError ValidationException for what hpt cannot run."""
    problems = training_refusals(request)
    if problems:
        raise ApiError(VALIDATION, "; ".join(problems))
    definition = without_reserved(as_tuning_request(request))["TrainingJobDefinition"]
    cleaned = {**request, "HyperParameters": definition["StaticHyperParameters"]}
    try:
        space, notes = training_job_space(cleaned)
    except RequestError as exc:
        raise ApiError(VALIDATION, str(exc)) from None
    notes = [n for n in notes if "source_dir" not in n and RESERVED_PREFIX not in n]
    return placed(space, placement), notes + placement.notes + accepted_as_is(request)
