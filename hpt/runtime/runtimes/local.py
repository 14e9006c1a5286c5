"""`runtime: local`: every host of a training job is a process group on the node Ray placed
its bundle on (algo-1 in the trial's own actor, algo-2..N in host actors)."""

from __future__ import annotations

from hpt.runtime.job_protocol import JobContext, Runtime, Staged, StageContext, TrainingJob


def bundles(trainer) -> list[dict[str, float]]:
    """One bundle per host: its CPUs and GPUs, reserved together (a fraction of a GPU as
    the exact share of one device: controller/slots.py)."""
    from hpt.core.gpu_share import ray_gpu_request

    return [{"CPU": trainer.cpus_per_host, "GPU": ray_gpu_request(trainer.gpus_per_host)}] * \
        trainer.instance_count


def stage_channels(ctx: StageContext) -> Staged:
    """s3:// channels are downloaded once; trials link the copy like a local channel."""
    from hpt.runtime.channels import stage_s3_channels

    events, trial_spec = stage_s3_channels(ctx.spec, ctx.root, ctx.s3)
    return Staged(trial_spec, events=tuple(events))


def job(ctx: JobContext, container=None) -> TrainingJob:
    from hpt.runtime.local_job import LocalTrainingJob

    slot = ctx.slot
    return LocalTrainingJob(ctx.spec, ctx.assignment, ctx.trial_dir, slot.num_cpus,
                            slot.gpu_ids, ip=slot.ip, other_hosts=slot.other_hosts,
                            warm_socket=ctx.settings.get("warm_socket"), container=container)


def placement(ctx: JobContext) -> str:
    slot = ctx.slot
    return slot.ip + (f" GPU {','.join(slot.gpu_ids)}" if slot.gpu_ids else "") + (
        f" (+{len(slot.other_hosts)} hosts)" if slot.other_hosts else "")


def problems(values: dict) -> list[tuple[tuple, str]]:
    trainer = values.get("trainer")
    found = []
    for field in ("container_entrypoint", "container_arguments"):
        if trainer is not None and getattr(trainer, field):
            found.append((("trainer", field), "runs in a container (its paths are the "
                          "container's /opt/ml/...): use runtime: docker with trainer.image"))
    return found


LOCAL = Runtime("local", problems=problems, bundles=bundles, stage=stage_channels,
                job=job, placement=placement)
