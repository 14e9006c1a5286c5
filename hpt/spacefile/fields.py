"""The space.yaml models' own field checks: job and channel names, paths and URIs, and
`SpecModel`, the base of every model of the file.

The generic checks (numbers, choices, mappings, hyperparameter names, `problem`) are
hpt/core/checks.py's, where the strategies and early-stopping rules find them too; they are
named here as well, for hpt.spacefile's modules.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, ValidationInfo

from hpt.core import sagemaker_names as sm
from hpt.core.checks import (HPT_ERROR, aliased_choice, boolean, choice,  # noqa: F401
                             collect, did_you_mean, hyperparameter_name, integer, mapping,
                             number, optional, problem, problems, refused_by, show,
                             static_value_problem, text)
from hpt.core.sagemaker_names import is_reserved  # noqa: F401 - hpt.spacefile's public name

# SageMaker's reserved hyperparameter keys (hpt/core/sagemaker_names.py), as a set.
RESERVED_HYPERPARAMETERS = frozenset(sm.RESERVED_HYPERPARAMETERS)
URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")


# -- names ------------------------------------------------------------------------------------

def suggest_job_name(value: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9]+", "-", value).strip("-")[:sm.TUNING_JOB_NAME_MAX].strip("-")
    return name or "my-tuning-job"


def job_name_problem(value: Any) -> str | None:
    """Why `value` is not a valid tuning job name, or None."""
    if not isinstance(value, str):
        return f"must be a string (got {show(value)}); quote it"
    if not value:
        return "must not be empty (got ''); use 1-32 letters, digits and inner hyphens"
    if len(value) > sm.TUNING_JOB_NAME_MAX or not sm.TUNING_JOB_NAME.match(value):
        size = f", {len(value)} characters" if len(value) > sm.TUNING_JOB_NAME_MAX else ""
        return (f"must be 1-{sm.TUNING_JOB_NAME_MAX} letters, digits and inner hyphens (got "
                f"{show(value)}{size}); e.g. {suggest_job_name(value)!r}")
    return None


job_name = refused_by(job_name_problem)


def channel_name(value: Any) -> str:
    if not isinstance(value, str):
        raise problem(f"the channel name must be a string (got {show(value)}); quote it")
    if sm.channel_name_problem(value):
        fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", value).replace("..", ".").lstrip("._-") or "train"
        raise problem(f"the channel name must be 1-{sm.CHANNEL_NAME_MAX} letters, digits, '_', "
                      f"'.' or '-', starting with a letter or digit, without '..' "
                      f"(got {show(value)}); e.g. {fixed[:sm.CHANNEL_NAME_MAX]!r}")
    return value


def case_clashes(names: Iterable[str], variable: str) -> list[tuple[tuple, str]]:
    """Names that differ only in case would share one upper-cased environment variable."""
    seen: dict[str, str] = {}
    found = []
    for name in names:
        first = seen.setdefault(name.upper(), name)
        if first != name:
            found.append(((name,), f"would share the variable {variable}{name.upper()} with "
                                   f"{first!r} (names differ only in case); rename one"))
    return found


# -- paths ------------------------------------------------------------------------------------

def base_dir(info: ValidationInfo | None) -> Path:
    """The folder relative paths are resolved against: the yaml's, else the working dir."""
    context = (info.context if info is not None else None) or {}
    return Path(context.get("base_dir") or Path.cwd())


def local_path(value: str, info: ValidationInfo | None) -> Path:
    path = Path(value)
    return (path if path.is_absolute() else base_dir(info) / path).resolve()


def uri(value: Any, info: ValidationInfo | None, what: str) -> str:
    """s3:// kept as is; file:// and plain paths -> absolute local path."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise problem(f"must be a path or an s3:// URI (got {show(value)}); e.g. "
                      f"../data/{what} or s3://bucket/prefix/{what}")
    scheme = URI_SCHEME.match(value)
    if scheme and scheme.group(1).lower() == "s3":
        if not S3_URI.match(value):
            raise problem(f"must be s3://bucket/prefix with a valid bucket name (got {show(value)}); "
                          f"fix the bucket name (lowercase letters, digits, '.', '-')")
        return value
    if scheme and scheme.group(1).lower() != "file":
        raise problem(f"unsupported URI scheme {scheme.group(1)!r} (got {show(value)}); "
                      f"use a local path, file:// or s3://")
    plain = value[len("file://"):] if scheme else value
    if not plain or "\0" in plain:
        raise problem(f"must name a path (got {show(value)}); e.g. file:///data/{what}")
    return str(local_path(plain, info))


# -- models ---------------------------------------------------------------------------------

class SpecModel(BaseModel):
    """Base of the spec's models: unknown keys rejected, immutable, no silent coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


