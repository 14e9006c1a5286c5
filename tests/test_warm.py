"""The warm interpreter (trainer.warm_start): a forked trial looks to its script like a cold
`python script.py ARGS`, and the whole tuning job behaves the same with it."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.runtime.warm import WarmInterpreter, WarmProcess, can_run_warm, modules_to_preload
from hpt.spacefile import load_spec
from helpers import faulty_space

PROBE = '''
import json, os, sys
import numpy
info = {
    "argv": sys.argv, "cwd": os.getcwd(), "name": __name__, "file": __file__,
    "path0": sys.path[0], "env": {k: v for k, v in os.environ.items() if k.startswith("T_")},
    "own_group": os.getpgid(0) == os.getpid(), "own_session": os.getsid(0) == os.getpid(),
    "stdin": sys.stdin.read(), "stdout_encoding": sys.stdout.encoding,
}
print(json.dumps(info), flush=True)
mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "raise":
    raise ValueError("deliberate")
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "message":
    sys.exit("a message")
if mode == "sleep":
    import time; time.sleep(60)
'''

ARGS_WITH_METACHARACTERS = ["--lr", "0.1; rm -rf ~", "--name", "$(id) `id` 'q\" \n--x"]


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    interpreter = WarmInterpreter(["numpy"], folder / "warm.log")
    socket_path = interpreter.wait_ready(timeout=60)
    assert socket_path, interpreter.reason
    yield socket_path
    interpreter.close()
    assert not os.path.exists(socket_path)


@pytest.fixture
def probe(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "probe.py").write_text(PROBE)
    return code


def run_cold(code: Path, args: list[str], env: dict[str, str]):
    proc = subprocess.run([sys.executable, "probe.py", *args], cwd=code, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def run_warm(socket_path: str, code: Path, args: list[str], env: dict[str, str]):
    proc = WarmProcess(socket_path, [sys.executable, "probe.py", *args], env, str(code))
    code_ = proc.wait(timeout=30)
    return code_, proc.stdout.read().decode(), proc.stderr.read().decode()


def test_a_warm_trial_sees_what_a_cold_start_sees(warm, probe):
    env = {**os.environ, "T_VALUE": "$(id); `id` \"quoted\"", "PYTHONUNBUFFERED": "1"}
    cold = run_cold(probe, ARGS_WITH_METACHARACTERS, env)
    hot = run_warm(warm, probe, ARGS_WITH_METACHARACTERS, env)
    assert cold[0] == hot[0] == 0
    cold_info, hot_info = json.loads(cold[1]), json.loads(hot[1])
    assert hot_info == cold_info
    assert hot_info["argv"] == ["probe.py", *ARGS_WITH_METACHARACTERS]  # byte for byte
    assert hot_info["own_group"] and hot_info["own_session"]


@pytest.mark.parametrize("args, expected_code", [
    (["raise"], 1), (["exit", "3"], 3), (["message"], 1), ([], 0)])
def test_exit_codes_and_tracebacks_match_a_cold_start(warm, probe, args, expected_code):
    cold = run_cold(probe, args, dict(os.environ))
    hot = run_warm(warm, probe, args, dict(os.environ))
    assert cold[0] == hot[0] == expected_code
    assert hot[2] == cold[2]  # the same traceback (script frames only) or message


def test_stopping_reaches_the_forked_process_group_and_a_lost_client_kills_it(warm, probe):
    proc = WarmProcess(warm, [sys.executable, "probe.py", "sleep"], dict(os.environ), str(probe))
    proc.stdout.readline()
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM

    orphan = WarmProcess(warm, [sys.executable, "probe.py", "sleep"], dict(os.environ),
                         str(probe))
    orphan.stdout.readline()
    orphan._sock.close()  # the launcher side dies
    deadline = time.time() + 10
    while time.time() < deadline and _alive(orphan.pid):
        time.sleep(0.05)
    assert not _alive(orphan.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split(")")[-1].split()[0] != "Z"


def test_preload_list_skips_the_trainers_own_modules(tmp_path):
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "pkg").mkdir()
    script = tmp_path / "train.py"
    script.write_text("from __future__ import annotations\nimport os, numpy as np\n"
                      "import torch.nn\nfrom json import dumps\nimport helpers\n"
                      "from pkg import thing\ntry:\n    import yaml\nexcept ImportError:\n"
                      "    pass\ndef f():\n    import pandas\n")
    assert modules_to_preload(script, tmp_path) == ["os", "numpy", "torch.nn", "json", "yaml"]
    assert can_run_warm([sys.executable, "train.py", "--x"], sys.executable)
    assert not can_run_warm(["./train.sh"], sys.executable)
    assert not can_run_warm(["/other/python", "train.py"], sys.executable)


def test_a_tuning_job_with_warm_start_forks_its_trials_and_keeps_every_status(
        ray_session, write_space, tmp_path):
    space = faulty_space(name="warm")
    space["trainer"]["warm_start"] = True
    result = launch(load_spec(write_space(space)), tmp_path / "experiments", dashboard=False)
    df = hpt.load_experiment("warm", tmp_path / "experiments")
    by_mode = {row["mode"]: row for _, row in df.iterrows()}
    assert by_mode["ok"]["TrainingJobStatus"] == "Completed"
    assert by_mode["ok"]["FinalObjectiveValue"] == pytest.approx(0.9)
    assert by_mode["fail"]["FailureReason"] == "ValueError: deliberate failure for mode=fail"
    assert by_mode["hang"]["FailureReason"].startswith("MaxRuntimeExceeded")
    assert "training without ever printing the objective" in by_mode["silent"]["FailureReason"]
    with tarfile.open(by_mode["ok"]["ModelArtifact"]) as tar:
        seen = json.load(tar.extractfile("seen.json"))
    assert seen["warm"] is True
    assert seen["argv"] == ["--epochs", "3", "--mode", "ok", "-x", "0.9"]
    assert seen["cwd"].endswith("/algo-1/code")
    assert result.exit_code == 0
    assert (result.experiment_dir / "warm.log").is_file()
