"""A SageMaker model's serving process, started from CreateModel's container: its
model.tar.gz fetched (s3:// or a local path) and `hpt/serving/framework.py` run for
SageMaker's PyTorch inference images, or the image's own `serve` in a container. Endpoints
start one per variant (hpt/api/endpoints.py), a batch transform job one for its whole run
(hpt/api/transform_runner.py)."""

from __future__ import annotations

from pathlib import Path

from hpt.api.wire_protocol import VALIDATION, ApiError
from hpt.core.sagemaker_names import MODEL_ARCHIVE

FRAMEWORK_SERVER = Path(__file__).resolve().parent.parent / "serving" / "framework.py"


def start_model(name: str, container: dict, serving: tuple[str, str | None], engine: str,
                folder: Path, port: int, owner: str):
    """A started Backend (hpt/serving/backends.py) serving `container` on `port`, its files
    and serve.log in `folder`; `serving` is Records.serving_of's answer, `owner` labels its
    container. The caller waits for it to answer /ping and stops it."""
    from hpt.serving.backends import Backend

    kind, image = serving
    folder.mkdir(parents=True, exist_ok=True)
    archive = fetch_model(container.get("ModelDataUrl"), folder)
    backend = Backend(name, folder, port, container=(engine, image) if kind == "docker" else None,
                      tuning_job=owner, environment=dict(container.get("Environment") or {}))
    backend.start(FRAMEWORK_SERVER if kind == "framework" else None, archive)
    return backend


def fetch_model(uri: str | None, folder: Path) -> Path:
    """ModelDataUrl (s3:// or a local path) -> a local model.tar.gz."""
    if not uri:
        raise ApiError(VALIDATION, "PrimaryContainer.ModelDataUrl: required; give the s3:// "
                                   f"URI of the {MODEL_ARCHIVE}")
    target = folder / MODEL_ARCHIVE
    if uri.startswith("s3://"):
        from hpt.runtime.channels import parse_s3, s3_client

        location = parse_s3(uri)
        try:
            s3_client().download_file(location.bucket, location.prefix, str(target))
        except Exception as exc:  # noqa: BLE001 - botocore's errors say why
            raise RuntimeError(f"ModelDataUrl {uri}: cannot be downloaded ({exc})") from None
        return target
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if not path.is_file():
        raise RuntimeError(f"ModelDataUrl {uri}: no such file")
    return path
