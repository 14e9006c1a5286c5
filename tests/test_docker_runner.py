"""runtime: docker -- the runner's control flow (start, stream, stop, remove) through the
training job, with a stand-in `docker` command on PATH: this machine has no container engine.
The stand-in records every engine call and plays the container's part by printing what the
contract's environment (passed as --env) says; tests/test_docker_argv.py checks the argv
itself, and runs a real container where an engine exists."""

import json
import os
import time
from pathlib import Path

import pytest

from hpt.runtime.job_protocol import JobContext, Slot, TrialAssignment
from hpt.runtime.runtimes import RUNTIMES
from hpt.runtime.local_job import LocalTrainingJob
from hpt.spacefile import load_spec
from helpers import faulty_space

def _job(write_space, tmp_path, mode: str) -> LocalTrainingJob:
    """The job runtime: docker builds (its registry entry), as the trainable builds it."""
    space = faulty_space(name="boxed", runtime="docker")
    space["trainer"]["image"] = "hpt-test:latest"
    spec = load_spec(write_space(space))
    return RUNTIMES["docker"].job(JobContext(
        spec, TrialAssignment(1, f"boxed-001-{mode}0000", {"mode": mode}),
        tmp_path / "exp" / f"boxed-001-{mode}0000", {"container_engine": "docker"},
        Slot(num_cpus=2)))


def test_a_container_job_streams_its_metrics_and_is_removed_after(write_space, tmp_path,
                                                                   fake_docker):
    job = _job(write_space, tmp_path, "okay")
    job.start()
    while (progress := job.advance()).record is None:
        pass
    record = progress.record
    assert record.status == "Completed" and record.objective_value == pytest.approx(0.8)
    calls = fake_docker()
    run = calls[0]
    assert run[0] == "run" and run[-2:] == ["hpt-test:latest", "train"]
    assert f"type=bind,source={job.base_dir},target=/opt/ml" in run
    env = dict(a.split("=", 1) for i, a in enumerate(run) if run[i - 1] == "--env")
    assert env["SM_MODEL_DIR"] == "/opt/ml/model" and "SAGEMAKER_BASE_DIR" not in env
    assert json.loads(env["SM_HPS"])["mode"] == "okay"
    assert calls[-1] == ["rm", "--force", "boxed-001-okay0000-algo-1"]  # nothing left behind


def test_stopping_a_container_job_stops_and_removes_the_container(write_space, tmp_path,
                                                                  fake_docker):
    job = _job(write_space, tmp_path, "hang")
    job.start()
    deadline = time.time() + 10
    while not (Path(os.environ["FAKE_DOCKER_STATE"]) / "boxed-001-hang0000-algo-1.pid").exists():
        assert time.time() < deadline
        time.sleep(0.05)
    began = time.time()
    record = job.stop()
    assert record.status == "Stopped"
    assert time.time() - began < 8  # `docker stop` ended it, not the 10 s grace period
    names = [c[:3] for c in fake_docker()[1:]]
    assert ["stop", "-t", "10"] in names
    assert fake_docker()[-1] == ["rm", "--force", "boxed-001-hang0000-algo-1"]


def _standin(tmp_path, stderr: str, code: int) -> str:
    engine = tmp_path / "engine"
    engine.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit {code}\n")
    engine.chmod(0o755)
    return str(engine)


def test_an_engine_that_is_not_there_or_lacks_the_image_is_said_once_before_any_trial(
        tmp_path, monkeypatch, write_space):
    """Not 20 trials failing with exit code 125: one line, exit 2, nothing created."""
    import subprocess
    import sys

    from hpt.runtime.runtimes.docker import engine_problem

    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/nothing.sock")
    dead = _standin(tmp_path, "Cannot connect to the Docker daemon at unix:///tmp/nothing.sock."
                    " Is the docker daemon running?", 1)
    said = engine_problem(dead, "hpt-cnn:latest")
    assert "no " in said and "unix:///tmp/nothing.sock" in said
    assert "python -m hpt.runtime.container_engine start" in said
    (tmp_path / "other").mkdir()
    lacking = _standin(tmp_path / "other", "Error: No such image: nope:latest", 1)
    said = engine_problem(lacking, "nope:latest")
    assert said.startswith("trainer.image: nope:latest is not on this machine") and \
        "build -t nope:latest" in said
    assert "is not installed" in engine_problem(str(tmp_path / "no-such-engine"), "x")

    space = faulty_space(name="boxed", runtime="docker")
    space["trainer"]["image"] = "nope:latest"
    monkeypatch.setenv("PATH", f"{tmp_path / 'other'}:{os.environ['PATH']}")
    (tmp_path / "other" / "docker").symlink_to(lacking)
    done = subprocess.run([sys.executable, "-m", "hpt", "launch", str(write_space(space)),
                           "--experiments-dir", str(tmp_path / "exp")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "trainer.image: nope:latest is not on this machine's docker engine" in done.stderr
    assert not (tmp_path / "exp").exists()


def test_the_engine_tool_the_messages_name_ships_with_hpt_and_the_script_still_runs(tmp_path):
    """`python -m hpt.runtime.container_engine` is in the package (a pip-installed hpt has no
    scripts/); scripts/container_engine.py runs it from a checkout, even with a Python that
    has no site-packages (CI starts the engine before hpt is installed)."""
    import subprocess
    import sys
    from pathlib import Path

    shipped = subprocess.run([sys.executable, "-m", "hpt.runtime.container_engine", "--help"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shipped.returncode == 0 and "start" in shipped.stdout, shipped.stderr
    script = Path(__file__).resolve().parent.parent / "scripts" / "container_engine.py"
    bare = subprocess.run([sys.executable, "-S", str(script), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and bare.stdout == shipped.stdout, bare.stderr
