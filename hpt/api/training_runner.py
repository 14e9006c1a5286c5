"""The process that runs one training job `hpt api` was asked for (CreateTrainingJob):

    python -m hpt.api.training_runner FOLDER --address RAY

FOLDER (`.hpt-api/training-jobs/<name>/`) holds what the server validated when the job was
created: the request and the spec frozen from it (a TrainingJobSpec), the unpacked code. This
process takes the job's CPUs and GPUs on the server's Ray (a placement group, as a tuning
job's trial does, so that training jobs and tuning jobs never share a GPU), stages its
channels, runs it with its runtime (local processes or a container: the same job core as a
trial, hpt/runtime/observed_job.py), uploads its model where SageMaker puts it
(`<S3OutputPath>/<TrainingJobName>/output/model.tar.gz`), and writes its state
(`state.json`, the job's row: the same keys as a tuning job's table rows) when it starts and
when it ends. A stop asked for (StopTrainingJob) is the job folder's stop-requested file,
which the job's core acts on.

A job with a warm pool (ResourceConfig.KeepAlivePeriodInSeconds) keeps this process, and the
hosts it holds, after it ends; the server may hand it a matching job, which it runs next on
the same hosts (hpt/api/warm_pools.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hpt.core.sagemaker_names import CHECKPOINTS_DIR, LEAD_HOST, LEAD_LOG, OUTPUT_ARCHIVE
from hpt.core.schema import File, Key
from hpt.experiment.api_requests import STATE
from hpt.core.trial import FailureCategory, FailureReason, TrialStatus
from hpt.api.warm_pools import IN_USE, TERMINATED, WarmPool, keep_alive_seconds

VALIDATED_SPEC = "validated-spec.json"
REQUEST = File.API_REQUEST  # the request, as a TuningRecord of its tuning form
JOB_DIR = "job"  # the training job's own folder: its hosts' trees, logs, metrics, model
RUNNER_LOG = "runner.log"


def read_state(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / STATE).read_text())
    except (OSError, ValueError):
        return None


def write_state(folder: Path, row: dict[str, Any]) -> None:
    from hpt.experiment.store import write_json_atomic

    write_json_atomic(Path(folder) / STATE, row)


def failed_row(name: str, started: float | None, reason: FailureReason) -> dict[str, Any]:
    """The row of a job that ended without a record of its own (it could not start, or its
    runner was lost)."""
    return {Key.TRAINING_JOB_NAME: name, Key.STATUS: str(TrialStatus.FAILED),
            Key.FAILURE_REASON: reason.text(), Key.START_TIME: started,
            Key.END_TIME: time.time(), Key.FINAL_METRICS: {}}


def run(folder: Path, address: str, engine: str) -> int:
    """Runs the job of `folder`; with a warm pool (KeepAlivePeriodInSeconds), then each job
    the server hands that pool, on the same held hosts, until the pool ends."""
    from hpt.runtime.runtimes import RUNTIMES

    spec = frozen_spec(folder)
    runtime = RUNTIMES[spec.runtime]
    held = HeldResources(address, spec, runtime)
    try:
        while folder is not None:
            keep_alive = keep_alive_seconds(definition_of_job(folder))
            if keep_alive:
                WarmPool(folder).write(IN_USE)
            ended = _run_or_refuse(folder, engine, held)
            folder = _next_job(folder, keep_alive, ended)
    finally:
        held.close()
    return 0


def _next_job(folder: Path, keep_alive: int, ended: TrialStatus) -> Path | None:
    """The folder of the job the warm pool is handed next, if the job asked for one and
    ended such that SageMaker keeps it (a stopped job's pool is not kept)."""
    if not keep_alive:
        return None
    pool = WarmPool(folder)
    if ended is TrialStatus.STOPPED:
        pool.write(TERMINATED, ended=time.time(), why="the job was stopped")
        return None
    print(f"hpt api: {folder.name}'s hosts stay warm for {keep_alive} s", flush=True)
    job = pool.wait(keep_alive)
    if job is None:
        print(f"hpt api: {folder.name}'s warm pool ended", flush=True)
        return None
    following = folder.parent / job
    _log_to(following / RUNNER_LOG)
    print(f"hpt api: training job {job} runs on the warm pool of {folder.name}", flush=True)
    return following


def _log_to(path: Path) -> None:
    """This process's output goes to the job it runs now (its runner.log)."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)


def _run_or_refuse(folder: Path, engine: str, held: "HeldResources") -> TrialStatus:
    """One job; one hpt cannot run (a channel that cannot be read, an engine that is not
    there) is Failed with why, and a warm pool goes on."""
    from hpt.core.errors import UserError

    try:
        return _run_one(folder, engine, held)
    except UserError as exc:
        state = read_state(folder) or {}
        write_state(folder, failed_row(frozen_spec(folder).name, state.get(Key.START_TIME),
                                       FailureReason(FailureCategory.CLIENT_ERROR, str(exc))))
        print(f"hpt api: {exc}", file=sys.stderr, flush=True)
        return TrialStatus.FAILED


def _run_one(folder: Path, engine: str, held: "HeldResources") -> TrialStatus:
    from hpt.runtime.channels import s3_client
    from hpt.runtime.job_protocol import StageContext

    spec = frozen_spec(folder)
    job_dir = folder / JOB_DIR
    queued = time.time()
    write_state(folder, {Key.TRAINING_JOB_NAME: spec.name, Key.STATUS: str(TrialStatus.IN_PROGRESS),
                         Key.START_TIME: queued, Key.LOG_PATH: str(job_dir / LEAD_LOG),
                         Key.FINAL_METRICS: {}})
    checkpoints = checkpoint_uri(folder)
    uses_s3 = any(ch.is_s3 for ch in spec.channels.values()) or \
        (spec.output or "").startswith("s3://") or checkpoints is not None
    client = s3_client() if uses_s3 else None
    staged = held.runtime.stage(StageContext(spec, folder, client, {"container_engine": engine}))
    record = _train(held.runtime, staged, spec, job_dir, held.slot(),
                    Checkpoints(client, spec, checkpoints) if checkpoints else None)
    row = {**record.to_json(), Key.QUEUE_WAIT_SECONDS: round(
        max(0.0, record.start_time - queued - (record.launch_seconds or 0.0)), 4)}
    if record.status is TrialStatus.COMPLETED and (spec.output or "").startswith("s3://"):
        row.update(_upload(client, spec.output, spec.name, job_dir, record))
    write_state(folder, row)
    return record.status


def frozen_spec(folder: Path):
    from hpt.spacefile.training_spec import TrainingJobSpec

    return TrainingJobSpec.from_frozen_dict(json.loads((folder / VALIDATED_SPEC).read_text()))


def definition_of_job(folder: Path) -> dict[str, Any]:
    """The request's TrainingJobDefinition (the job in tuning form)."""
    from hpt.api.tuning import TuningRecord

    record = TuningRecord.from_json(json.loads((folder / REQUEST).read_text()))
    return record.request["TrainingJobDefinition"]


def _train(runtime, staged, spec, job_dir: Path, slot, checkpoints: "Checkpoints | None"):
    from hpt.experiment.store import attempt_dir
    from hpt.runtime.job_protocol import JobContext, TrialAssignment

    # An earlier attempt (a runner started again after the server's death) is archived and
    # its checkpoints carried; with none here, those synced to CheckpointConfig.S3Uri.
    trial_dir = attempt_dir(job_dir.parent, job_dir.name)
    if checkpoints is not None:
        checkpoints.restore(trial_dir)
    job = runtime.job(JobContext(staged.trial_spec, TrialAssignment(1, spec.name, {}),
                                 trial_dir, staged.settings, slot))
    job.start()
    if checkpoints is not None:
        checkpoints.start(trial_dir)
    try:
        while True:
            progress = job.advance()
            if progress.record is not None:
                return progress.record
    finally:
        job.stop()  # a no-op once it ended; an interrupted runner leaves no process
        if checkpoints is not None:
            checkpoints.stop()  # the last ones, whatever the ending


def checkpoint_uri(folder: Path) -> str | None:
    """The request's CheckpointConfig.S3Uri, if it has one."""
    return (definition_of_job(folder).get("CheckpointConfig") or {}).get("S3Uri") or None


class Checkpoints:
    """CheckpointConfig, as SageMaker keeps it: algo-1's checkpoints/ (/opt/ml/checkpoints)
    synced to its S3Uri while the job runs (every SYNC_SECONDS, changed files only, and once
    more at its end), and brought back from there into an attempt that has none (a job
    restarted after the server's death, as managed spot training restarts an interrupted
    one)."""

    SYNC_SECONDS = 5.0

    def __init__(self, client, spec, uri: str):
        self.client, self.spec, self.uri = client, spec, uri
        self.sync = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self, trial_dir: Path) -> int:
        from hpt.experiment.checkpoints import has_checkpoint
        from hpt.runtime.artifacts import download_prefix

        if has_checkpoint(trial_dir):
            return 0
        fetched = download_prefix(self.client, self.uri,
                                  trial_dir / LEAD_HOST / CHECKPOINTS_DIR)
        print(f"hpt api: {fetched} checkpoint files from {self.uri}", flush=True)
        return fetched

    def start(self, trial_dir: Path) -> None:
        from hpt.runtime.artifacts import FolderSync

        output = self.spec.output if (self.spec.output or "").startswith("s3://") else self.uri
        self.sync = FolderSync(self.client, trial_dir / LEAD_HOST, output, self.spec.name,
                               checkpoints=self.uri)
        self._thread = threading.Thread(target=self._loop, name="hpt-checkpoints", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.SYNC_SECONDS):
            self._once()

    def _once(self) -> None:
        try:
            self.sync.run()
        except Exception as exc:  # noqa: BLE001 - S3's reasons: said, the job goes on
            print(f"hpt api: syncing checkpoints to {self.uri}: {type(exc).__name__}: {exc}",
                  flush=True)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._once()


def hosts_placement(spec, runtime) -> dict[str, Any]:
    """How the job's hosts are held (pure): what a job must share with a warm pool's."""
    from hpt.runtime.distribution_plan import processes_on_host

    trainer = spec.trainer
    return {"runtime": spec.runtime, "bundles": runtime.bundles(trainer),
            "processes_on_host": processes_on_host(trainer.distribution,
                                                   trainer.processes_per_host),
            "cpus_per_host": trainer.cpus_per_host, "gpus_per_host": trainer.gpus_per_host}


class HeldResources:
    """The job's hosts held on the server's Ray while it runs, as a tuning job's trial holds
    them (so the two never share a GPU): a placement group of one bundle per host, an actor
    on bundle 0 whose GPUs algo-1 gets, and a host actor running algo-(i+1) on each other
    bundle i (hpt/runtime/ray_hosts.py). Taken at the first job's start; a warm pool's next
    jobs (the same placement: warm_pools.pool_key) run on them as they are."""

    def __init__(self, address: str, spec, runtime):
        self.address, self.spec, self.runtime = address, spec, runtime
        self.group, self.other_hosts = None, ()
        self._slot = None

    def slot(self):
        if self._slot is None:
            self._slot = self._take()
        return self._slot

    def _take(self):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from hpt.cluster.session import start_or_join
        from hpt.runtime.job_protocol import Slot
        from hpt.runtime.ray_hosts import RayHost

        start_or_join(self.address, dashboard=False,
                      metadata={"hpt_training_job": self.spec.name})
        trainer = self.spec.trainer
        placement = hosts_placement(self.spec, self.runtime)
        bundles = placement["bundles"]
        self.group = placement_group(bundles, strategy=self.runtime.bundle_strategy)
        ray.get(self.group.ready())  # waits for a tuning job's trials to free them
        holder = ray.remote(_Holder).options(
            num_cpus=bundles[0]["CPU"], num_gpus=bundles[0].get("GPU") or 0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=0)).remote()
        ip, gpu_ids = ray.get(holder.where.remote())
        if self.runtime.host_actors:
            self.other_hosts = tuple(
                RayHost(i, trainer.cpus_per_host, trainer.gpus_per_host,
                        placement["processes_on_host"], group=self.group)
                for i in range(1, len(bundles)))
        return Slot(ip=ip, num_cpus=max(1, math.ceil(trainer.cpus_per_host)),
                    gpu_ids=tuple(str(g) for g in gpu_ids), other_hosts=self.other_hosts)

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for host in self.other_hosts:
            host.close()
        if self.group is not None:
            remove_placement_group(self.group)


class _Holder:
    def where(self) -> tuple[str, list]:
        """The node this bundle is on, and its GPUs."""
        import ray

        return ray.util.get_node_ip_address(), ray.get_gpu_ids()


def _upload(client, output: str, name: str, job_dir: Path, record) -> dict[str, Any]:
    from hpt.runtime.artifacts import pack_output_data, upload_artifacts

    try:
        data = pack_output_data(job_dir / LEAD_HOST / "output" / "data",
                                job_dir / OUTPUT_ARCHIVE)
        model = Path(record.model_artifact) if record.model_artifact else None
        uris = upload_artifacts(client, output, name, model, data)
        return {Key.S3_MODEL_ARTIFACT: uris.get("model"), Key.UPLOAD_TIME: time.time()}
    except Exception as exc:  # noqa: BLE001 - S3 errors of every kind: the job's reason
        return {Key.UPLOAD_FAILURE: f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m hpt.api.training_runner",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--address", required=True, help="the server's Ray")
    parser.add_argument("--container-engine", default="docker")
    args = parser.parse_args(argv)
    try:
        code = run(args.folder, args.address, args.container_engine)
    except KeyboardInterrupt:  # SIGINT: the server stops; its job starts again with it
        print("hpt api: interrupted (the server is stopping); the job starts again from its "
              "checkpoints at the server's next start", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the state is written: no wait for Ray's shutdown


if __name__ == "__main__":
    sys.exit(main())
