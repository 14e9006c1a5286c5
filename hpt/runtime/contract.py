"""The SageMaker training-container contract as pure data (docs/sagemaker-contract.md §1-4).

`render_host_contract` turns one trial on one host into everything its process needs: the
directories and config files of its tree, the full environment hpt injects and the argv.
No filesystem, no `os.environ`, no clock: `tree.materialize` and the launchers do the I/O.

The reference is `sagemaker_training.environment.Environment` (toolkit 5.1.4): inside the
rendered tree, `Environment().to_env_vars()` returns exactly the `SM_*` variables rendered
here, with two documented deviations (tests/test_contract.py checks both):

- `SM_NUM_CPUS` / `SM_NUM_GPUS` (and `num_cpus` / `num_gpus` in `SM_TRAINING_ENV`) are what
  hpt gave the host. The toolkit counts the machine (`multiprocessing.cpu_count()`,
  `nvidia-smi --list-gpus`); on SageMaker a host owns its whole instance so both agree,
  under hpt several hosts share a machine and each must see only its share.
- `is_smddprun_installed` / `is_smddpmprun_installed` are `false`: the toolkit runs
  `which smddprun`; hpt does not ship SageMaker's data-parallel launchers.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from hpt.core import sagemaker_names as sm
from hpt.runtime.encoding import encode_hyperparameters, env_value, user_args
from hpt.core.sagemaker_names import (SAGEMAKER_CONTAINER_LOG_LEVEL,
                                      SAGEMAKER_ENABLE_CLOUDWATCH_METRICS, SAGEMAKER_JOB_NAME,
                                      SAGEMAKER_PROGRAM, SAGEMAKER_REGION, SAGEMAKER_S3_OUTPUT,
                                      SAGEMAKER_SUBMIT_DIRECTORY, TUNING_OBJECTIVE_METRIC,
                                      is_reserved)

RESERVED_KEYS = sm.RESERVED_HYPERPARAMETERS  # the toolkit's, in its order
SAGEMAKER_BASE_PATH = "/opt/ml"
HOMOGENEOUS_GROUP = "homogeneousCluster"

HYPERPARAMETERS_FILE = "input/config/hyperparameters.json"
RESOURCE_CONFIG_FILE = "input/config/resourceconfig.json"
INPUT_DATA_CONFIG_FILE = "input/config/inputdataconfig.json"


@dataclass(frozen=True)
class TrialContractInput:
    """One trial as the contract needs it; the same for every host of the trial."""

    job_name: str
    entry_point: str
    hyperparameters: dict  # user hyperparameters (static + tuned), decoded Python values
    channels: dict  # channel name -> "FullyReplicated" | "ShardedByS3Key"
    hosts: tuple  # ("algo-1", ...); the first one is the master
    objective_metric: str | None = None
    instance_type: str = "local"
    network_interface_name: str = "eth0"
    region: str = "us-east-1"
    s3_output: str | None = None
    framework_params: dict = field(default_factory=dict)  # extra sagemaker_* keys
    environment: dict = field(default_factory=dict)  # the trainer's own extra variables
    log_level: int = 20


@dataclass(frozen=True)
class HostContract:
    """What one host's process gets: its tree (relative to base_dir), env, argv and cwd.

    `env`, `argv` and `cwd` are as the process sees them: with `in_container=True` they
    point into /opt/ml, while `base_dir` is where hpt writes the tree on the machine.
    """

    host: str
    base_dir: str
    dirs: tuple[str, ...]
    files: dict[str, str]
    env: dict[str, str]
    argv: tuple[str, ...]
    cwd: str


def _validate(inp: TrialContractInput, host: str, num_cpus: int, num_gpus: int,
              gpu_ids: tuple[str, ...], in_container: bool, base_dir: str) -> None:
    def fail(msg: str) -> None:
        raise ValueError(f"training job {inp.job_name!r}: {msg}")

    if not isinstance(inp.job_name, str) or not inp.job_name:
        raise ValueError(f"job_name must be a non-empty string (got {inp.job_name!r})")
    ep = inp.entry_point
    if sm.entry_point_problem(ep):
        fail(f"entry_point {ep!r} {sm.entry_point_problem(ep)} (for example 'train.py')")
    hosts = list(inp.hosts)
    named = all(isinstance(h, str) and h for h in hosts)
    if not hosts or len(set(hosts)) != len(hosts) or not named:
        fail(f"hosts must be distinct non-empty names (got {hosts!r})")
    if host not in hosts:
        fail(f"host {host!r} is not one of the job's hosts {hosts!r}")
    upper_channels: dict[str, str] = {}
    for name, dist in inp.channels.items():
        if sm.channel_name_problem(name):
            fail(f"channel name {name!r} {sm.channel_name_problem(name)}")
        if dist not in sm.DISTRIBUTION_TYPES:
            fail(f"channel {name!r}: S3DistributionType must be one of {sm.DISTRIBUTION_TYPES} "
                 f"(got {dist!r})")
        if name.upper() in upper_channels:
            fail(f"channels {upper_channels[name.upper()]!r} and {name!r} would share the "
                 f"variable SM_CHANNEL_{name.upper()}; rename one")
        upper_channels[name.upper()] = name
    upper_hps: dict[str, str] = {}
    for key in inp.hyperparameters:
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            fail(f"hyperparameter name {key!r} must be a non-empty string without '=' or NUL "
                 f"(it becomes the variable SM_HP_<NAME>)")
        if is_reserved(key):
            fail(f"hyperparameter {key!r} is reserved (the toolkit strips {RESERVED_KEYS} and "
                 f"every 'sagemaker_*' key from the script's hyperparameters); pass framework "
                 f"switches such as sagemaker_mpi_enabled in framework_params, else rename it")
        if key.upper() in upper_hps:
            fail(f"hyperparameters {upper_hps[key.upper()]!r} and {key!r} would share the "
                 f"variable SM_HP_{key.upper()}; rename one")
        upper_hps[key.upper()] = key
    for key in inp.framework_params:
        if not isinstance(key, str) or not key.startswith(sm.RESERVED_PREFIX) \
                or key in RESERVED_KEYS:
            fail(f"framework_params key {key!r} must start with 'sagemaker_' and not be one of "
                 f"the keys hpt sets itself {RESERVED_KEYS}")
    for key, value in inp.environment.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            fail(f"environment variable name {key!r} must be a non-empty string without '='")
        if not isinstance(value, str) or "\0" in value:
            fail(f"environment variable {key!r}: value must be a string (got {value!r})")
    if not isinstance(num_cpus, int) or num_cpus < 0:
        fail(f"num_cpus must be an int >= 0 (got {num_cpus!r})")
    if not isinstance(num_gpus, int) or num_gpus < 0:
        fail(f"num_gpus must be an int >= 0 (got {num_gpus!r})")
    if gpu_ids and len(gpu_ids) != num_gpus:
        fail(f"num_gpus={num_gpus} but gpu_ids={list(gpu_ids)} names {len(gpu_ids)} devices")
    if num_gpus and not gpu_ids and not in_container:
        fail(f"num_gpus={num_gpus} needs the gpu_ids this host owns (CUDA_VISIBLE_DEVICES)")
    if not isinstance(base_dir, str) or not posixpath.isabs(base_dir):
        fail(f"base_dir must be an absolute path (got {base_dir!r})")


def _training_env(inp: TrialContractInput, *, host: str, base: str, hps: dict[str, Any],
                  input_data_config: dict, resource_config: dict, num_cpus: int,
                  num_gpus: int, mp_parameters: str | None) -> dict[str, Any]:
    """dict(Environment()): every property of the toolkit's Environment, by name."""
    sagemaker_hps = {k: v for k, v in hps.items() if is_reserved(k)}
    framework = {k: v for k, v in sagemaker_hps.items() if k not in RESERVED_KEYS}
    groups = resource_config["instance_groups"]
    current_group = resource_config["current_group_name"]
    default_groups = ([current_group] if any(framework.get(k, False)
                                             for k in sm.DISTRIBUTION_SWITCHES) else [])
    distribution_groups = framework.get("sagemaker_distribution_instance_groups", default_groups)
    distribution_hosts = [h for g in groups if g["instance_group_name"] in distribution_groups
                          for h in g["hosts"]]
    hosts = resource_config["hosts"]
    master = distribution_hosts[0] if distribution_hosts else hosts[0]
    program = inp.entry_point
    return {
        **_paths(base, input_data_config),
        "additional_framework_parameters": framework,
        "current_host": host,
        "current_instance_group": current_group,
        "current_instance_group_hosts": next(
            (g["hosts"] for g in groups if g["instance_group_name"] == current_group), []),
        "current_instance_type": resource_config["current_instance_type"],
        "distribution_hosts": distribution_hosts,
        "distribution_instance_groups": distribution_groups,
        # The image's variable on SageMaker (framework containers set it, a plain toolkit
        # image does not); here the trainer's environment may set it, else it is unset.
        "framework_module": inp.environment.get(sm.TRAINING_MODULE_ENV),
        "hosts": hosts,
        "hyperparameters": {k: v for k, v in hps.items() if not is_reserved(k)},
        "input_data_config": input_data_config,
        "instance_groups": [g["instance_group_name"] for g in groups],
        "instance_groups_dict": {g["instance_group_name"]: g for g in groups},
        "is_hetero": len(groups) > 1,
        "is_master": host == master,
        # The toolkit's own expression, kept as is: None when the variable is unset.
        "is_modelparallel_enabled": mp_parameters and mp_parameters != "{}",
        "is_smddpmprun_installed": False,
        "is_smddprun_installed": False,
        "job_name": inp.job_name,
        "log_level": sagemaker_hps.get(SAGEMAKER_CONTAINER_LOG_LEVEL, 20),
        "master_hostname": master,
        "module_dir": str(sagemaker_hps.get(SAGEMAKER_SUBMIT_DIRECTORY,
                                            posixpath.join(base, "code"))),
        "module_name": program[:-3] if program.endswith(".py") else program,
        "network_interface_name": resource_config["network_interface_name"],
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        # The toolkit hard-codes trn2.48xlarge and asks neuron-ls otherwise (absent: 0).
        "num_neurons": 64 if "trn2.48xlarge" in resource_config["current_instance_type"] else 0,
        "resource_config": resource_config,
        "topology": resource_config.get("topology", []),
        "user_entry_point": program,
    }


def _paths(base: str, input_data_config: dict) -> dict[str, Any]:
    """The Environment's folders, under the host's base (/opt/ml in a container)."""
    input_dir, output_dir = posixpath.join(base, "input"), posixpath.join(base, "output")
    return {
        "channel_input_dirs": {ch: posixpath.join(input_dir, "data", ch)
                               for ch in input_data_config},
        "input_config_dir": posixpath.join(input_dir, "config"),
        "input_dir": input_dir,
        "model_dir": posixpath.join(base, "model"),
        "output_data_dir": posixpath.join(output_dir, "data"),
        "output_dir": output_dir,
        "output_intermediate_dir": posixpath.join(output_dir, "intermediate"),
    }


def _sm_env(te: dict[str, Any]) -> dict[str, str]:
    """Environment.to_env_vars() given dict(Environment())."""
    hps = te["hyperparameters"]
    env = {
        "hosts": te["hosts"],
        "network_interface_name": te["network_interface_name"],
        "hps": hps,
        "user_entry_point": te["user_entry_point"],
        "framework_params": te["additional_framework_parameters"],
        "resource_config": te["resource_config"],
        "input_data_config": te["input_data_config"],
        "output_data_dir": te["output_data_dir"],
        "channels": sorted(te["channel_input_dirs"]),
        "current_host": te["current_host"],
        "current_instance_type": te["current_instance_type"],
        "current_instance_group": te["current_instance_group"],
        "current_instance_group_hosts": te["current_instance_group_hosts"],
        "instance_groups": te["instance_groups"],
        "instance_groups_dict": te["instance_groups_dict"],
        "distribution_instance_groups": te["distribution_instance_groups"],
        "is_hetero": te["is_hetero"],
        "module_name": te["module_name"],
        "log_level": te["log_level"],
        "framework_module": te["framework_module"],
        "input_dir": te["input_dir"],
        "input_config_dir": te["input_config_dir"],
        "output_dir": te["output_dir"],
        "num_cpus": te["num_cpus"],
        "num_gpus": te["num_gpus"],
        "num_neurons": te["num_neurons"],
        "model_dir": te["model_dir"],
        "module_dir": te["module_dir"],
        "training_env": te,
        "user_args": user_args(hps),
        "output_intermediate_dir": te["output_intermediate_dir"],
    }
    if te["topology"]:
        env["topology"] = te["topology"]
    for name, path in te["channel_input_dirs"].items():
        env["channel_%s" % name] = path
    for key, value in hps.items():
        env["hp_%s" % key] = value
    return {"SM_%s" % str(k).upper(): env_value(v) for k, v in env.items()}


def _argv(entry_point: str, python: str, args: list[str]) -> tuple[str, ...]:
    if entry_point.endswith(".py"):
        return (python, entry_point, *args)
    if entry_point.endswith(".sh"):
        return ("/bin/sh", entry_point, *args)
    return ("./" + entry_point, *args)


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


def render_host_contract(inp: TrialContractInput, *, host: str, base_dir: str, num_cpus: int,
                         num_gpus: int, gpu_ids: tuple[str, ...] = (), python: str = "python",
                         in_container: bool = False) -> HostContract:
    """The tree, environment and command of `host` of the trial `inp` (pure)."""
    gpu_ids = tuple(str(g) for g in gpu_ids)
    _validate(inp, host, num_cpus, num_gpus, gpu_ids, in_container, base_dir)
    base_dir = posixpath.normpath(base_dir)
    base = SAGEMAKER_BASE_PATH if in_container else base_dir
    code_dir = posixpath.join(base, "code")
    channels = sorted(inp.channels)
    encoded = _hyperparameters_file(inp, code_dir)
    # What the toolkit reads back: the file's keys in file order, each value json.loads'ed.
    hps = {k: json.loads(encoded[k]) for k in sorted(encoded)}
    resource_config = _resource_config(inp, host)
    input_data_config = {ch: {"TrainingInputMode": "File",
                              "S3DistributionType": inp.channels[ch],
                              "RecordWrapperType": "None"} for ch in channels}
    # SM_TRAINING_ENV depends on SM_HP_MP_PARAMETERS (is_modelparallel_enabled), which comes
    # from the hyperparameters or the trainer's environment: render the hp_ ones first.
    hp_env = {"SM_HP_%s" % k.upper(): env_value(v) for k, v in hps.items() if not is_reserved(k)}
    mp_parameters = {**inp.environment, **hp_env}.get("SM_HP_MP_PARAMETERS")
    te = _training_env(inp, host=host, base=base, hps=hps, input_data_config=input_data_config,
                       resource_config=resource_config, num_cpus=num_cpus, num_gpus=num_gpus,
                       mp_parameters=mp_parameters)
    injected = {**_platform_env(inp, host, base, in_container, gpu_ids, num_gpus),
                **_sm_env(te)}
    clash = sorted(set(inp.environment) & set(injected))
    if clash:
        raise ValueError(f"training job {inp.job_name!r}: trainer.environment sets {clash}, "
                         f"which hpt sets itself from the contract; remove them")
    env = dict(sorted({**inp.environment, **injected}.items()))
    dirs = ("code", "input/config", *(f"input/data/{ch}" for ch in channels), "model",
            "output/data", sm.INTERMEDIATE_DIR, sm.CHECKPOINTS_DIR)
    files = {
        HYPERPARAMETERS_FILE: _dump(encoded),
        RESOURCE_CONFIG_FILE: _dump(resource_config),
        INPUT_DATA_CONFIG_FILE: _dump(input_data_config),
    }
    return HostContract(host=host, base_dir=base_dir, dirs=dirs, files=files, env=env,
                        argv=_argv(inp.entry_point, python, user_args(te["hyperparameters"])),
                        cwd=code_dir)


def _hyperparameters_file(inp: TrialContractInput, code_dir: str) -> dict[str, str]:
    """hyperparameters.json: the user's, the framework switches and SageMaker's own keys."""
    reserved: dict[str, Any] = {
        SAGEMAKER_PROGRAM: inp.entry_point,
        SAGEMAKER_SUBMIT_DIRECTORY: code_dir,
        SAGEMAKER_CONTAINER_LOG_LEVEL: inp.log_level,
        SAGEMAKER_JOB_NAME: inp.job_name,
        SAGEMAKER_REGION: inp.region,
        SAGEMAKER_ENABLE_CLOUDWATCH_METRICS: False,
    }
    if inp.s3_output is not None:
        reserved[SAGEMAKER_S3_OUTPUT] = inp.s3_output
    if inp.objective_metric is not None:
        reserved[TUNING_OBJECTIVE_METRIC] = inp.objective_metric
    return encode_hyperparameters({**inp.hyperparameters, **inp.framework_params, **reserved})


def _resource_config(inp: TrialContractInput, host: str) -> dict[str, Any]:
    hosts = list(inp.hosts)
    return {
        "current_host": host,
        "hosts": hosts,
        "network_interface_name": inp.network_interface_name,
        "current_instance_type": inp.instance_type,
        "current_group_name": HOMOGENEOUS_GROUP,
        "instance_groups": [{"instance_group_name": HOMOGENEOUS_GROUP,
                             "instance_type": inp.instance_type, "hosts": hosts}],
    }


def _platform_env(inp: TrialContractInput, host: str, base: str, in_container: bool,
                  gpu_ids: tuple[str, ...], num_gpus: int) -> dict[str, str]:
    """Variables the toolkit reads or sets itself (it sets SAGEMAKER_JOB_NAME, CURRENT_HOST
    and SAGEMAKER_REGION from the config files): set, so a script started without the
    toolkit sees the same."""
    own: dict[str, str] = {
        "SAGEMAKER_PROGRAM": inp.entry_point,
        "SAGEMAKER_REGION": inp.region,
        "SAGEMAKER_JOB_NAME": inp.job_name,
        "TRAINING_JOB_NAME": inp.job_name,
        "CURRENT_HOST": host,
    }
    if not in_container:
        own["SAGEMAKER_BASE_DIR"] = base
    if gpu_ids or num_gpus == 0:
        own["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    return own
