"""hpt orchestrates any script: its own install must not pick (or pin) a training framework.
torch belongs to the reference trainer's `cnn` extra; `import hpt` and `hpt validate` run in
an environment where torch cannot be imported at all."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("torch", "tensorflow", "jax", "scikit-learn", "mxnet")

# Makes `import torch` (and the other frameworks) fail in the child, as in an environment
# without them, then runs what follows.
NO_FRAMEWORKS = """
import sys
for name in ("torch", "tensorflow", "jax", "sklearn"):
    sys.modules[name] = None  # import fails with ImportError
"""


def requirement_name(requirement: str) -> str:
    for stop in "<>=!~;[ ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower()


def test_the_core_install_requires_no_training_framework():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    assert not core & set(FRAMEWORKS), core
    extras = project["optional-dependencies"]
    assert any(requirement_name(r) == "torch" for r in extras["cnn"])
    # The extra takes the user's torch as it is: a lower bound, never a cap.
    (torch,) = [r for r in extras["cnn"] if requirement_name(r) == "torch"]
    assert "<" not in torch and "==" not in torch, torch


def test_import_hpt_and_validate_work_without_torch():
    space = REPO / "search_spaces" / "digits-cnn.yaml"
    code = NO_FRAMEWORKS + f"""
import hpt, hpt.report.summary, hpt.spacefile
from hpt.cli.main import main
code = main(["validate", {str(space)!r}])
print("torch" in sys.modules and sys.modules["torch"] is not None)
sys.exit(code)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    # 0 when the data is prepared, 2 (a missing channel, named) when it is not: never a crash.
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr and "ModuleNotFoundError" not in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_a_tuning_job_runs_without_torch(ray_session, write_space, tmp_path):
    from helpers import sleepy_space

    space = write_space(sleepy_space("no-torch", max_trials=2, seconds=(0.1, 0.2)))
    address = ray_session.get_runtime_context().gcs_address
    code = NO_FRAMEWORKS + f"""
from hpt.cli.main import main
sys.exit(main(["launch", {str(space)!r}, "--experiments-dir", {str(tmp_path / "exp")!r},
               "--address", {address!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 Completed" in done.stdout
