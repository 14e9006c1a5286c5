"""scripts/build_images.py's torch: the release installed here, whatever its build. Right after
the README's install it asked pip for `torch==2.14.1+cu130` (torch.__version__ of a CUDA
build), a local version no index serves, and failed."""

import json
import subprocess
import sys
import types

from helpers import load_script


def test_the_images_torch_is_the_installed_release_whatever_its_build(monkeypatch):
    build_images = load_script("build_images")
    for installed, wanted in (("2.14.1+cu130", "torch==2.14.1"), ("2.13.0+cpu", "torch==2.13.0"),
                              ("2.9.1", "torch==2.9.1")):
        monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__=installed))
        assert build_images.torch_requirement(None) == wanted
    assert build_images.torch_requirement("torch==2.5.0") == "torch==2.5.0"  # --torch


def test_pip_finds_a_wheel_for_the_torch_installed_here(tmp_path):
    import torch

    requirement = load_script("build_images").torch_requirement(None)
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                           "--ignore-installed", "--quiet", "--report", str(report),
                           requirement], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (requirement, done.stderr[-2000:])
    (found,) = json.loads(report.read_text())["install"]
    assert found["metadata"]["version"].split("+")[0] == torch.__version__.split("+")[0]
