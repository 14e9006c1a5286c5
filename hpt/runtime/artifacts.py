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

from hpt.experiment.store import ExperimentStore
from hpt.runtime.channels import parse_s3
from hpt.trial import TrialStatus


def artifact_uris(output: str, training_job: str) -> dict[str, str]:
    """Where SageMaker puts a training job's artifacts under the tuning job's output path."""
    location = parse_s3(output)
    base = posixpath.join(location.prefix, training_job, "output") if location.prefix \
        else posixpath.join(training_job, "output")
    return {"model": f"s3://{location.bucket}/{base}/model.tar.gz",
            "output": f"s3://{location.bucket}/{base}/output.tar.gz"}


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
    puts them (`<output>/<job>/output/intermediate/`, `<output>/<job>/checkpoints/`),
    uploading only files whose size or mtime changed since the last run()."""

    def __init__(self, client, host_tree: Path, output: str, training_job: str):
        self.client, self.host_tree, self.training_job = client, Path(host_tree), training_job
        location = parse_s3(output)
        base = posixpath.join(location.prefix, training_job) if location.prefix else training_job
        self.bucket = location.bucket
        self.targets = {"output/intermediate": f"{base}/output/intermediate",
                        "checkpoints": f"{base}/checkpoints"}
        self._seen: dict[Path, tuple[int, int]] = {}

    def run(self) -> int:
        uploaded = 0
        for folder, prefix in self.targets.items():
            root = self.host_tree / folder
            if not root.is_dir():
                continue
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                stat = path.stat()
                stamp = (stat.st_size, stat.st_mtime_ns)
                if self._seen.get(path) == stamp:
                    continue
                key = f"{prefix}/{path.relative_to(root).as_posix()}"
                self.client.upload_file(str(path), self.bucket, key)
                self._seen[path] = stamp
                uploaded += 1
        return uploaded


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
            self.syncs[name] = FolderSync(self.client, self.store.root / name / "algo-1",
                                          self.output, name)

    def ended(self, record: dict) -> None:
        with self._lock:
            sync = self.syncs.pop(record["training_job_name"], None)
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
            self.store.append("trial_upload_failed", training_job_name=sync.training_job,
                              reason=f"sync: {type(exc).__name__}: {exc}")

    def _finish(self, record: dict, sync) -> None:
        if sync is not None:
            self._sync(sync)  # the last checkpoints, whatever the status
        if record["status"] == TrialStatus.COMPLETED:
            self._upload(record)

    def _upload(self, record: dict) -> None:
        name = record["training_job_name"]
        trial_dir = self.store.root / name
        try:
            data = pack_output_data(trial_dir / "algo-1" / "output" / "data",
                                    trial_dir / "output.tar.gz")
            model = Path(record["model_artifact"]) if record.get("model_artifact") else None
            uris = upload_artifacts(self.client, self.output, name, model, data)
            self.store.append("trial_uploaded", training_job_name=name, uris=uris)
        except Exception as exc:  # noqa: BLE001 - S3 errors of every kind: recorded, job goes on
            reason = f"{type(exc).__name__}: {exc}"
            self.store.append("trial_upload_failed", training_job_name=name, reason=reason)
            self.view.print(f"{name}: upload to {self.output} failed: {reason}")

    def close(self) -> None:
        self._closing.set()
        self._syncer.join(timeout=self.SYNC_SECONDS + 5)
        self.pool.shutdown(wait=True)
