"""`runtime: docker`: every host of a training job is a container started as SageMaker starts
one (`docker run ... IMAGE train`, the host's tree at /opt/ml); the hosts of a multi-host
trial share a network of their own, so they all run on one node (runtime/docker.py)."""

from __future__ import annotations

from pathlib import Path

from hpt.runtime.api import JobContext, Runtime, Staged, StageContext, TrainingJob
from hpt.runtime.runtimes import local


def problems(values: dict) -> list[tuple[tuple, str]]:
    trainer = values.get("trainer")
    if trainer is None:
        return []
    found = []
    if not trainer.image:
        found.append((("trainer", "image"), "is required for runtime: docker; e.g. image: "
                      "hpt-cnn:latest (python scripts/build_images.py builds it)"))
    channels = values.get("channels") or {}
    if trainer.instance_count > 1:
        for name, channel in channels.items():
            if channel.distribution == "ShardedByS3Key":
                found.append((("channels", name, "distribution"),
                              "ShardedByS3Key is not split across containers in this version "
                              "(each host's container mounts the whole folder): use "
                              "FullyReplicated, or runtime: local"))
    return found


def stage(ctx: StageContext) -> Staged:
    staged = local.stage_channels(ctx)
    settings = {"container_engine": ctx.options.get("container_engine") or "docker"}
    return Staged(staged.trial_spec, settings, staged.events)


def job(ctx: JobContext) -> TrainingJob:
    from hpt.runtime.host import ContainerSettings
    from hpt.runtime.training_job import STOP_GRACE_SECONDS

    spec = ctx.spec
    # Channels are mounted read-only into the container, not linked.
    container = ContainerSettings(
        ctx.settings.get("container_engine", "docker"), spec.trainer.image or "", spec.name,
        STOP_GRACE_SECONDS,
        tuple((str(Path(ch.uri).resolve()), name) for name, ch in spec.channels.items()),
        toolkit=spec.trainer.distribution in ("none", "parameter_server"))
    return local.job(ctx, container=container)


DOCKER = Runtime("docker", problems=problems, bundles=local.bundles, stage=stage, job=job,
                 placement=local.placement, forks_trials=False,
                 # The hosts of a trial meet on one engine's bridge network: one node.
                 bundle_strategy="STRICT_PACK")
