"""Joining a real cluster started by `ray start --head`, token authentication on (as Ray 2.60
turns it on when a token exists): every documented address form works, and a cluster that
cannot be reached or refuses the token is one line and exit 2, at once.

The cluster gets its own HOME (its token file) and temp folder, so nothing of this machine's
own ~/.ray or /tmp/ray is read or changed; it is stopped by its session folder at the end."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import hpt
from hpt.experiment.store import read_journal
from hpt.processes.reaper_sidecar import kill_session, session_processes
from helpers import sleepy_space

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    token = secrets.token_hex(32)
    (home / ".ray" / "auth_token").write_text(token)
    temp = tempfile.mkdtemp(prefix="hr", dir="/tmp")  # short: Ray's socket paths must fit
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home))
    # The cluster on 127.0.0.1 (tests talk to loopback only): Ray's switch for it is set for
    # `ray start` alone; the launches that join it run without it, as a user's do.
    head = subprocess.Popen([str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats",
                             "--temp-dir", temp, "--block"],
                            env={**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    try:
        yield {"address": f"127.0.0.1:{port}", "env": env, "token": token, "home": home}
    finally:
        # `ray start --block` takes ~20 s to stop on SIGTERM; the test only needs it gone.
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=20)
        kill_session(temp, spare=os.getpid())  # every process of its session
        assert session_processes(temp) == []


def launch(space, exp, address, env, name, *args):
    began = time.time()
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "launch", str(space), "--name", name,
                           "--experiments-dir", str(exp), "--address", address, *args],
                          capture_output=True, text=True, timeout=180, env=env)
    return done, time.time() - began


def test_every_address_form_joins_a_token_protected_ray_start_cluster(cluster, write_space,
                                                                      tmp_path):
    space = write_space(sleepy_space("joined", max_trials=2, seconds=(0.1, 0.2)))
    exp = tmp_path / "exp"
    env = cluster["env"]
    # HOST:PORT (the README's form; Ray itself sends the token only for `auto`), `auto` by
    # RAY_ADDRESS, and the token from RAY_AUTH_TOKEN with no token file at all.
    no_file = {**env, "HOME": str(tmp_path), "RAY_AUTH_TOKEN": cluster["token"]}
    for name, address, shell in (("by-address", cluster["address"], env),
                                 ("by-auto", "auto", {**env, "RAY_ADDRESS": cluster["address"]}),
                                 ("by-token-env", cluster["address"], no_file)):
        done, _ = launch(space, exp, address, shell, name)
        assert done.returncode == 0, (name, done.stdout + done.stderr)
        assert "Traceback" not in done.stderr and "InvalidAuthToken" not in done.stderr
        assert "Token authentication is enabled" not in done.stderr
        df = hpt.load_experiment(name, exp)
        assert (df["TrainingJobStatus"] == "Completed").all() and len(df) == 2


def test_the_local_controller_runs_the_trials_here_beside_a_joined_ray(cluster, write_space,
                                                                       tmp_path):
    # A Ray kept running between launches serves the dashboard; hpt drives the trials.
    space = write_space(sleepy_space("joined-local", max_trials=3, seconds=(0.1, 0.2)))
    exp = tmp_path / "exp"
    done, _ = launch(space, exp, cluster["address"], cluster["env"], "joined-local",
                     "--controller", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on the local controller" in done.stdout
    (joined,) = [e for e in read_journal(exp / "joined-local" / "journal.jsonl")
                 if e["event"] == "ray_connected"]
    assert joined["started_here"] is False and joined["address"] == cluster["address"]
    df = hpt.load_experiment("joined-local", exp)
    assert (df["TrainingJobStatus"] == "Completed").all() and len(df) == 3


def test_a_cluster_that_refuses_or_is_not_there_is_one_line_and_exit_2(cluster, write_space,
                                                                       tmp_path):
    space = write_space(sleepy_space("refused", max_trials=1, seconds=(0.1, 0.2)))
    exp = tmp_path / "exp"
    env = cluster["env"]
    wrong = {**env, "HOME": str(tmp_path), "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    none = {**env, "HOME": str(tmp_path)}
    cases = (("wrong-token", cluster["address"], wrong, "is not the cluster's"),
             ("no-token", cluster["address"], none, "no token found"),
             ("nobody", f"127.0.0.1:{free_port()}", env, "nothing answers at"))
    for name, address, shell, why in cases:
        done, seconds = launch(space, exp, address, shell, name)
        assert done.returncode == 2, (name, done.stdout + done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and why in lines[0] and f"--address {address}" in lines[0], \
            (name, done.stderr)
        assert seconds < 15, (name, seconds)  # not Ray's 20-80 s of retries
        assert not (exp / name).exists()  # nothing created for a job that never ran
