"""What a tuning job request needs from S3 before it can run, fetched or checked when it is
created, so that a problem is the request's ValidationException, not a job failing later:
the training code (`sagemaker_submit_directory`) and the channels' data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hpt.api.protocol import VALIDATION, ApiError


def fetch_code(uri: str, dest: Path) -> None:
    """sagemaker_submit_directory: an s3:// tar.gz (or a local one) unpacked into dest."""
    from hpt.runtime.channels import parse_s3, s3_client
    from hpt.serving.archive import ArchiveError, extract_model

    archive = dest.with_name("sourcedir.tar.gz")
    if uri.startswith("s3://"):
        location = parse_s3(uri)
        try:
            s3_client().download_file(location.bucket, location.prefix, str(archive))
        except Exception as exc:  # noqa: BLE001 - botocore's errors: all say why
            raise ApiError(VALIDATION, f"StaticHyperParameters.sagemaker_submit_directory "
                                       f"{uri}: cannot be downloaded ({exc}); upload the code "
                                       f"there (the SDK does it in fit())") from None
    elif Path(uri).is_file():
        shutil.copyfile(uri, archive)
    else:
        raise ApiError(VALIDATION, f"StaticHyperParameters.sagemaker_submit_directory {uri}: "
                                   f"give the s3:// URI of the code's tar.gz")
    try:
        extract_model(archive, dest)
    except ArchiveError as exc:
        raise ApiError(VALIDATION, f"StaticHyperParameters.sagemaker_submit_directory {uri}: "
                                   f"{exc}") from None


def check_channels(channels: dict[str, Any]) -> None:
    """Every S3 channel has data: said now, not by a launcher that cannot start the job."""
    from hpt.runtime.channels import parse_s3, s3_client

    client = None
    for name, channel in channels.items():
        uri = channel if isinstance(channel, str) else channel.get("uri", "")
        if not uri.startswith("s3://"):
            continue
        client = client or s3_client()
        location = parse_s3(uri)
        try:
            found = client.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix,
                                           MaxKeys=1).get("KeyCount", 0)
        except Exception as exc:  # noqa: BLE001 - botocore's errors: all say why
            raise ApiError(VALIDATION, f"InputDataConfig {name}: {uri} cannot be listed "
                                       f"({exc}); check the bucket and the credentials hpt "
                                       f"api runs with") from None
        if not found:
            raise ApiError(VALIDATION, f"InputDataConfig {name}: no objects under {uri}; "
                                       f"upload the channel's data first")
