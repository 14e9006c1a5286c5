"""S3 channels and artifacts (boto3, the standard AWS configuration: AWS_ENDPOINT_URL, profiles,
region).

`s3://bucket/prefix` channels are downloaded once per tuning job into the experiment folder
(File mode: every object under the prefix, at its key relative to the prefix) and every trial
links or shards that copy like a local channel, so 100 trials do not download the data 100
times. A manifest of the keys and ETags makes the next launch (a resume) skip what is there.
`output: s3://bucket/prefix` receives each completed training job's artifacts where SageMaker
puts them: `<prefix>/<training-job>/output/model.tar.gz` and `output.tar.gz` (output/data).
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_SUFFIX = ".manifest.json"  # beside the channel folder: trials never see it


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without a leading slash; "" for the whole bucket

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3(uri: str) -> S3Location:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return S3Location(bucket, prefix)


def local_key_path(root: Path, key: str, prefix: str) -> Path:
    """Where object `key` lands under root, or ValueError when it would land outside."""
    relative = key[len(prefix):].lstrip("/") if prefix and key.startswith(prefix) else key
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "\0" in relative:
        raise ValueError(f"refusing S3 key {key!r}: it would not land inside {root}")
    return root.joinpath(*parts)


def s3_client():
    import boto3

    return boto3.client("s3")


def _listing(client, location: S3Location) -> dict[str, str]:
    """key -> ETag of every object under the prefix (folder markers skipped)."""
    objects: dict[str, str] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                objects[item["Key"]] = item["ETag"]
    return objects


def download_channel(client, uri: str, dest: Path) -> dict[str, Any]:
    """Makes dest a copy of every object under uri; returns what it did (for the journal)."""
    location = parse_s3(uri)
    listing = _listing(client, location)
    if not listing:
        raise FileNotFoundError(f"channel {uri}: no objects under this prefix")
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path = dest.with_name(dest.name + MANIFEST_SUFFIX)
    try:
        have = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        have = {}
    fetched = 0
    inside = dest.resolve()
    for key, etag in sorted(listing.items()):
        target = local_key_path(dest, key, location.prefix)
        if have.get(key) == etag and target.is_file() and not target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # A symlink planted in the folder (a linked sub-folder) must not carry a download out.
        if not target.parent.resolve().is_relative_to(inside):
            raise ValueError(f"refusing S3 key {key!r}: {target.parent} is a link that leads "
                             f"outside {dest}; remove the link (hpt downloads into real folders)")
        partial = target.with_name(target.name + ".hpt-partial")
        client.download_file(location.bucket, key, str(partial))
        os.replace(partial, target)  # a crash never leaves half a file under its real name
        fetched += 1
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(json.dumps(listing, sort_keys=True))
    os.replace(tmp, manifest_path)
    return {"uri": uri, "objects": len(listing), "downloaded": fetched,
            "cached": len(listing) - fetched, "path": str(dest)}


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
