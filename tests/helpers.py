"""What several test modules share: the test trainers' spaces, a journal reader, the process
sweeps that find what a test started (never a broad name match)."""

import json
import subprocess
import sys
import time
from pathlib import Path

from hpt.runtime.warm.child import dying_with_parent

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAULTY = TESTS / "trainers" / "faulty"
DIST = TESTS / "trainers" / "dist"
TRAIN_PY = REPO / "trainers" / "cnn" / "train.py"


def load_script(name: str):
    """scripts/NAME.py as a module (the scripts folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_data = load_script("prepare_data")


def faulty_space(**overrides):
    space = {
        "name": "faults",
        "trainer": {"source_dir": str(FAULTY), "entry_point": "train.py",
                    "cpus_per_host": 1, "max_runtime_seconds": 4},
        "static_hyperparameters": {"epochs": 3, "x": 0.9},
        "hyperparameters": {"mode": {"type": "categorical", "values": ["ok", "fail", "hang", "silent"]}},
        "objective": {"metric": "validation:accuracy", "type": "maximize"},
        "metric_definitions": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"},
                               {"name": "train:loss", "regex": "loss=([0-9.eE+-]+)"}],
        "strategy": "grid",
        "limits": {"max_parallel": 2},
    }
    space.update(overrides)
    return space


def sleepy_space(name, max_trials=6, seconds=(1.0, 2.0), action="sleep", **extra):
    space = {
        "name": name,
        "trainer": {"source_dir": str(DIST), "entry_point": "train.py", "cpus_per_host": 1,
                    "max_runtime_seconds": 60},
        "hyperparameters": {"seconds": {"type": "continuous", "min": seconds[0],
                                        "max": seconds[1]},
                            "action": {"type": "categorical", "values": [action]}},
        "objective": {"metric": "ok", "type": "maximize"},
        "metric_definitions": [{"name": "ok", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "random",
        "limits": {"max_trials": max_trials, "max_parallel": min(2, max_trials)},
        "seed": 7,
    }
    space.update(extra)
    return space


def cnn_space(name, channels, epochs=4, max_trials=1, **extra):
    """The reference CNN (trainers/cnn) on the digits channels, with a small tuned space."""
    space = {
        "name": name,
        "trainer": {"source_dir": str(TRAIN_PY.parent), "entry_point": "train.py",
                    "cpus_per_host": 1, "max_runtime_seconds": 300},
        "channels": {"train": str(Path(channels) / "train"),
                     "test": str(Path(channels) / "test")},
        "static_hyperparameters": {"epochs": epochs},
        "hyperparameters": {"lr": {"type": "continuous", "min": 0.005, "max": 0.1,
                                   "scaling": "log"}},
        "objective": {"metric": "validation:accuracy", "type": "maximize"},
        "metric_definitions": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"},
                               {"name": "train:loss", "regex": "loss=([0-9.eE+-]+)"}],
        "strategy": "random",
        "limits": {"max_trials": max_trials, "max_parallel": min(2, max_trials)},
        "seed": 3,
    }
    space.update(extra)
    return space


def launch_killing_the_actor(spec, exp, script_pid) -> None:
    """Runs the tuning job here while a thread SIGKILLs the Ray actor that started the trial's
    script (`script_pid()` waits for that script and returns its pid): a lost host."""
    import os
    import signal
    import threading

    from hpt.launcher.launch import launch

    def kill_the_actor():
        pid = script_pid()
        actor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert actor != os.getpid()
        os.kill(actor, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_actor, daemon=True)
    killer.start()
    launch(spec, exp, dashboard=False)
    killer.join(timeout=5)


def start_launcher(space_path, exp, address, *args):
    """`hpt launch` joining `address`, SIGKILLed if pytest dies first (its reaper then stops
    its trials): a run cut short leaves no launcher behind."""
    argv, preexec = dying_with_parent(
        [sys.executable, "-m", "hpt.cli.main", "launch", str(space_path), "--experiments-dir",
         str(exp), "--address", address, *args])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=preexec)


def events(exp, name):
    path = Path(exp) / name / "journal.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def free_port() -> int:
    """A port nothing listens on, on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=90.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def counts(evs, kind):
    return sum(1 for e in evs if e["event"] == kind)


def live_processes_of(job_names) -> list[int]:
    """Processes (not zombies) whose environment names one of the training jobs."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(f"TRAINING_JOB_NAME={n}".encode() in environ for n in job_names):
            found.append(int(proc.name))
    return found


def processes_in(folder) -> list[int]:
    """Every process that names `folder` in its command line or holds a file in it open:
    what a test started there (a serving program, a Ray session), found by where it works."""
    from hpt.processes.reaper_sidecar import session_processes

    return session_processes(str(folder))


# -- a real container engine ---------------------------------------------------------------

CNN_IMAGE = "hpt-cnn:latest"  # python scripts/build_images.py
TOOLKIT_IMAGE = "hpt-cnn:pytorch-toolkit"
# Set by .ci/run, which starts an engine and builds the images: there a missing engine or
# image is a failure, never a skip.
REQUIRE_CONTAINERS = "HPT_REQUIRE_CONTAINERS"


def why_no_image(engine: str | None, image: str) -> str | None:
    """Why a test that needs `image` cannot run here, or None: the engine must run and hold
    the image already (a test never pulls: a machine may have no registry to pull from)."""
    if engine is None:
        return ("no running docker or podman here: start one (python "
                "scripts/container_engine.py start) and build the images (python "
                "scripts/build_images.py)")
    if subprocess.run([engine, "image", "inspect", image], capture_output=True,
                      timeout=30).returncode != 0:
        return (f"{engine} has no image {image} locally, and tests never pull one: python "
                f"scripts/build_images.py")
    return None


def running_engine() -> str | None:
    import shutil

    for engine in ("docker", "podman"):
        if shutil.which(engine) and subprocess.run([engine, "info"], capture_output=True,
                                                   timeout=30).returncode == 0:
            return engine
    return None


def engine_holding(*images: str) -> str:
    """The engine to run `images` with; skips the test when there is none (fails in CI)."""
    import os

    import pytest

    engine = running_engine()
    for image in images:
        reason = why_no_image(engine, image)
        if reason is not None:
            if os.environ.get(REQUIRE_CONTAINERS) == "1":
                pytest.fail(f"{REQUIRE_CONTAINERS}=1 but {reason}")
            pytest.skip(reason)
    return engine


def labelled(engine: str, kind: str, tuning_job: str) -> list[str]:
    """Names of the containers (kind 'ps -a') or networks ('network ls') of a tuning job."""
    argv = [engine, *kind.split(), "--filter", f"label=hpt.tuning-job={tuning_job}",
            "--format", "{{.Name}}" if kind == "network ls" else "{{.Names}}"]
    return [line for line in subprocess.run(argv, capture_output=True, text=True,
                                            timeout=30).stdout.split() if line]
