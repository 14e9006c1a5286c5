"""`runtime: docker`: one container per host of a training job, as SageMaker runs them.

Pure functions build every command line (`docker run`, the per-trial network, stop, remove);
`local.HostProcess` runs the `run` command like any process (its output is the container's)
and calls the stop/remove commands so that no container outlives its training job. The same
argv works with podman (`--container-engine podman`), except for GPUs: docker takes
`--gpus '"device=0,1"'`, podman the CDI devices `--device nvidia.com/gpu=0`.

A multi-host trial gets its own network (`<training-job>-net`), on which every host's
container answers to its SageMaker name (algo-1 ... algo-N), so MASTER_ADDR=algo-1 and
TF_CONFIG name hosts exactly as on SageMaker; every container has its own ports, so the
rendezvous and parameter-server ports are fixed ones. A host that runs several processes
(parameter servers, several workers) is one container whose PID 1 is `sleep infinity`, and
each process is a `docker exec` in it: the host lives until its last process ends. It is
stopped with SIGTERM to every process but PID 1 (`kill -TERM -1` inside: `docker stop` would
only signal PID 1, whose exit SIGKILLs the exec'd processes at once), then removed.

Inside the container the host's tree is /opt/ml (bind-mounted), so `SAGEMAKER_BASE_DIR` is
not set; the command is SageMaker's `train` (the sagemaker-training toolkit's entry point,
which reads /opt/ml and runs `SAGEMAKER_PROGRAM`). GPUs are renumbered from 0 inside a
container, so `CUDA_VISIBLE_DEVICES` there counts 0..n-1 while `--gpus` names Ray's ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hpt.core.redaction import looks_secret
from hpt.core.sagemaker_names import TRAINING_MODULE_ENV

ENGINES = ("docker", "podman")
CONTAINER_ML = "/opt/ml"
# Docker's rule for container and network names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_LABEL_PREFIX = "hpt."
# Ports inside a container of a multi-host trial: the rendezvous (SageMaker's PyTorch
# containers use 7777 for MASTER_PORT) and the ones of the host's own processes.
MASTER_PORT = 7777
FIRST_PROCESS_PORT = 2222
CPUS_ONLINE = "/sys/devices/system/cpu/online"
# What a multi-process host's container runs while `docker exec` runs its processes: PID 1
# itself (no --init), which ignores the SIGTERM sent to the processes around it.
KEEPER = ("sleep", "infinity")


@dataclass(frozen=True)
class ContainerPlan:
    """Everything one host's container needs; built from the host's contract (pure data)."""

    engine: str
    image: str
    name: str  # the container's name: <training-job>-<host>
    host_tree: str  # the host's tree on this machine, mounted at /opt/ml
    hostname: str  # algo-1 ...
    env: dict[str, str]
    gpu_ids: tuple[str, ...] = ()
    cpus: float = 1.0
    shm_size: str = "1g"
    network: str | None = None  # the trial's own network (multi-host trials)
    labels: dict[str, str] = field(default_factory=dict)
    # Local channel data, mounted read-only at /opt/ml/input/data/<channel>: (source, channel)
    channels: tuple[tuple[str, str], ...] = ()
    writable_channels: frozenset[str] = frozenset()  # else read-only
    command: tuple[str, ...] = ("train",)
    entrypoint: str | None = None  # `--entrypoint`: ContainerEntrypoint's first element
    detach: bool = False  # `docker run -d`: returns once the container runs (a keeper)
    workdir: str | None = None  # else the image's WORKDIR
    # A file that says "0-(N-1)", mounted over the kernel's list of online CPUs (as lxcfs
    # does): the toolkit's SM_NUM_CPUS (os.cpu_count) is then the host's share, N.
    cpus_online: str | None = None


def online_cpus(count: int) -> str:
    """The kernel's notation for CPUs 0..count-1 (what /sys/devices/system/cpu/online holds).

    On SageMaker a container owns its instance, and the toolkit reports os.cpu_count() as
    SM_NUM_CPUS; here containers share a machine, and --cpus only limits their time."""
    return "0" if count <= 1 else f"0-{count - 1}"


def container_name(training_job: str, host: str) -> str:
    name = f"{training_job}-{host}"
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid container name (letters, digits, _ . -)")
    return name


def network_name(training_job: str) -> str:
    return container_name(training_job, "net")


def labels_for(tuning_job: str, training_job: str, host: str) -> dict[str, str]:
    return {f"{_LABEL_PREFIX}tuning-job": tuning_job, f"{_LABEL_PREFIX}training-job": training_job,
            f"{_LABEL_PREFIX}host": host}


def _check_env(env: dict[str, str]) -> None:
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"environment variable {key!r} cannot be passed to a container "
                             f"(empty name, '=' or NUL byte)")


def container_env(env: dict[str, str], gpu_ids: tuple[str, ...]) -> dict[str, str]:
    """The contract's environment as the container must see it."""
    out = {k: v for k, v in env.items() if k != "SAGEMAKER_BASE_DIR"}
    if TRAINING_MODULE_ENV not in out:
        # The image may set it (a framework image does): the toolkit's `train` then derives
        # SM_FRAMEWORK_MODULE from it for the script; hpt's empty value would contradict it.
        out.pop("SM_FRAMEWORK_MODULE", None)
    # --gpus exposes the chosen devices as 0..n-1 inside the container.
    out["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(gpu_ids)))
    return out


def _gpu_args(engine: str, gpu_ids: tuple[str, ...]) -> list[str]:
    if not gpu_ids:
        return []
    if engine == "podman":
        return [arg for gpu in gpu_ids for arg in ("--device", f"nvidia.com/gpu={gpu}")]
    # The inner quotes are part of docker's syntax for a list (no shell removes them here).
    return ["--gpus", f'"device={",".join(gpu_ids)}"']


def run_argv(plan: ContainerPlan) -> list[str]:
    """`docker run` for one host: no shell anywhere, every variable its own --env entry."""
    if plan.engine not in ENGINES:
        raise ValueError(f"container engine {plan.engine!r}: use one of {ENGINES}")
    if not plan.image:
        raise ValueError("runtime: docker needs trainer.image")
    if not plan.host_tree.startswith("/"):
        raise ValueError(f"the host tree must be an absolute path (got {plan.host_tree!r})")
    for path in (plan.host_tree, *(source for source, _ in plan.channels),
                 *([plan.cpus_online] if plan.cpus_online else [])):
        if ":" in path or "," in path or not path.startswith("/"):
            raise ValueError(f"{path!r} cannot be bind-mounted: it must be an absolute path "
                             f"without ':' or ','")
    _check_env(plan.env)
    argv = [plan.engine, "run", "--rm"] + ([] if plan.detach else ["--init"]) + [
        "--name", plan.name, "--hostname", plan.hostname] + (["--detach"] if plan.detach else [])
    if plan.network:
        argv += ["--network", plan.network, "--network-alias", plan.hostname]
    argv += ["--cpus", f"{plan.cpus:g}", "--shm-size", plan.shm_size]
    if plan.workdir:
        argv += ["--workdir", plan.workdir]
    if plan.entrypoint:
        argv += ["--entrypoint", plan.entrypoint]
    argv += _gpu_args(plan.engine, plan.gpu_ids)
    argv += ["--mount", f"type=bind,source={plan.host_tree},target={CONTAINER_ML}"]
    for source, channel in plan.channels:
        mode = "" if channel in plan.writable_channels else ",readonly"
        argv += ["--mount", f"type=bind,source={source},"
                            f"target={CONTAINER_ML}/input/data/{channel}{mode}"]
    if plan.cpus_online:
        argv += ["--mount", f"type=bind,source={plan.cpus_online},target={CPUS_ONLINE},readonly"]
    for key, value in sorted(plan.labels.items()):
        argv += ["--label", f"{key}={value}"]
    argv += _env_args(plan.env)
    return argv + [plan.image, *plan.command]


def _env_args(env: dict[str, str]) -> list[str]:
    argv = []
    for key, value in sorted(env.items()):
        # A secret's value stays out of the argv (process listings show it): `--env NAME`
        # makes the engine take it from the CLI's own environment (secret_env below).
        argv += ["--env", key if looks_secret(key) else f"{key}={value}"]
    return argv


def exec_argv(engine: str, name: str, env: dict[str, str], command: tuple[str, ...],
              workdir: str | None = None) -> list[str]:
    """One more process in the running container `name`, with `env` over the container's."""
    _check_env(env)
    argv = [engine, "exec"] + (["--workdir", workdir] if workdir else [])
    return argv + _env_args(env) + [name, *command]


def secret_env(plan: ContainerPlan) -> dict[str, str]:
    """The variables `run_argv` passes by name only: the engine CLI's environment needs them."""
    return {k: v for k, v in plan.env.items() if looks_secret(k)}


def serve_run_argv(engine: str, image: str, name: str, model_dir: str, host_port: int,
                   env: dict[str, str], labels: dict[str, str]) -> list[str]:
    """`hpt serve` with a container: SageMaker's `docker run IMAGE serve`, the model read-only
    at /opt/ml/model, the container's port 8080 published on 127.0.0.1 only."""
    _check_env(env)
    argv = [engine, "run", "--rm", "--init", "--name", container_name(name, "serve"),
            "--publish", f"127.0.0.1:{int(host_port)}:8080",
            "--volume", f"{model_dir}:{CONTAINER_ML}/model:ro"]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    for key, value in sorted(env.items()):
        argv += ["--env", f"{key}={value}"]
    return argv + [image, "serve"]


def terminate_all_argv(engine: str, name: str) -> list[str]:
    """SIGTERM to every process of a keeper container but its PID 1 (see the module doc)."""
    return [engine, "exec", name, "sh", "-c", "kill -TERM -1"]


def stop_argv(engine: str, name: str, grace_seconds: float) -> list[str]:
    """SIGTERM to the container's processes, SIGKILL after the grace period."""
    return [engine, "stop", "-t", str(max(0, int(grace_seconds))), name]


def remove_argv(engine: str, name: str) -> list[str]:
    """Removes the container whatever its state (nothing is left behind)."""
    return [engine, "rm", "--force", name]


def network_create_argv(engine: str, network: str, labels: dict[str, str]) -> list[str]:
    argv = [engine, "network", "create"]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    return argv + [network]


def network_remove_argv(engine: str, network: str) -> list[str]:
    return [engine, "network", "rm", network]
