"""A tuning job's journal never claims an ending that did not happen. A launcher that cannot go
on — its output closed, a Ray address nobody answers at, a Ray cluster lost mid-job, a
controller that stops short — writes no `job_ended`: the job stays resumable, its lost
training jobs lost, and a later resume (or `hpt api` itself) finishes every training job
exactly once. Each launch runs as a user's shell runs it (tests/user_env.py)."""

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import hpt
from api_helpers import ApiServer, boto_clients, tuning_request, upload_inputs
from helpers import (counts, events, free_port, live_processes_of, processes_in, sleepy_space,
                     wait_for)
from hpt.core.errors import LAUNCHER_LOST_EXIT
from user_env import hpt_command, user_env

RAY = Path(sys.executable).with_name("ray")


def ended_once(exp: Path, name: str, trials: int) -> None:
    """The job ended for real (its limit), every training job Completed, each exactly once."""
    evs = events(exp, name)
    ends = [e for e in evs if e["event"] == "job_ended"]
    assert [e["reason"] for e in ends][-1:] == ["MaxNumberOfTrainingJobsReached"], ends
    completed = [e["training_job_name"] for e in evs if e["event"] == "trial_ended"
                 and e["record"]["status"] == "Completed"]
    assert len(completed) == len(set(completed)) == trials, completed
    df = hpt.load_experiment(name, exp)
    assert len(df) == trials and (df["TrainingJobStatus"] == "Completed").all()


def no_ending_since_the_last_start(exp: Path, name: str) -> list[dict]:
    evs = events(exp, name)
    last = max(i for i, e in enumerate(evs) if e["event"] in ("job_started", "job_resumed"))
    assert not [e for e in evs[last:] if e["event"] == "job_ended"], evs[last:]
    return evs[last:]


def test_a_reader_that_goes_away_never_stops_the_job(write_space, tmp_path):
    # `hpt launch space.yaml | head -3`: the launcher wrote its ending with 2 of 10 done.
    space = write_space(sleepy_space("piped", max_trials=6, seconds=(0.3, 0.6)))
    exp = tmp_path / "exp"
    launch = shlex.join([*hpt_command(), "launch", str(space), "--experiments-dir", str(exp),
                         "--no-dashboard"])
    done = subprocess.run(["bash", "-c", f"{launch} | head -3; exit ${{PIPESTATUS[0]}}"],
                          env=user_env(tmp_path / "home"), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert "closed by its reader" in done.stderr and "Traceback" not in done.stderr
    ended_once(exp, "piped", 6)
    assert not [e for e in events(exp, "piped") if e["event"] == "launcher_failed"]


def test_a_resume_into_an_address_nobody_answers_writes_nothing(write_space, tmp_path):
    # After a kill -9, `--resume --address 127.0.0.1:1` exited 2 but first wrote job_resumed,
    # ended the lost training jobs Stopped and wrote job_ended: Completed with 2 of 6 done.
    space = write_space(sleepy_space("refused", max_trials=6, seconds=(1.0, 1.5)))
    exp = tmp_path / "exp"
    env = user_env(tmp_path / "home")
    hpt_cli = [*hpt_command(), "launch", str(space), "--experiments-dir", str(exp),
               "--no-dashboard"]
    launcher = subprocess.Popen(hpt_cli, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: counts(events(exp, "refused"), "trial_ended") >= 1, timeout=120,
                 what="a finished training job")
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
    finally:
        launcher.kill()
    journal = exp / "refused" / "journal.jsonl"
    before = journal.read_bytes()
    address = f"127.0.0.1:{free_port()}"
    refused = subprocess.run(hpt_cli + ["--resume", "--address", address], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert f"nothing answers at {address}" in line  # the address as given, not rewritten
    assert journal.read_bytes() == before  # checked before anything was written
    status = subprocess.run([*hpt_command(), "status", "refused", "--experiments-dir", str(exp)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert "Stopped (LauncherLost" in status.stdout, status.stdout

    resumed = subprocess.run(hpt_cli + ["--resume"], env=env, capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    ended_once(exp, "refused", 6)


def test_a_controller_that_returns_short_of_the_limit_ends_nothing(write_space, tmp_path,
                                                                   monkeypatch):
    # Whatever makes a controller return early, only the limit, a criterion or a stop ends
    # a job: here the local controller runs one trial and returns.
    from hpt.controller.local_controller import LocalController
    from hpt.core.errors import CannotGoOn
    from hpt.launcher.launch import launch
    from hpt.spacefile import load_spec

    run = LocalController.run

    def one_trial_only(self):
        self.trials = 1
        run(self)
    monkeypatch.setattr(LocalController, "run", one_trial_only)
    space = write_space(sleepy_space("short", max_trials=3, seconds=(0.1, 0.2)))
    exp = tmp_path / "exp"
    with pytest.raises(CannotGoOn) as raised:
        launch(load_spec(space), exp, dashboard=False)
    assert "returned with 1 of 3 training jobs ended" in str(raised.value)
    assert "--resume" in str(raised.value)
    tail = no_ending_since_the_last_start(exp, "short")
    assert [e["event"] for e in tail][-1] == "launcher_failed"
    assert hpt.job_status("short", exp)["Description"].startswith(
        "Stopped (LauncherLost: its launcher could not go on: the local controller returned")

    monkeypatch.setattr(LocalController, "run", run)
    launch(load_spec(space), exp, dashboard=False, resume=True)
    ended_once(exp, "short", 3)


# -- a Ray cluster lost mid-job -------------------------------------------------------------

class LoopbackCluster:
    """`ray start --head` on 127.0.0.1 (tests talk to loopback only: Ray's switch for it is
    set for this command, as a user who keeps a cluster on loopback sets it), with its own
    HOME and session folder; `lose()` kills every process of it, as a head node that dies."""

    def __init__(self, home: Path):
        self.home = home
        self.temp = tempfile.mkdtemp(prefix="hl", dir="/tmp")  # short: Ray's socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        env = {**user_env(home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self.head = subprocess.Popen(
            [str(RAY), "start", "--head", "--port", str(self.port), "--num-cpus", "2",
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", self.temp,
             "--block"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_for(self._answers, timeout=60, what="ray start --head")

    def _answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def lose(self, driver: int | None = None) -> None:
        """Every process of the cluster, but the driver that joined it (a launcher holds
        files of the session open too): what a head node that dies takes with it."""
        from hpt.processes.reaper_sidecar import session_processes

        try:
            os.killpg(self.head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.head.wait(timeout=20)
        deadline = time.time() + 30
        while time.time() < deadline:
            left = [pid for pid in session_processes(self.temp) if pid != driver]
            if not left:
                return
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"the cluster's processes outlived it: {left}")


@pytest.mark.smoke
def test_a_ray_cluster_lost_mid_job_leaves_the_job_resumable(write_space, tmp_path):
    space = write_space(sleepy_space("lost", max_trials=6, seconds=(2.0, 3.0)))
    exp = tmp_path / "exp"
    env = user_env(tmp_path / "home")
    first = LoopbackCluster(tmp_path / "home")
    argv = [*hpt_command(), "launch", str(space), "--experiments-dir", str(exp)]
    try:
        launcher = subprocess.Popen(argv + ["--address", first.address], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: counts(events(exp, "lost"), "trial_ended") >= 1, timeout=120,
                     what="a finished training job")
            assert counts(events(exp, "lost"), "ray_connected") == 1
            first.lose(driver=launcher.pid)
            lost_at = time.time()
            out, err = launcher.communicate(timeout=60)
        finally:
            launcher.kill()
    finally:
        first.lose()
    # One line of its own, soon: not Ray's "Failed to connect to GCS within 60 seconds".
    assert launcher.returncode == LAUNCHER_LOST_EXIT, out + err
    assert time.time() - lost_at < 40
    line = err.strip().splitlines()[-1]
    assert "cannot go on" in line and f"the Ray at {first.address} was lost" in line, err
    assert f"--address {first.address} --resume" in line, line
    assert "GCS" not in err, err
    tail = no_ending_since_the_last_start(exp, "lost")
    assert tail[-1]["event"] == "launcher_failed"
    names = {e["training_job_name"] for e in events(exp, "lost") if e["event"] == "trial_started"}
    wait_for(lambda: live_processes_of(names) == [], timeout=30, what="the trials to go")
    status = hpt.job_status("lost", exp)
    assert status["Description"].startswith("Stopped (LauncherLost: its launcher could not go "
                                            "on: the Ray at"), status
    assert status["Counts"].get("Completed", 0) < 6

    second = LoopbackCluster(tmp_path / "home")  # the cluster is back (on a new port)
    try:
        done = subprocess.run(argv + ["--resume", "--address", second.address], env=env,
                              capture_output=True, text=True, timeout=180)
    finally:
        second.lose()
    assert done.returncode == 0, done.stdout + done.stderr
    ended_once(exp, "lost", 6)


@pytest.mark.smoke
def test_the_local_controller_goes_on_when_the_ray_it_shows_on_is_lost(write_space, tmp_path):
    # --controller local --address: the joined Ray only serves the dashboard.
    # The training jobs wait for a gate the test opens once the loss is journaled: the job
    # cannot end before the watch notices (a race under CI's load, with free-running jobs).
    gate = tmp_path / "gate"
    space = write_space(sleepy_space("view-lost", max_trials=8, seconds=(1.0, 2.0),
                                     static_hyperparameters={"gate": str(gate)}))
    exp = tmp_path / "exp"
    cluster = LoopbackCluster(tmp_path / "home")
    try:
        launcher = subprocess.Popen(
            [*hpt_command(), "launch", str(space), "--experiments-dir", str(exp), "--address",
             cluster.address, "--controller", "local"], env=user_env(tmp_path / "home"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: counts(events(exp, "view-lost"), "trial_started") >= 1 and
                     counts(events(exp, "view-lost"), "ray_connected") == 1,
                     timeout=120, what="a training job started, Ray joined")
            cluster.lose(driver=launcher.pid)
            wait_for(lambda: counts(events(exp, "view-lost"), "ray_lost") == 1, timeout=60,
                     what="the loss of Ray journaled")
            gate.touch()
            out, err = launcher.communicate(timeout=180)
        finally:
            launcher.kill()
    finally:
        cluster.lose()
    assert launcher.returncode == 0, out + err
    assert "goes on without the Ray dashboard" in out
    assert [e["event"] for e in events(exp, "view-lost")].count("ray_lost") == 1
    ended_once(exp, "view-lost", 8)


@pytest.mark.smoke
def test_hpt_api_resumes_its_jobs_on_a_new_ray_when_its_own_dies(moto_server, digits_channels,
                                                                  tmp_path):
    # The server's gcs_server killed mid-job: its launcher could not reach Ray again, and the
    # tuning job ended Completed with 1 of 6 training jobs; tuner.fit() returned as if all
    # was well.
    import re

    from hpt.processes.reaper_sidecar import session_processes

    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    folders = [server.ray_folder]
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        uris = upload_inputs(s3, digits_channels)
        name = "rayless"
        sm.create_hyper_parameter_tuning_job(**tuning_request(name, uris, max_jobs=4,
                                                              epochs=2))

        def describe():
            answer = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
            done = answer["TrainingJobStatusCounters"]["Completed"]
            if answer["HyperParameterTuningJobStatus"] == "Completed":
                assert done == 4, answer  # never Completed short of its limit
            return answer

        wait_for(lambda: describe()["TrainingJobStatusCounters"]["Completed"] >= 1,
                 timeout=180, what="a completed training job")
        (gcs,) = [pid for pid in session_processes(folders[0])
                  if b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(gcs, signal.SIGKILL)
        described = describe()
        deadline = time.time() + 300
        while described["HyperParameterTuningJobStatus"] == "InProgress":
            assert time.time() < deadline, (described, server.output()[-3000:])
            time.sleep(1)
            described = describe()
        assert described["HyperParameterTuningJobStatus"] == "Completed", (
            described, server.output()[-3000:])
        assert "its Ray at" in server.output() and "was lost" in server.output()
        folders += re.findall(r"a new Ray 127\.0\.0\.1:\d+ in (\S+);", server.output())
        assert len(folders) == 2, server.output()[-3000:]
        evs = events(experiments, name)
        # One ending, the real one; the run the lost Ray ended wrote none.
        assert counts(evs, "job_ended") == 1 and counts(evs, "job_resumed") >= 1
        ended_once(experiments, name, 4)
    finally:
        server.stop(signal.SIGTERM)
    time.sleep(0.5)
    assert processes_in(experiments) == []
    assert all(processes_in(folder) == [] for folder in folders)
