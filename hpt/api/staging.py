"""A tuning job request made ready to run when it is created, so that a problem is the
request's ValidationException, not a job failing later: where its training jobs run (the
placement: local processes or an image, each host's share of the server's machine), its
training code fetched (`sagemaker_submit_directory`), its channels' data checked in S3, and
the space.yaml hpt launches for it, validated: here, once; the job's process runs the frozen
spec this validation produced (hpt/api/job_runner.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpt.api.images import FRAMEWORK_IMAGE, repository_of
from hpt.api.instances import Resources, host_resources, instance_resources
from hpt.api.wire_protocol import VALIDATION, ApiError
from hpt.api.tuning import (Placement, definition_of, in_request_terms, instance_type,
                            space_from_request, submit_directory, training_image)
from hpt.core.sagemaker_names import SOURCE_ARCHIVE
from hpt.spacefile.sagemaker_json.importing import resource_config
from hpt.spacefile.sagemaker_json.names import IMAGE_PLACEHOLDER, hpt_tags, is_placeholder


@dataclass(frozen=True)
class ServerResources:
    """What the server runs training jobs with: its Ray's CPUs and GPUs, the images it maps
    (--image-map), the container engine."""
    cpus: float
    gpus: float
    image_map: dict[str, str] = field(default_factory=dict)
    engine: str = "docker"


def stage(request: dict[str, Any], folder: Path, server: ServerResources, say) -> None:
    """The code, the space.yaml and the spec validated from it (job_runner's VALIDATED_SPEC)
    in `folder`; ApiError for anything hpt cannot run. This is the one validation of a
    request: the job's process runs the frozen spec (hpt/api/job_runner.py)."""
    from hpt.api.job_runner import SPACE, VALIDATED_SPEC
    from hpt.experiment.store import write_json_atomic
    from hpt.spacefile import SpecError, load_spec

    placement = placement_of(request, server, say)
    submit = submit_directory(request)
    if submit and not is_placeholder(submit):
        source = folder / "source"
        fetch_code(submit, source)
        placement = Placement(placement.runtime, str(source), placement.image,
                              placement.resources, placement.notes)
    space, notes = space_from_request(request, placement)
    notes += parallelism(request, placement, server, say)
    check_channels(space.get("channels") or {})
    path = folder / SPACE
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    (folder / "notes.txt").write_text("".join(f"{n}\n" for n in notes))
    try:
        spec = load_spec(path)
    except SpecError as exc:
        lines = [in_request_terms(str(p).replace(f"{path}: ", "")) for p in exc.problems]
        raise ApiError(VALIDATION, "hpt cannot run this tuning job: " + "; ".join(lines))
    # Unredacted, as space.yaml beside it: the job's process needs the environment it gives.
    write_json_atomic(folder / VALIDATED_SPEC, spec.to_frozen_dict())


def placement_of(request: dict[str, Any], server: ServerResources, say) -> Placement:
    """Where the request's training jobs run: its framework image in script mode as local
    processes, a mapped or local image in containers, or, for a request `hpt
    export-sagemaker` wrote and nobody changed, the space's own trainer."""
    image = training_image(request)
    resources = host_resources(instance_type(request), server.cpus, server.gpus)
    exported = exported_trainer(request)
    if image == IMAGE_PLACEHOLDER and exported:
        tags = hpt_tags(request)
        if tags.get("instance_type") == "local":  # the space's own share of a machine
            resources = Resources(max(1, int(float(tags.get("cpus_per_host", 1)))),
                                  int(float(tags.get("gpus_per_host", 0))))
        return Placement("local", exported, None, resources, [
            f"TrainingImage: the placeholder `hpt export-sagemaker` wrote: the training jobs "
            f"run the space's own trainer ({exported}, the request's hpt:source_dir) as "
            f"local processes"])
    wanted = instance_resources(instance_type(request))
    if wanted != resources:
        say(f"hpt api: {request['HyperParameterTuningJobName']}: {instance_type(request)} has "
            f"{wanted.cpus} vCPUs and {wanted.gpus} GPUs; this Ray has {server.cpus:g} and "
            f"{server.gpus:g}, so each host gets {resources.cpus} CPUs and {resources.gpus} "
            f"GPUs")
    repository = repository_of(image)
    mapped = server.image_map.get(repository) or server.image_map.get(image)
    if mapped:
        return Placement("docker", None, mapped, resources,
                         [f"TrainingImage {image}: runs as {mapped} (--image-map)"])
    algorithm = definition_of(request).get("AlgorithmSpecification") or {}
    if FRAMEWORK_IMAGE.match(image) and submit_directory(request) and \
            not algorithm.get("ContainerEntrypoint"):
        return Placement("local", None, None, resources)
    from hpt.runtime.runtimes.docker import engine_problem

    problem = engine_problem(server.engine, image)
    if problem is None:
        return Placement("docker", None, image, resources)
    if algorithm.get("ContainerEntrypoint"):
        raise ApiError(VALIDATION, f"TrainingImage {image} with ContainerEntrypoint (the SDK "
                                   f"3.x ModelTrainer's way of running code): the entrypoint "
                                   f"runs in a container of the image, which is not on this "
                                   f"machine's {server.engine} engine ({problem}); build or "
                                   f"pull it, or map it with --image-map "
                                   f"{repository}=LOCAL_IMAGE (e.g. hpt-cnn:pytorch-toolkit)")
    raise ApiError(VALIDATION, f"TrainingImage {image}: hpt runs SageMaker's framework images "
                               f"in script mode (with sagemaker_submit_directory and "
                               f"sagemaker_program) and any image on this machine's "
                               f"{server.engine} engine; this one is neither ({problem}); "
                               f"build or pull it, or map it with --image-map "
                               f"{repository}=LOCAL_IMAGE")


def parallelism(request: dict[str, Any], placement: Placement, server: ServerResources,
                say) -> list[str]:
    """Said once, at create: a MaxParallelTrainingJobs the server's machine cannot hold at
    once (on 2 cores, 2 ml.m5.large jobs "2 at a time" run one at a time)."""
    hosts = int(resource_config(definition_of(request)).get("InstanceCount") or 1)
    wanted = int(((request.get("HyperParameterTuningJobConfig") or {}).get(
        "ResourceLimits") or {}).get("MaxParallelTrainingJobs") or 1)
    per_host = placement.resources
    fits = min(int(server.cpus // (per_host.cpus * hosts)) if per_host.cpus else wanted,
               int(server.gpus // (per_host.gpus * hosts)) if per_host.gpus else wanted)
    if fits >= wanted:
        return []
    note = (f"MaxParallelTrainingJobs {wanted}: each training job takes {hosts} x "
            f"{instance_type(request)} ({per_host.cpus} CPUs, {per_host.gpus} GPUs each) of "
            f"this server's {server.cpus:g} CPUs and {server.gpus:g} GPUs, so "
            f"{max(fits, 1)} run at a time and the others wait (hpt status reports that wait "
            f"apart from hpt's own overhead); for more at once, pick a smaller InstanceType or "
            f"give hpt api more --num-cpus/--num-gpus")
    say(f"hpt api: {request['HyperParameterTuningJobName']}: {note}")
    return [note]


def exported_trainer(request: dict[str, Any]) -> str | None:
    """The local trainer folder of a request `hpt export-sagemaker` wrote (its absolute
    hpt:source_dir), while its code is still the placeholder."""
    folder = hpt_tags(request).get("source_dir")
    submit = submit_directory(request)
    if not folder or (submit and not is_placeholder(submit)) or not Path(folder).is_absolute():
        return None
    if not Path(folder).is_dir():
        raise ApiError(VALIDATION, f"Tags hpt:source_dir: {folder} is not a folder on this "
                                   f"machine; upload the code as {SOURCE_ARCHIVE} and set "
                                   f"sagemaker_submit_directory, or fix the tag")
    return folder


def fetch_code(uri: str, dest: Path) -> None:
    """sagemaker_submit_directory: an s3:// tar.gz (or a local one) unpacked into dest."""
    from hpt.runtime.channels import parse_s3, s3_client
    from hpt.serving.archive import ArchiveError, extract_model

    archive = dest.with_name(SOURCE_ARCHIVE)
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
