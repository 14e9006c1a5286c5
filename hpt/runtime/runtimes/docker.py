"""`runtime: docker`: every host of a training job is a container started as SageMaker starts
one (`docker run ... IMAGE train`, the host's tree at /opt/ml); the hosts of a multi-host
trial share a network of their own, so they all run on one node (runtime/docker_commands.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hpt.core.errors import UserError
from hpt.core.sagemaker_names import SHARDED_BY_S3_KEY
from hpt.runtime.job_protocol import JobContext, Runtime, Staged, StageContext, TrainingJob
from hpt.runtime.runtimes import local


def problems(values: dict) -> list[tuple[tuple, str]]:
    trainer = values.get("trainer")
    if trainer is None:
        return []
    found = []
    if not trainer.image:
        found.append((("trainer", "image"), "is required for runtime: docker: an image of the "
                      "trainer with the sagemaker-training toolkit, e.g. image: my-trainer:latest"
                      " (docker build -t my-trainer:latest DIR, DIR holding its Dockerfile)"))
    if (trainer.container_entrypoint or trainer.container_arguments) and \
            trainer.distribution != "none":
        found.append((("trainer", "distribution"), f"{trainer.distribution} with "
                      f"container_entrypoint: every host runs the entrypoint, whose own drivers "
                      f"distribute the job (as on SageMaker); use distribution: none"))
    channels = values.get("channels") or {}
    if trainer.instance_count > 1:
        for name, channel in channels.items():
            if channel.distribution == SHARDED_BY_S3_KEY:
                found.append((("channels", name, "distribution"),
                              "ShardedByS3Key is not split across containers in this version "
                              "(each host's container mounts the whole folder): use "
                              "FullyReplicated, or runtime: local"))
    return found


# What the engines say when they are reachable but lack the image (docker / podman).
_NO_IMAGE = ("No such image", "image not known")


def engine_problem(engine: str, image: str) -> str | None:
    """Why trials could not start a container of `image` here, or None. Asked once per job,
    before anything is created: otherwise every trial fails alike, exit code 125."""
    start = 'eval "$(python -m hpt.runtime.container_engine start)"'
    try:
        done = subprocess.run([engine, "image", "inspect", "--format", "{{.Id}}", image],
                              capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return (f"runtime: docker: the {engine} command is not installed here (apt-get install "
                f"docker.io, then {start}; podman: --container-engine podman)")
    except subprocess.TimeoutExpired:
        return f"runtime: docker: {engine} did not answer within 60 s (is its engine hung?)"
    if done.returncode == 0:
        return None
    said = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    if any(marker in said for marker in _NO_IMAGE):
        return (f"trainer.image: {image} is not on this machine's {engine} engine; build it "
                f"({engine} build -t {image} DIR, DIR holding its Dockerfile) or pull it "
                f"({engine} pull {image})")
    where = os.environ.get("DOCKER_HOST", "its default socket")
    return (f"runtime: docker: no {engine} engine answers at {where} ({said}); start one "
            f"({start}) or set DOCKER_HOST to yours")


def stage(ctx: StageContext) -> Staged:
    engine = ctx.options.get("container_engine") or "docker"
    problem = engine_problem(engine, ctx.spec.trainer.image or "")
    if problem is not None:
        raise UserError(f"{ctx.spec.source_path}: {problem}")
    staged = local.stage_channels(ctx)
    # The channels hpt downloaded are the job's own copy, writable as SageMaker's are (the
    # SDK 3.x driver channel chmods its script); a local folder is the user's: read-only.
    downloaded = sorted(name for name, ch in ctx.spec.channels.items() if ch.is_s3)
    return Staged(staged.trial_spec, {"container_engine": engine,
                                      "writable_channels": downloaded}, staged.events)


def job(ctx: JobContext) -> TrainingJob:
    from hpt.runtime.containers import ContainerSettings
    from hpt.runtime.local_job import STOP_GRACE_SECONDS

    spec = ctx.spec
    # Channels are mounted into the container, not linked: read-only, but for hpt's own
    # copies of s3:// channels.
    container = ContainerSettings(
        ctx.settings.get("container_engine", "docker"), spec.trainer.image or "", spec.name,
        STOP_GRACE_SECONDS,
        tuple((str(Path(ch.uri).resolve()), name) for name, ch in spec.channels.items()),
        writable_channels=frozenset(ctx.settings.get("writable_channels") or ()),
        toolkit=spec.trainer.distribution in ("none", "parameter_server"),
        entrypoint=tuple(spec.trainer.container_entrypoint or ()),
        arguments=tuple(spec.trainer.container_arguments or ()))
    return local.job(ctx, container=container)


DOCKER = Runtime("docker", problems=problems, bundles=local.bundles, stage=stage, job=job,
                 placement=local.placement, forks_trials=False,
                 # The hosts of a trial meet on one engine's bridge network: one node.
                 bundle_strategy="STRICT_PACK")
