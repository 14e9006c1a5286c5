"""SageMaker's names and rules, defined once.

Read by the space.yaml validation (`hpt/spacefile`), the training contract
(`runtime/contract.py`), the distributed plan (`runtime/distribution_plan.py`), both request
builders (`runtime/sagemaker_job.py`'s CreateTrainingJob, `spacefile/sagemaker_json`'s
CreateHyperParameterTuningJob) and the import.
Standard library only: `hpt validate` must not load botocore to check a name.
tests/test_sagemaker_names.py checks every pattern against botocore's model of the API and
the reserved keys against the `sagemaker-training` toolkit, which are the sources.
"""

from __future__ import annotations

import functools
import re

# -- hyperparameters ---------------------------------------------------------------------------

# The toolkit's params.SAGEMAKER_HYPERPARAMETERS, in its order: SageMaker's own keys in
# hyperparameters.json, never the script's (no `--key` argument, no SM_HP_*). Every other
# `sagemaker_*` key is SageMaker's as well (the distribution switches below among them).
SAGEMAKER_PROGRAM = "sagemaker_program"
SAGEMAKER_SUBMIT_DIRECTORY = "sagemaker_submit_directory"
SAGEMAKER_ENABLE_CLOUDWATCH_METRICS = "sagemaker_enable_cloudwatch_metrics"
SAGEMAKER_REGION = "sagemaker_region"
SAGEMAKER_CONTAINER_LOG_LEVEL = "sagemaker_container_log_level"
SAGEMAKER_JOB_NAME = "sagemaker_job_name"
DEFAULT_USER_MODULE_NAME = "default_user_module_name"
TUNING_OBJECTIVE_METRIC = "_tuning_objective_metric"  # SageMaker adds it to every training job
SAGEMAKER_S3_OUTPUT = "sagemaker_s3_output"
RESERVED_HYPERPARAMETERS: tuple[str, ...] = (
    SAGEMAKER_PROGRAM,
    SAGEMAKER_SUBMIT_DIRECTORY,
    SAGEMAKER_ENABLE_CLOUDWATCH_METRICS,
    SAGEMAKER_REGION,
    SAGEMAKER_CONTAINER_LOG_LEVEL,
    SAGEMAKER_JOB_NAME,
    DEFAULT_USER_MODULE_NAME,
    TUNING_OBJECTIVE_METRIC,
    SAGEMAKER_S3_OUTPUT,
)
RESERVED_PREFIX = "sagemaker_"


def is_reserved(key: str) -> bool:
    """True for hyperparameter keys SageMaker keeps for itself."""
    return key in RESERVED_HYPERPARAMETERS or key.startswith(RESERVED_PREFIX)


# -- names -------------------------------------------------------------------------------------

# HyperParameterTuningJobName: 1-32 characters, letters and digits with inner hyphens.
TUNING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
TUNING_JOB_NAME_MAX = 32
# TrainingJobName: the same letters, digits and inner hyphens, 1-63 characters.
TRAINING_JOB_NAME_MAX = 63
# ChannelName is SageMaker's `[A-Za-z0-9.\-_]+`, 1-64 characters. A channel is also the
# folder input/data/<name>, so hpt asks for a letter or digit first and no '..' (a name
# like '..' or '.x' would leave, or hide in, that folder).
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CHANNEL_NAME_MAX = 64
# Environment keys (CreateTrainingJob's Environment): a shell variable name.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The toolkit's rule for an entry point (process.validate_entry_point): a plain relative path
# inside code/, of letters, digits and ._+-, not starting with '-', no '.' or '..' segment.
ENTRY_POINT = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._+-]*(/[A-Za-z0-9._+-]+)*$")


def channel_name_problem(name: object) -> str | None:
    """Why `name` cannot be a channel, or None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > CHANNEL_NAME_MAX:
        return f"must be at most {CHANNEL_NAME_MAX} characters (got {len(name)})"
    if not CHANNEL_NAME.match(name) or ".." in name:
        return ("must be letters, digits, '_', '.' or '-', start with a letter or digit and "
                "not contain '..'")
    return None


def entry_point_problem(path: object) -> str | None:
    """Why `path` cannot be an entry point inside code/, or None."""
    if not isinstance(path, str) or not ENTRY_POINT.match(path) or any(
            part in (".", "..") for part in path.split("/")):
        return ("must be a file path relative to source_dir, of letters, digits and '._+-', "
                "without '.' or '..' segments")
    return None


# -- the data channels -------------------------------------------------------------------------

FULLY_REPLICATED = "FullyReplicated"  # S3DataDistributionType: every host gets every object
SHARDED_BY_S3_KEY = "ShardedByS3Key"  # each host gets its share of the objects
DISTRIBUTION_TYPES = (FULLY_REPLICATED, SHARDED_BY_S3_KEY)

# -- a training job's files --------------------------------------------------------------------

LEAD_HOST = "algo-1"  # the first host of a training job: its lead (SageMaker's host names)
LEAD_LOG = f"{LEAD_HOST}.log"  # the lead's log in the training job's folder: CloudWatch's stream
MODEL_ARCHIVE = "model.tar.gz"  # /opt/ml/model, packed: ModelArtifacts.S3ModelArtifacts
OUTPUT_ARCHIVE = "output.tar.gz"  # /opt/ml/output/data, packed
SOURCE_ARCHIVE = "sourcedir.tar.gz"  # the code a job runs (the SDK's name for it)
# Folders of a host's /opt/ml tree that hpt reads or carries itself (the contract makes them all)
CHECKPOINTS_DIR = "checkpoints"  # CheckpointConfig's LocalPath default: carried between attempts
INTERMEDIATE_DIR = "output/intermediate"  # uploaded while the job runs, as SageMaker does

# -- distributed training ----------------------------------------------------------------------

# hpt's distribution modes, and the reserved switches SageMaker's Python SDK writes into the
# hyperparameters for each (Framework._distribution_configuration: `mpi`, `parameter_server`,
# PyTorch's `torch_distributed`). The toolkit reads them from hyperparameters.json.
DISTRIBUTION_MODES = ("none", "data_parallel", "parameter_server", "torchrun")
MPI_ENABLED = "sagemaker_mpi_enabled"
MPI_PROCESSES_PER_HOST = "sagemaker_mpi_num_of_processes_per_host"
PARAMETER_SERVER_ENABLED = "sagemaker_parameter_server_enabled"
TORCH_DISTRIBUTED_ENABLED = "sagemaker_torch_distributed_enabled"
MODE_SWITCHES = {"data_parallel": MPI_ENABLED, "parameter_server": PARAMETER_SERVER_ENABLED,
                 "torchrun": TORCH_DISTRIBUTED_ENABLED}
# Every switch that makes the toolkit treat the instance group as distributed (its
# environment's distribution_instance_groups).
DISTRIBUTION_SWITCHES = (
    MPI_ENABLED,
    PARAMETER_SERVER_ENABLED,
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    TORCH_DISTRIBUTED_ENABLED,
)


def distribution_hyperparameters(mode: str, processes_per_host: int) -> dict[str, object]:
    """The `sagemaker_*` switches of a distribution mode, as the SDK sends them (for `mpi`
    the SDK also sends `sagemaker_mpi_custom_mpi_options: ""`, the toolkit's default)."""
    if mode == "data_parallel":
        return {MPI_ENABLED: True, MPI_PROCESSES_PER_HOST: processes_per_host}
    if mode in MODE_SWITCHES:
        return {MODE_SWITCHES[mode]: True}
    return {}


def distribution_mode(hyperparameters: dict[str, object]) -> str:
    """The mode whose switch is on in (decoded) hyperparameters: what an imported request
    asks for."""
    for mode, switch in MODE_SWITCHES.items():
        if hyperparameters.get(switch) in (True, "true", "True"):
            return mode
    return "none"


def container_command(trainer) -> dict[str, list[str]]:
    """AlgorithmSpecification's ContainerEntrypoint and ContainerArguments of a trainer that
    sets them (what a training job request carries for it)."""
    return {key: list(value) for key, value in (
        ("ContainerEntrypoint", trainer.container_entrypoint),
        ("ContainerArguments", trainer.container_arguments)) if value}


# -- the container's environment ---------------------------------------------------------------

# Variables the platform sets for every training job; a trainer.environment entry with one of
# these names would clash (the contract refuses it, so validation does too).
PLATFORM_ENV = frozenset({
    "SAGEMAKER_PROGRAM", "SAGEMAKER_BASE_DIR", "SAGEMAKER_REGION", "SAGEMAKER_JOB_NAME",
    "TRAINING_JOB_NAME", "CURRENT_HOST", "CUDA_VISIBLE_DEVICES",
})
# Not the platform's but the image's: SageMaker's framework containers set it in their
# Dockerfile and the toolkit's `train` imports the module it names (a plain sagemaker-training
# image leaves it unset and runs SAGEMAKER_PROGRAM). hpt never sets it; trainer.environment may.
TRAINING_MODULE_ENV = "SAGEMAKER_TRAINING_MODULE"


# -- the API's model ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def service_model(service: str = "sagemaker"):
    """botocore's model of an AWS API (`sagemaker`, `sagemaker-runtime`, `logs`, ...), loaded
    once per process (the SageMaker one is a large file). botocore is imported here, on first
    use, so that checking a name never loads it."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service)
