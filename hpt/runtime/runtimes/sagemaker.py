"""`runtime: sagemaker`: every training job is a real SageMaker training job; hpt polls it,
reads its logs from CloudWatch and stops it. SageMaker runs its hosts, reads the s3://
channels and writes the artifacts itself."""

from __future__ import annotations

import os

from hpt.core.errors import UserError
from hpt.core.sagemaker_names import MODEL_ARCHIVE
from hpt.runtime.job_protocol import JobContext, Runtime, Staged, StageContext, TrainingJob

ROLE_ENV = "HPT_SAGEMAKER_ROLE"


def problems(values: dict) -> list[tuple[tuple, str]]:
    trainer, output = values.get("trainer"), values.get("output")
    found = []
    if trainer is not None and trainer.instance_type == "local":
        found.append((("trainer", "instance_type"),
                      "must be a SageMaker instance type for runtime: sagemaker (got 'local'); "
                      "e.g. instance_type: ml.m5.xlarge"))
    if trainer is not None and not trainer.image:
        found.append((("trainer", "image"), "is required for runtime: sagemaker: an ECR image "
                      "with the sagemaker-training toolkit, e.g. "
                      "123456789012.dkr.ecr.us-east-1.amazonaws.com/hpt-cnn:latest"))
    if not (output or "").startswith("s3://"):
        found.append((("output",), "must be an s3:// URI for runtime: sagemaker (SageMaker "
                      f"writes {MODEL_ARCHIVE} there); e.g. output: s3://my-bucket/tuning"))
    for name, channel in (values.get("channels") or {}).items():
        if not channel.is_s3:
            found.append((("channels", name), f"must be an s3:// URI for runtime: sagemaker "
                          f"(got {channel.uri}); upload the data, e.g. aws s3 sync "
                          f"{channel.uri} s3://my-bucket/{name}"))
    for i, metric in enumerate(values.get("metric_definitions") or []):
        if metric.regex is None:
            found.append((("metric_definitions", i, "regex"), f"is required for runtime: "
                          f"sagemaker (SageMaker reads {metric.name!r} from the job's logs, "
                          f"never from a metrics file); print it and give its regex"))
    return found


def bundles(trainer) -> list[dict[str, float]]:
    # A trial only polls SageMaker from here: a sliver of a CPU; its hosts are SageMaker's.
    return [{"CPU": 0.05}]


def stage(ctx: StageContext) -> Staged:
    """source_dir as sourcedir.tar.gz under output, once per launch: what
    `sagemaker_submit_directory` points the toolkit in the container at."""
    from botocore.exceptions import BotoCoreError, ClientError

    from hpt.runtime.channels import parse_s3
    from hpt.runtime.sagemaker_job import pack_source, source_uri

    spec = ctx.spec
    role = ctx.options.get("sagemaker_role") or os.environ.get(ROLE_ENV)
    if not role:
        raise UserError(f"{spec.source_path}: runtime: sagemaker needs the IAM role SageMaker "
                        f"runs the training jobs as: pass --role arn:aws:iam::ACCOUNT:role/NAME "
                        f"(or set {ROLE_ENV})")
    uri = source_uri(spec.output, spec.name)
    location = parse_s3(uri)
    try:
        ctx.s3.put_object(Bucket=location.bucket, Key=location.prefix,
                          Body=pack_source(spec.trainer.source_dir))
    except (BotoCoreError, ClientError) as exc:
        raise UserError(f"{spec.source_path}: output: cannot upload the training code to "
                        f"{uri}: {exc}; check the bucket and your AWS configuration") from None
    return Staged(spec, {"role_arn": role, "code_uri": uri})


def job(ctx: JobContext) -> TrainingJob:
    import boto3

    from hpt.runtime.sagemaker_job import POLL_SECONDS, SageMakerTrainingJob

    session = boto3.session.Session()
    return SageMakerTrainingJob(
        ctx.spec, ctx.assignment, ctx.trial_dir, role_arn=ctx.settings["role_arn"],
        code_uri=ctx.settings["code_uri"], sagemaker=session.client("sagemaker"),
        logs=session.client("logs"), region=session.region_name or "us-east-1",
        poll_seconds=float(os.environ.get("HPT_SAGEMAKER_POLL_SECONDS", POLL_SECONDS)))


SAGEMAKER = Runtime("sagemaker", problems=problems, bundles=bundles, stage=stage, job=job,
                    placement=lambda ctx: f"SageMaker {ctx.spec.trainer.instance_type}",
                    host_actors=False, hpt_uploads_artifacts=False, forks_trials=False)
