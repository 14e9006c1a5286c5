"""Data preparation before launch: a space.yaml may name a command that creates its channels.

`prepare: [python, ../scripts/prepare_data.py]` runs (argv list, no shell, cwd = the yaml's
folder, `python` = this interpreter) when any local channel path of the space is missing, so
the default job works on a fresh clone. It runs only for a space that passed validation (all
but the on-disk checks), and validation then checks the channels as usual.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hpt.core.errors import UserError


def prepare_missing_channels(spec) -> bool:
    """Runs the (validated) space's `prepare` command if a local channel is missing; True if
    it ran."""
    from hpt.spacefile.load import missing_channels

    if not spec.prepare or not missing_channels(spec):
        return False
    argv = list(spec.prepare)
    if argv[0] == "python":
        argv[0] = sys.executable
    print(f"Preparing data: {' '.join(argv)}", flush=True)
    # Its output is relayed, not inherited: a console whose reader went away (hpt/cli/console.py)
    # must not fail the command with it.
    with subprocess.Popen(argv, cwd=Path(spec.source_path).parent, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
    if proc.returncode != 0:
        raise UserError(f"{spec.source_path}: prepare: the command {argv} failed with exit "
                        f"code {proc.returncode}; run it by hand to see why")
    return True
