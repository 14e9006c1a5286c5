"""Field-level checks shared by the space.yaml models.

Every check raises `problem(...)`, a pydantic error whose message is already in hpt's
style ("what is wrong (got X); how to fix it"); `hpt.spacefile.messages` turns it into a
`FILE: field.path: message` line. A check may report several problems at once, each on a
sub-path of the field (`problems([(("min",), msg), (("max",), msg)])`).
"""

from __future__ import annotations

import datetime
import difflib
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

from hpt.core import sagemaker_names as sm
from hpt.core.sagemaker_names import is_reserved  # noqa: F401 - hpt.spacefile's public name

HPT_ERROR = "hpt"

# SageMaker's reserved hyperparameter keys (hpt/core/sagemaker_names.py), as a set.
RESERVED_HYPERPARAMETERS = frozenset(sm.RESERVED_HYPERPARAMETERS)
URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")


# -- raising problems ------------------------------------------------------------------------

def problem(message: str) -> PydanticCustomError:
    return PydanticCustomError(HPT_ERROR, "{message}", {"message": message})


def problems(found: list[tuple[tuple, str]]) -> PydanticCustomError:
    """Several problems at once, each at a sub-path (a tuple of keys) of the checked field."""
    return PydanticCustomError(HPT_ERROR, "{message}",
                               {"message": found[0][1], "problems": list(found)})


# -- showing values ---------------------------------------------------------------------------

def show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v) for v in value[:6]) + (", ..." if len(value) > 6 else "") + "]"
        return "a list " + text if len(text) <= 60 else "a list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value.isoformat()}"
    return f"a {type(value).__name__}"


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


def did_you_mean(word: Any, choices: Iterable[str]) -> str | None:
    """The closest choice to a misspelt word, or None."""
    if not isinstance(word, str):
        return None
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return close[0]
    starting = [c for c in choices if word and _norm(c).startswith(_norm(word))]
    if len(starting) == 1 and len(_norm(word)) >= 3:
        return starting[0]
    normalized = {_norm(c): c for c in choices}
    if _norm(word) in normalized:
        return normalized[_norm(word)]
    close = difflib.get_close_matches(_norm(word), list(normalized), n=1, cutoff=0.6)
    return normalized[close[0]] if close else None


def _got_text(value: Any) -> str:
    """' ; write it without quotes' when a number or bool was quoted."""
    if isinstance(value, str):
        try:
            float(value)
            return "; write the number without quotes"
        except ValueError:
            pass
    return ""


# -- scalar checks ----------------------------------------------------------------------------

def integer(ge: int | None = None, le: int | None = None,
            fix: str = "") -> Callable[[Any], int]:
    """A whole number (an integral float such as 1e3 counts); bools and strings rejected."""
    def check(value: Any) -> int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise problem(f"must be an integer (got {show(value)})"
                          + (_got_text(value) or (f"; {fix}" if fix else "")))
        if ge is not None and value < ge:
            raise problem(f"must be >= {ge} (got {value})" + (f"; {fix}" if fix else ""))
        if le is not None and value > le:
            raise problem(f"must be <= {le} (got {value})" + (f"; {fix}" if fix else ""))
        return value
    return check


def number(gt: float | None = None, ge: float | None = None) -> Callable[[Any], float]:
    """A finite int or float; bools, strings, NaN and inf rejected."""
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise problem(f"must be a number (got {show(value)})" + _got_text(value))
        if not math.isfinite(value):
            raise problem(f"must be a finite number (got {show(value)}); give a real bound")
        if gt is not None and value <= gt:
            raise problem(f"must be > {show(gt)} (got {show(value)})")
        if ge is not None and value < ge:
            raise problem(f"must be >= {show(ge)} (got {show(value)})")
        return float(value)
    return check


_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def boolean(value: Any) -> bool:
    """true/false; also YAML 1.1's on/off/yes/no, quoted or not."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise problem(f"must be true or false (got {show(value)})")


def text(value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise problem(f"must be a string (got {show(value)}); quote it")
    if not value.strip():
        raise problem("must not be empty (got '')")
    return value


def optional(check: Callable[..., Any]) -> Callable[..., Any]:
    def maybe(value: Any) -> Any:
        return None if value is None else check(value)
    return maybe


def choice(*options: str) -> Callable[[Any], str]:
    """One of `options`; case, '-', '_' and spaces are ignored (SageMaker's `Maximize`,
    `ReverseLogarithmic`-style spellings normalize to hpt's)."""
    table = {_norm(o): o for o in options}

    def check(value: Any) -> str:
        if isinstance(value, str) and _norm(value) in table:
            return table[_norm(value)]
        guess = did_you_mean(value, options)
        raise problem(f"must be one of {', '.join(options)} (got {show(value)})"
                      + (f"; did you mean {guess!r}?" if guess else "; use one of them"))
    return check


def aliased_choice(aliases: dict[str, str], *options: str) -> Callable[[Any], str]:
    """`choice` that also accepts SageMaker's long names (e.g. Logarithmic -> log)."""
    base = choice(*options)

    def check(value: Any) -> str:
        if isinstance(value, str) and _norm(value) in aliases:
            return aliases[_norm(value)]
        return base(value)
    return check


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


def job_name(value: Any) -> str:
    reason = job_name_problem(value)
    if reason:
        raise problem(reason)
    return value


def hyperparameter_name(value: Any) -> str:
    """A key of static_hyperparameters / hyperparameters."""
    if not isinstance(value, str):
        raise problem(f"the name must be a string (got {show(value)}); quote it")
    if not value:
        raise problem("the name must not be empty; name the hyperparameter")
    if any(c.isspace() or c in "=\0" for c in value):
        fixed = re.sub(r"[\s=\0]+", "_", value)
        raise problem(f"the name must not contain whitespace, '=' or NUL (got {show(value)}); "
                      f"e.g. {fixed!r}")
    if is_reserved(value):
        raise problem(f"{value!r} is reserved: SageMaker keeps every sagemaker_* key, "
                      f"_tuning_objective_metric and default_user_module_name for itself "
                      f"(distribution switches come from trainer.distribution); rename it")
    return value


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


def static_value_problem(value: Any, depth: int = 0) -> str | None:
    """Static hyperparameter values must survive JSON (hyperparameters.json)."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"must be a finite number (got {show(value)})"
    if depth < 20 and isinstance(value, (list, tuple)):
        return next((p for v in value if (p := static_value_problem(v, depth + 1))), None)
    if depth < 20 and isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "mapping keys must be strings; quote them"
        return next((p for v in value.values() if (p := static_value_problem(v, depth + 1))), None)
    return (f"must be a string, number, bool, list or mapping (got {show(value)}); "
            f"quote it to pass it as a string")


# -- models ---------------------------------------------------------------------------------

class SpecModel(BaseModel):
    """Base of the spec's models: unknown keys rejected, immutable, no silent coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def collect(found: list, at: tuple, check: Callable[[Any], Any], value: Any) -> Any:
    """Runs `check`; a problem it raises is appended to `found` at sub-path `at`."""
    try:
        return check(value)
    except PydanticCustomError as exc:
        found.append((at, exc.message()))
        return value


def mapping(value: Any, what: str, example: str) -> dict:
    """A YAML mapping section; empty (null) means {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise problem(f"must be a mapping of {what} (got {show(value)}); e.g. {example}")
    return value
