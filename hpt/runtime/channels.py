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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpt.core.schema import Event

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


def stage_s3_channels(spec, root: Path, client):
    """Downloads the space's s3:// channels into `<root>/channels/<name>` (once per tuning
    job); returns the journal events that say so and the spec the trials run with (those
    channels as local folders). A channel that cannot be read is bad input (UserError)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from hpt.core.errors import UserError

    events, channels = [], dict(spec.channels)
    for name, channel in spec.channels.items():
        if not channel.is_s3:
            continue
        try:
            info = download_channel(client, channel.uri, root / "channels" / name)
        except (BotoCoreError, ClientError, FileNotFoundError, ValueError) as exc:
            raise UserError(f"{spec.source_path}: channels.{name}: cannot download "
                            f"{channel.uri}: {exc}; check the URI and your AWS configuration "
                            f"(AWS_ENDPOINT_URL, AWS_PROFILE, region, credentials)") from None
        events.append({"event": Event.CHANNEL_DOWNLOADED, "channel": name, **info})
        channels[name] = channel.model_copy(update={"uri": info["path"]})
    return events, spec.model_copy(update={"channels": channels})
