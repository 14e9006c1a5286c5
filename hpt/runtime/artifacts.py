"""`output: s3://...`: a training job's artifacts where SageMaker puts them.

While a job runs, its `output/intermediate/` and `checkpoints/` are synced to
`<prefix>/<training-job>/output/intermediate/` and `.../checkpoints/`; when it completes,
`model.tar.gz` and `output.tar.gz` (its output/data) go to `<prefix>/<training-job>/output/`.
All of it in background threads (the tuning job never waits on S3); the journal records each
upload or why it failed.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hpt.core.sagemaker_names import (CHECKPOINTS_DIR, INTERMEDIATE_DIR, LEAD_HOST, MODEL_ARCHIVE,
                                      OUTPUT_ARCHIVE)
from hpt.core.schema import Event, File, Key
from hpt.experiment.checkpoints import carried_steps, has_checkpoint
from hpt.experiment.store import ExperimentStore, attempt_dir
from hpt.runtime.channels import parse_s3, s3_client
from hpt.core.trial import TrialStatus


# Beside SageMaker's checkpoints/, hpt's own: the data points the checkpoints belong to.
HPT_METRICS_KEY = f"hpt/{File.METRICS}"


def artifact_uris(output: str, training_job: str) -> dict[str, str]:
    """Where SageMaker puts a training job's artifacts under the tuning job's output path."""
    location = parse_s3(output)
    base = posixpath.join(location.prefix, training_job, "output") if location.prefix \
        else posixpath.join(training_job, "output")
    return {"model": f"s3://{location.bucket}/{base}/{MODEL_ARCHIVE}",
            "output": f"s3://{location.bucket}/{base}/{OUTPUT_ARCHIVE}"}


def pack_output_data(data_dir: Path, archive: Path) -> Path | None:
    """output/data -> output.tar.gz (None when the job wrote nothing there)."""
    files = sorted(p for p in data_dir.rglob("*") if p.is_file()) if data_dir.is_dir() else []
    if not files:
        return None
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(data_dir)))
    os.replace(tmp, archive)
    return archive


class FolderSync:
    """Mirrors a running job's `output/intermediate/` and `checkpoints/` to where SageMaker
    puts them (`<output>/<job>/output/intermediate/`, and `<output>/<job>/checkpoints/` or
    the job's own `CheckpointConfig.S3Uri`), uploading only files whose size or mtime changed
    since the last run()."""

    def __init__(self, client, host_tree: Path, output: str, training_job: str,
                 checkpoints: str | None = None):
        self.client, self.host_tree, self.training_job = client, Path(host_tree), training_job
        location = parse_s3(output)
        base = posixpath.join(location.prefix, training_job) if location.prefix else training_job
        self.bucket = location.bucket
        own = parse_s3(checkpoints) if checkpoints else None
        # folder -> (bucket, key prefix)
        self.targets = {INTERMEDIATE_DIR: (self.bucket, f"{base}/{INTERMEDIATE_DIR}"),
                        CHECKPOINTS_DIR: (own.bucket, own.prefix.rstrip("/")) if own
                        else (self.bucket, f"{base}/{CHECKPOINTS_DIR}")}
        # The job's data points, so that a resume elsewhere continues its steps.
        self.metrics_key = f"{base}/{HPT_METRICS_KEY}"
        self._seen: dict[Path, tuple[int, int]] = {}
        self._points_sent: bytes | None = None

    def run(self) -> int:
        """One pass; returns the checkpoint and intermediate files sent. The data points are
        read before the checkpoints are looked at: a script writes checkpoint N before it
        prints epoch N's line, so the points sent are never newer than the checkpoints sent
        (a retry elsewhere would count steps it does not redo). They are sent whenever they
        changed, with or without a new checkpoint, so they catch up on the next pass."""
        metrics = self.host_tree.parent / File.METRICS
        points = metrics.read_bytes() if metrics.is_file() else None
        uploaded = 0
        for folder, (bucket, prefix) in self.targets.items():
            root = self.host_tree / folder
            if not root.is_dir():
                continue
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                stat = path.stat()
                stamp = (stat.st_size, stat.st_mtime_ns)
                if self._seen.get(path) == stamp:
                    continue
                key = f"{prefix}/{path.relative_to(root).as_posix()}".lstrip("/")
                self.client.upload_file(str(path), bucket, key)
                self._seen[path] = stamp
                uploaded += 1
        if points is not None and points != self._points_sent and self._seen:
            self.client.put_object(Bucket=self.bucket, Key=self.metrics_key, Body=points)
            self._points_sent = points
        return uploaded


def attempt_folder(spec, root: Path, training_job: str, carry_from: Path | None = None) -> Path:
    """The folder of a training job's next attempt (store.attempt_dir: earlier attempts
    archived, their checkpoints carried); with `output: s3://`, when nothing was carried
    here, the checkpoints synced to S3 (SageMaker's CheckpointConfig place) come back: the
    attempt may run on another node than the one before. Both controllers start here."""
    trial_dir = attempt_dir(root, training_job, carry_from)
    if (spec.output or "").startswith("s3://") and not has_checkpoint(trial_dir):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            fetch_checkpoints(s3_client(), spec.output, training_job, trial_dir)
        except (BotoCoreError, ClientError):
            pass  # S3 unreachable: the attempt starts without checkpoints, as with none there
    return trial_dir


def fetch_checkpoints(client, output: str, training_job: str, trial_dir: Path) -> int:
    """A job's next attempt on a node without its earlier one (another node of a cluster, a
    folder moved): algo-1's checkpoints come back from `<output>/<job>/checkpoints/`, with
    the data points synced beside them. Returns the objective steps carried (metrics)."""
    location = parse_s3(output)
    base = posixpath.join(location.prefix, training_job) if location.prefix else training_job
    fetched = download_prefix(client, f"s3://{location.bucket}/{base}/{CHECKPOINTS_DIR}/",
                              Path(trial_dir) / LEAD_HOST / CHECKPOINTS_DIR)
    if not fetched:
        return 0
    try:
        client.download_file(location.bucket, f"{base}/{HPT_METRICS_KEY}",
                             str(Path(trial_dir) / File.METRICS))
    except Exception:  # noqa: BLE001 - checkpoints without points: the steps start over
        return 0
    return carried_steps(trial_dir)


def download_prefix(client, uri: str, target: Path) -> int:
    """Every object under the s3:// prefix into `target`, by its key under the prefix (a key
    that would land outside `target` is skipped). Returns the files fetched."""
    location = parse_s3(uri)
    prefix = location.prefix if not location.prefix or location.prefix.endswith("/") \
        else location.prefix + "/"
    fetched = 0
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket,
                                                             Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):]
            path = (target / relative).resolve()
            if not relative or relative.endswith("/") or not path.is_relative_to(
                    target.resolve()):
                continue  # a folder marker, or a key that would leave the folder
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(location.bucket, item["Key"], str(path))
            fetched += 1
    return fetched


def upload_artifacts(client, output: str, training_job: str, model: Path | None,
                     output_data: Path | None) -> dict[str, str]:
    """Uploads what exists; returns {kind: s3 uri} of what was uploaded."""
    uris = artifact_uris(output, training_job)
    done: dict[str, str] = {}
    for kind, path in (("model", model), ("output", output_data)):
        if path is not None and Path(path).is_file():
            location = parse_s3(uris[kind])
            client.upload_file(str(path), location.bucket, location.prefix)
            done[kind] = uris[kind]
    return done


class ArtifactUploader:
    """`output: s3://...`: while a training job runs, its `output/intermediate/` and
    `checkpoints/` are synced every SYNC_SECONDS (changed files only); when it completes, its
    model.tar.gz (and output/data as output.tar.gz) is uploaded. All in background threads, so
    the tuning job never waits on S3; the journal records each upload (or why it failed) and
    close() waits for all of them."""

    SYNC_SECONDS = 10.0

    def __init__(self, output: str, store: ExperimentStore, view, client):
        self.output, self.store, self.view, self.client = output, store, view, client
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hpt-upload")
        self.syncs: dict = {}  # running training job -> its FolderSync
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                        name="hpt-s3-sync")
        self._syncer.start()

    def started(self, name: str) -> None:
        with self._lock:
            self.syncs[name] = FolderSync(self.client, self.store.root / name / LEAD_HOST,
                                          self.output, name)

    def ended(self, record: dict) -> None:
        with self._lock:
            sync = self.syncs.pop(record[Key.TRAINING_JOB_NAME], None)
        self.pool.submit(self._finish, record, sync)

    def _sync_loop(self) -> None:
        while not self._closing.wait(self.SYNC_SECONDS):
            with self._lock:
                syncs = list(self.syncs.values())
            for sync in syncs:
                self._sync(sync)

    def _sync(self, sync) -> None:
        try:
            sync.run()
        except Exception as exc:  # noqa: BLE001 - S3 errors of every kind: journaled, job goes on
            self.store.append(Event.TRIAL_UPLOAD_FAILED, training_job_name=sync.training_job,
                              reason=f"sync: {type(exc).__name__}: {exc}")

    def _finish(self, record: dict, sync) -> None:
        if sync is not None:
            self._sync(sync)  # the last checkpoints, whatever the status
        if record[Key.STATUS] == TrialStatus.COMPLETED:
            self._upload(record)

    def _upload(self, record: dict) -> None:
        name = record[Key.TRAINING_JOB_NAME]
        trial_dir = self.store.root / name
        try:
            data = pack_output_data(trial_dir / LEAD_HOST / "output" / "data",
                                    trial_dir / OUTPUT_ARCHIVE)
            model = Path(record[Key.MODEL_ARTIFACT]) if record.get(Key.MODEL_ARTIFACT) else None
            uris = upload_artifacts(self.client, self.output, name, model, data)
            self.store.append(Event.TRIAL_UPLOADED, training_job_name=name, uris=uris)
        except Exception as exc:  # noqa: BLE001 - S3 errors of every kind: recorded, job goes on
            reason = f"{type(exc).__name__}: {exc}"
            self.store.append(Event.TRIAL_UPLOAD_FAILED, training_job_name=name, reason=reason)
            self.view.print(f"{name}: upload to {self.output} failed: {reason}")

    def close(self) -> None:
        self._closing.set()
        self._syncer.join(timeout=self.SYNC_SECONDS + 5)
        self.pool.shutdown(wait=True)
