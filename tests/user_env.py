"""The environment of a new user's shell, for the runs that must work as a user runs them (the
README's quick start and tour, the `hpt api` examples): a HOME of its own, the virtualenv's
commands first on PATH, and none of the variables a test run may have (Ray's, hpt's, Tune's,
AWS's, the SageMaker SDK's, pytest's)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Variables a test session or CI may have and a user's shell does not.
NOT_A_USERS = ("RAY_", "HPT_", "TUNE_", "AWS_", "SAGEMAKER_", "PYTEST_", "MLFLOW_",
               "OMP_", "CUDA_")


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """What `env -i HOME=... PATH=...` gives, plus `extra` (what the documented commands
    themselves export)."""
    home.mkdir(parents=True, exist_ok=True)
    venv_bin = str(Path(sys.executable).parent)
    env = {"HOME": str(home), "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin",
                                                      "/bin"]),
           "LANG": "C.UTF-8", "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
    env.update(extra)
    leaked = [k for k in env if k.startswith(NOT_A_USERS) and k not in extra]
    assert not leaked, leaked
    return env


def hpt_command() -> list[str]:
    """The `hpt` a user runs: the virtualenv's console script."""
    script = Path(sys.executable).with_name("hpt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hpt.cli.main"]
