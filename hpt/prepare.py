"""Data preparation before launch: a space.yaml may name a command that creates its channels.

`prepare: [python, ../scripts/prepare_data.py]` runs (argv list, no shell, cwd = the yaml's
folder, `python` = this interpreter) when any local channel path of the space is missing, so
the default job works on a fresh clone. Validation then checks the channels as usual.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from hpt.errors import UserError


def _channel_paths(raw: dict, base: Path) -> list[Path]:
    paths = []
    for value in (raw.get("channels") or {}).values():
        uri = value.get("uri") if isinstance(value, dict) else value
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        uri = uri.removeprefix("file://")
        paths.append((base / uri).resolve())
    return paths


def prepare_missing_channels(space: Path) -> bool:
    """Runs the space's `prepare` command if a local channel is missing; True if it ran."""
    try:
        raw = yaml.safe_load(space.read_text())
    except (OSError, yaml.YAMLError):
        return False  # load_spec reports it properly
    if not isinstance(raw, dict) or not raw.get("prepare"):
        return False
    base = space.resolve().parent
    if all(p.exists() for p in _channel_paths(raw, base)):
        return False
    argv = [str(a) for a in raw["prepare"]]
    if argv[0] == "python":
        argv[0] = sys.executable
    print(f"Preparing data: {' '.join(argv)}", flush=True)
    done = subprocess.run(argv, cwd=base)
    if done.returncode != 0:
        raise UserError(f"{space}: prepare: the command {argv} failed with exit code "
                        f"{done.returncode}; run it by hand to see why")
    return True
