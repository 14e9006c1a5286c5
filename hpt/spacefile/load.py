"""Loading a space.yaml: read, parse, apply overrides, validate, check across sections and
against the file system; every problem found is reported, each on its own line."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from hpt.spacefile.spec_error import SpecError
from hpt.spacefile.fields import did_you_mean, show
from hpt.spacefile.messages import (drop_explained_missing, format_path, missing_fix,
                               problems_from_error, unknown_field)
from hpt.spacefile.across import across_sections
from hpt.spacefile.model import USER_FIELDS, Spec
from hpt.spacefile.yaml_source import parse_yaml


def _field_adapter(name: str) -> TypeAdapter:
    field = Spec.model_fields[name]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata
                       else field.annotation)


# One validator per top-level field, so a broken section does not hide the others' problems
# nor the checks that need only valid sections.
_ADAPTERS = {name: _field_adapter(name) for name in USER_FIELDS}
# `channels:` with nothing after it means no channels, not null.
_NONE_MEANS_DEFAULT = {"channels", "static_hyperparameters", "strategy_config", "limits",
                       "completion", "constraints"}

Problem = tuple[tuple, str]


def load_spec(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
              check_disk: bool = True, prepared: bool = False) -> Spec:
    """Reads and validates a space.yaml. `overrides` ({"limits.max_trials": 3, ...}) replace
    values of the file before validation; `check_disk=False` skips the checks that the code
    and the local channels exist (for exporting a space elsewhere). A local channel that is
    missing is not a problem while the space has a `prepare` command that has not run yet
    (`missing_channels` lists them); `prepared=True` says it ran. Raises SpecError listing
    every problem."""
    display = os.fspath(path)
    source = Path(display)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{display}: file not found; check the path (relative paths start "
                         f"from the working directory {os.getcwd()})"]) from None
    except IsADirectoryError:
        raise SpecError([f"{display}: is a folder, not a file; give the path of the "
                         f"space .yaml file"]) from None
    except UnicodeDecodeError:
        raise SpecError([f"{display}: is not UTF-8 text; save it as UTF-8"]) from None
    except OSError as exc:
        raise SpecError([f"{display}: cannot be read ({exc.strerror}); check its "
                         f"permissions"]) from None
    data, problems = parse_yaml(text, display)
    if problems:
        raise SpecError(problems)
    return spec_from_dict(data, source, overrides=overrides, check_disk=check_disk,
                          prepared=prepared)


def spec_from_dict(data: dict, source: str | os.PathLike,
                   overrides: dict[str, Any] | None = None, check_disk: bool = True,
                   prepared: bool = False) -> Spec:
    """Validates a space as loaded from YAML. `source` is the file named in messages and the
    base of relative paths."""
    display = os.fspath(source)
    source_path = Path(display).resolve()
    if data is None:
        raise SpecError([f"{display}: the file is empty; write the tuning job as a mapping "
                         f"of fields (name:, trainer:, hyperparameters:, ...)"])
    if not isinstance(data, dict):
        raise SpecError([f"{display}: the top level must be a mapping of fields (name:, "
                         f"trainer:, hyperparameters:, ...) (got {show(data)}); "
                         f"remove the leading '-' or brackets"])
    data = _apply_overrides(data, overrides or {})
    context = {"base_dir": source_path.parent}

    found: list[Problem] = [((key,), unknown_field(key, list(USER_FIELDS)))
                            for key in data if key not in USER_FIELDS]
    values: dict[str, Any] = {}
    for name in USER_FIELDS:
        field = Spec.model_fields[name]
        if name not in data or (data[name] is None and name in _NONE_MEANS_DEFAULT):
            if name == "objective" and "objectives" in data:
                continue  # the multi-objective form: `_objective_forms` fills it in
            if field.is_required():
                found.append(((name,), f"required field is missing; {missing_fix(Spec, name)}"))
            else:
                values[name] = field.get_default(call_default_factory=True)
            continue
        try:
            values[name] = _ADAPTERS[name].validate_python(data[name], context=context)
        except ValidationError as exc:
            found.extend(problems_from_error(exc, Spec, (name,)))

    found.extend(_objective_forms(data, values))
    found.extend(across_sections(values))
    if check_disk:
        found.extend(_on_disk(values, data, source_path.parent, prepared))
    found = drop_explained_missing(found)
    if not found:
        try:
            return Spec.model_validate({**values, "source_path": source_path}, context=context)
        except ValidationError as exc:  # a rule the sections passed but the whole did not
            found = problems_from_error(exc, Spec)
    raise SpecError(_lines(found, display, data, overrides or {}))


def _objective_forms(data: dict, values: dict[str, Any]) -> list[Problem]:
    """`objective:` (one metric) or `objectives:` (several), never both. With several, the
    first is also `objective`; a list of one is the single-objective form."""
    if "objectives" not in data:
        return []
    if "objective" in data:
        return [(("objectives",), "give either objective: (one metric) or objectives: (several "
                                  "metrics), not both; move the objective into the list")]
    objectives = values.get("objectives")
    if objectives == []:
        return [(("objectives",), "must list the objectives (got []); e.g. [{metric: "
                                  "'validation:accuracy', type: maximize}, {metric: "
                                  "'model:size_mb', type: minimize}], or write objective:")]
    if objectives:
        values["objective"] = objectives[0]
        if len(objectives) == 1:
            values["objectives"] = []
    return []


def _prepare_missing(argv: list[str] | None, base: Path) -> str | None:
    """What of the prepare command is not there: its program, or the script `python` runs."""
    if not argv:
        return None
    program = argv[0]
    if program == "python" or Path(program).name.startswith("python"):
        script = next((a for a in argv[1:] if not a.startswith("-")), None)
        if script is not None and script.endswith(".py") and not (base / script).is_file():
            return f"the script {script} is not there"
        return None
    if "/" in program:
        return None if (base / program).is_file() else f"the program {program} is not there"
    return None if shutil.which(program) else f"the program {program} is not on PATH"


def missing_channels(spec: Spec) -> list[str]:
    """The local channels whose path does not exist (yet)."""
    return [name for name, channel in spec.channels.items()
            if not channel.is_s3 and not Path(channel.uri).exists()]


def _apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """{"limits.max_trials": 3} -> data["limits"]["max_trials"] = 3, on a copy."""
    if not overrides:
        return data
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                break  # the section itself is malformed (validation says so) or a list
        else:
            node[last] = value
    return data


def _lines(found: list[Problem], display: str, data: dict, overrides: dict) -> list[str]:
    order = {key: i for i, key in enumerate(data)}
    rank = {key: len(order) + i for i, key in enumerate(USER_FIELDS)}
    found = sorted(found, key=lambda p: order.get(p[0][0], rank.get(p[0][0], 10**6))
                   if p[0] else -1)
    lines: list[str] = []
    for path, message in found:
        dotted = format_path(path)
        if any(dotted == key or dotted.startswith(key + ".") for key in overrides):
            message += " (the value came from an override, e.g. a command-line option)"
        line = f"{display}: {dotted}: {message}" if dotted else f"{display}: {message}"
        if line not in lines:
            lines.append(line)
    return lines


def _short(path) -> str:
    """A path for a one-line message: its start and its end when it is very long."""
    text = str(path)
    return text if len(text) <= 160 else f"{text[:90]}...{text[-60:]}"


def _kind(path: Path) -> str:
    """folder | file | other | missing, or why the path cannot even be looked at."""
    try:
        if path.is_dir():
            return "folder"
        if path.is_file():
            return "file"
        return "other" if path.exists() else "missing"
    except OSError as exc:  # a name too long, a loop of links, ...
        return f"cannot be looked at ({exc.strerror})"


def _on_disk(values: dict[str, Any], data: dict, base: Path, prepared: bool) -> list[Problem]:
    """The trainer's code and the local channels must exist (s3:// is not checked here)."""
    found: list[Problem] = []
    where = f"relative paths start from the yaml's folder {_short(base)}"
    trainer = values.get("trainer")
    if trainer is not None:
        raw = data["trainer"]
        source_dir = trainer.source_dir
        kind = _kind(source_dir)
        if kind != "folder":
            what = {"file": "is not a folder", "other": "is not a folder",
                    "missing": "folder not found"}.get(kind, kind)
            found.append((("trainer", "source_dir"),
                          f"{what}: {_short(source_dir)} (got {show(raw.get('source_dir'))}); "
                          f"fix the path ({where})"))
        elif _kind(source_dir / trainer.entry_point) != "file":
            files = sorted(p.name for p in source_dir.iterdir() if p.is_file())
            guess = did_you_mean(trainer.entry_point, files)
            found.append((("trainer", "entry_point"),
                          f"file not found in source_dir {_short(source_dir)} (got "
                          f"{show(raw.get('entry_point'))}); "
                          + (f"did you mean {guess!r}?" if guess else
                             "put the script there or fix entry_point")))
    missing = _prepare_missing(values.get("prepare"), base)
    if missing:
        found.append((("prepare",), f"{missing} (got {show(values['prepare'])}); fix the "
                                    f"command ({where})"))
    channels = values.get("channels")
    if channels:
        # Before launch, a channel the space's `prepare` command makes may not exist yet: it
        # is the command's to create (`hpt validate` says so); after it ran, it must exist.
        pending = bool(values.get("prepare")) and not prepared
        fix = (f"prepare: {' '.join(values['prepare'])} ran and did not create it; fix that "
               f"command or the path") if values.get("prepare") else "create it, or fix the path"
        for name, channel in channels.items():
            kind = "s3" if channel.is_s3 else _kind(Path(channel.uri))
            if kind in ("s3", "folder", "file", "other") or (kind == "missing" and pending):
                continue
            raw = data["channels"][name]
            path = ("channels", name, "uri") if isinstance(raw, dict) else ("channels", name)
            got = raw.get("uri") if isinstance(raw, dict) else raw
            what = "path not found" if kind == "missing" else f"path {kind}"
            found.append((path, f"{what}: {_short(channel.uri)} (got {show(got)}); {fix} "
                                f"({where})"))
    return found
