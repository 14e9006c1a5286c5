"""pydantic's validation errors -> hpt's one-line problems: `FILE: field.path: what; fix`.

pydantic reports a location as a tuple that also holds union tags (`continuous`) and
`[key]` markers; `field_path` walks the model's types alongside it to drop those and to
know, for an unknown key, which fields were allowed there (for the did-you-mean).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Iterable, Union

from pydantic import BaseModel, ValidationError

from hpt.spacefile.fields import HPT_ERROR, did_you_mean, show

Path = tuple  # a field path: keys (str) and list indexes (int)

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_:-]+$")


def format_path(path: Path) -> str:
    """('hyperparameters', 'lr', 'min') -> 'hyperparameters.lr.min'; odd keys in ['...']."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out += ("." if out else "") + part
        else:
            out += f"[{str(part)!r}]"
    return out


def _strip(tp: Any) -> Any:
    """Annotated[X, ...] -> X; X | None -> X."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def user_fields(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name != "source_path"]


def field_path(root: Any, loc: Iterable) -> tuple[Path, Any, Any]:
    """(path as the user sees it, the type at the end, the model that holds the last key)."""
    tp, parent, shown = root, None, []
    for part in loc:
        tp = _strip(tp)
        if part == "[key]":
            continue
        if _is_model(tp):
            parent = tp
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field is not None else Any
            shown.append(part)
        elif typing.get_origin(tp) is dict:
            parent, tp = None, typing.get_args(tp)[1]
            shown.append(part)
        elif typing.get_origin(tp) is list:
            parent, tp = None, typing.get_args(tp)[0]
            shown.append(part)
        elif typing.get_origin(tp) in (Union, types.UnionType):
            # A discriminated union puts the tag in the location: follow that member.
            tp = next((m for m in typing.get_args(tp) if _is_model(_strip(m))
                       and part in typing.get_args(_strip(m).model_fields["type"].annotation)), Any)
        else:
            parent, tp = None, Any
            shown.append(part)
    return tuple(shown), _strip(tp), parent


# Fixes for a missing required field, by (model name, field).
_MISSING_FIX = {
    ("Spec", "name"): "add name: my-tuning-job (1-32 letters, digits and inner hyphens)",
    ("Spec", "trainer"): "add trainer: {source_dir: ../trainers/cnn, entry_point: train.py}",
    ("Spec", "hyperparameters"): "add hyperparameters: {lr: {type: continuous, min: 0.001, max: 0.1}}",
    ("Spec", "objective"): "add objective: {metric: 'validation:accuracy', type: maximize} "
                           "(or objectives: [...] to tune several metrics)",
    ("Spec", "metric_definitions"):
        "add metric_definitions: [{name: 'validation:accuracy', regex: 'val_acc=([0-9.]+)'}]",
    ("Trainer", "source_dir"): "add source_dir: the folder with your training code "
                               "(relative to this file)",
    ("Trainer", "entry_point"): "add entry_point: the script inside source_dir, e.g. train.py",
    ("Channel", "uri"): "add uri: a path or an s3:// URI",
    ("ContinuousRange", "min"): "add min: the inclusive lower bound",
    ("ContinuousRange", "max"): "add max: the inclusive upper bound",
    ("IntegerRange", "min"): "add min: the inclusive lower bound",
    ("IntegerRange", "max"): "add max: the inclusive upper bound",
    ("CategoricalRange", "values"): "add values: [choice, ...]",
    ("Objective", "metric"): "add metric: the name of one of metric_definitions",
    ("Objective", "type"): "add type: maximize or minimize",
    ("MetricDefinition", "name"): "add name: the metric's name, e.g. 'validation:accuracy'",
    ("MetricDefinition", "regex"): "add regex: a pattern with one capture group, e.g. 'loss=([0-9.]+)'",
    ("WarmStart", "parents"): "add parents: [parent-job-name]",
    ("WarmStart", "type"): "add type: identical_data_and_algorithm or transfer_learning",
}


def missing_fix(model: Any, field: str) -> str:
    return _MISSING_FIX.get((getattr(model, "__name__", ""), field), f"add {field}:")


def unknown_field(key: Any, allowed: list[str]) -> str:
    guess = did_you_mean(key, allowed)
    if guess:
        return f"unknown field; did you mean {guess!r}?"
    return f"unknown field; remove it (allowed here: {', '.join(allowed)})"


_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "dict_type": "a mapping",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "list_type": "a list",
    "path_type": "a path", "literal_error": None,
}


_RANGE_TYPE_HINTS = {"float": "continuous", "real": "continuous", "double": "continuous",
                     "int": "integer", "choice": "categorical", "enum": "categorical"}


def _one(err: dict, root: Any, prefix: Path) -> list[tuple[Path, str]]:
    kind, value = err["type"], err.get("input")
    path, tp, parent = field_path(root, (*prefix, *err["loc"]))
    ctx = err.get("ctx") or {}
    if kind == HPT_ERROR:
        found = ctx.get("problems", [((), err["msg"])])
        return [((*path, *sub), message) for sub, message in found]
    if kind == "extra_forbidden":
        allowed = user_fields(parent) if parent is not None else []
        return [(path, unknown_field(path[-1], allowed))]
    if kind == "missing":
        return [(path, f"required field is missing; {missing_fix(parent, str(path[-1]))}")]
    if kind == "union_tag_not_found":
        return [((*path, "type"), "required field is missing; add type: continuous, integer "
                                  "or categorical")]
    if kind == "union_tag_invalid":
        tag = ctx.get("tag", value)
        guess = _RANGE_TYPE_HINTS.get(str(tag).lower()) or did_you_mean(
            tag, ("continuous", "integer", "categorical"))
        return [((*path, "type"), f"must be one of continuous, integer, categorical (got "
                                  f"{show(tag)})" + (f"; did you mean {guess!r}?" if guess else ""))]
    if kind in ("model_type", "model_attributes_type") and _is_model(tp):
        return [(path, f"must be a mapping with the fields {', '.join(user_fields(tp))} "
                       f"(got {show(value)}); write them as nested keys")]
    if kind in _TYPE_WORDS and _TYPE_WORDS[kind]:
        return [(path, f"must be {_TYPE_WORDS[kind]} (got {show(value)})")]
    if kind == "finite_number":
        return [(path, f"must be a finite number (got {show(value)})")]
    if kind in ("too_short", "too_long"):
        return [(path, f"{err['msg'].lower()}; fix the number of items")]
    return [(path, f"{err['msg']} (got {show(value)})")]


def problems_from_error(exc: ValidationError, root: Any,
                        prefix: Path = ()) -> list[tuple[Path, str]]:
    """Every error of `exc` as (field path, message); `root` is the type that was validated."""
    found: list[tuple[Path, str]] = []
    for err in exc.errors(include_url=False):
        found.extend(_one(err, root, prefix))
    return found


def drop_explained_missing(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """`entry_pont` unknown and `entry_point` missing are one mistake: keep the did-you-mean."""
    meant = {(*path[:-1], msg.split("'")[1]) for path, msg in found
             if msg.startswith("unknown field; did you mean")}
    return [(path, msg) for path, msg in found
            if not (msg.startswith("required field is missing") and path in meant)]
