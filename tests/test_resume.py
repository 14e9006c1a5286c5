"""Durability: kill -9 of the launcher then --resume, hpt stop, Ctrl-C, retries, warm start."""

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec
from helpers import (counts, events, launch_killing_the_actor, live_processes_of, sleepy_space,
                     start_launcher, wait_for)



def study_states(exp, name):
    study = optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(Path(exp) / name / "optuna.journal"))))
    return [t.state.name for t in study.trials], study


@pytest.mark.smoke  # two launches and a kill: ~26 s
def test_kill_9_then_resume_keeps_every_trial_once_and_reruns_the_lost_ones(
        ray_session, write_space, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    space = write_space(sleepy_space("crash"))
    exp = tmp_path / "exp"
    launcher = start_launcher(space, exp, address)
    try:
        # Mid-job: some training jobs finished, others running.
        wait_for(lambda: counts(events(exp, "crash"), "trial_ended") >= 2
                 and counts(events(exp, "crash"), "trial_started")
                 > counts(events(exp, "crash"), "trial_ended"), what="a job in mid-flight")
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
    finally:
        launcher.kill()
    before = events(exp, "crash")
    finished_before = {e["training_job_name"]: e["record"]["end_time"]
                       for e in before if e["event"] == "trial_ended"}
    lost = {e["training_job_name"] for e in before if e["event"] == "trial_started"} \
        - set(finished_before)
    assert lost
    # No trainer process outlives its launcher (Ray ends the dead driver's actors).
    names = {e["training_job_name"] for e in before if e["event"] == "trial_started"}
    wait_for(lambda: live_processes_of(names) == [], timeout=30, what="orphans to go")
    assert hpt.job_status("crash", exp)["EndReason"] == "LauncherLost"
    # What a lost job had written (none: the kill came between its start in the journal and
    # its first file, which a loaded machine makes likely).
    written = {name: sorted(p.name for p in (exp / "crash" / name).iterdir())
               if (exp / "crash" / name).is_dir() else [] for name in lost}

    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "launch", str(space), "--resume",
                           "--experiments-dir", str(exp), "--address", address],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lost ones run again" in done.stdout
    df = hpt.load_experiment("crash", exp)
    assert len(df) == 6 and df["TrainingJobName"].is_unique
    assert sorted(df["TrialNumber"]) == [1, 2, 3, 4, 5, 6]
    assert (df["TrainingJobStatus"] == "Completed").all()
    by_name = df.set_index("TrainingJobName")
    for name, end in finished_before.items():  # kept as they were, not re-run
        assert by_name.loc[name, "TrainingEndTime"].timestamp() == pytest.approx(end, abs=1e-3)
        assert by_name.loc[name, "Retries"] == 0
    for name in lost:  # re-run under the same name, earlier files kept
        assert by_name.loc[name, "Retries"] == 1
        attempt = exp / "crash" / name / "attempt-1"
        assert (sorted(p.name for p in attempt.iterdir()) if attempt.is_dir() else []) == \
            written[name]
    states, _ = study_states(exp, "crash")
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states

    # A finished job is extended with a larger --max-trials.
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "launch", str(space), "--resume",
                           "--max-trials", "8", "--experiments-dir", str(exp),
                           "--address", address], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    df = hpt.load_experiment("crash", exp)
    assert sorted(df["TrialNumber"]) == list(range(1, 9)) and df["TrainingJobName"].is_unique
    # Each resume draws new points: a random search reseeded as at its start would propose
    # the first run's points again.
    assert df["seconds"].is_unique, df[["TrialNumber", "seconds"]]


@pytest.mark.smoke  # two launchers and a kill: ~26 s
def test_a_second_launcher_into_a_live_job_is_refused_and_kill_9_frees_the_job_at_once(
        ray_session, write_space, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    space = write_space(sleepy_space("busy", max_trials=3, seconds=(6.0, 8.0)))
    exp = tmp_path / "exp"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "hpt.cli.main", *args, "--experiments-dir",
                               str(exp)], capture_output=True, text=True, timeout=180)

    first = start_launcher(space, exp, address)
    try:
        wait_for(lambda: counts(events(exp, "busy"), "trial_started") >= 1,
                 what="a running training job")
        status = cli("status", "busy")
        assert f"InProgress (launcher running, pid {first.pid})" in status.stdout, status.stdout
        for refused in (cli("launch", str(space), "--resume", "--address", address),
                        cli("launch", str(space), "--address", address),
                        cli("rerun", "busy", "1")):
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert f"pid {first.pid}" in refused.stderr and "hpt stop busy" in refused.stderr
            assert "Traceback" not in refused.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    # One writer only: the refused launchers wrote nothing, moved nothing.
    journal = events(exp, "busy")
    assert [e["pid"] for e in journal if e["event"] in ("job_started", "job_resumed")] == [
        first.pid]
    started = [e["training_job_name"] for e in journal if e["event"] == "trial_started"]
    assert len(started) == len(set(started)) and not list(exp.glob("busy/*/attempt-*"))
    assert not (exp / "busy" / "reruns").exists()
    lost_status = cli("status", "busy").stdout
    assert "LauncherLost" in lost_status
    assert "lost (running when the launcher died; --resume runs them again)" in lost_status
    assert "InProgress" not in lost_status.splitlines()[1]
    # The kernel dropped the dead launcher's lock: --resume is accepted at once.
    done = cli("launch", str(space), "--resume", "--address", address)
    assert done.returncode == 0, done.stdout + done.stderr
    journal = events(exp, "busy")
    writers = [e["pid"] for e in journal if e["event"] in ("job_started", "job_resumed")]
    assert len(writers) == 2 and writers[0] == first.pid and writers[1] != first.pid
    assert len(hpt.load_experiment("busy", exp)) == 3


def test_hpt_stop_and_ctrl_c_stop_cleanly_and_the_job_resumes(ray_session, write_space, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    space = write_space(sleepy_space("halt", max_trials=4, seconds=(3.0, 4.0)))
    exp = tmp_path / "exp"
    for how in ("stop", "ctrl-c"):
        launcher = start_launcher(space, exp, address, *(["--resume"] if how == "ctrl-c" else []))
        try:
            wait_for(lambda: counts(events(exp, "halt"), "trial_started")
                     > counts(events(exp, "halt"), "trial_ended")
                     and events(exp, "halt")[-1]["event"] != "job_ended",
                     what="a running training job")
            time.sleep(0.5)
            if how == "stop":
                stop = subprocess.run([sys.executable, "-m", "hpt.cli.main", "stop", "halt",
                                       "--experiments-dir", str(exp)],
                                      capture_output=True, text=True, timeout=120)
                assert stop.returncode == 0, stop.stdout + stop.stderr
            else:
                launcher.send_signal(signal.SIGINT)
            out, _ = launcher.communicate(timeout=60)
        finally:
            launcher.kill()
        if how == "ctrl-c":
            assert launcher.returncode == 130, out
        assert "--resume` continues it" in out
        status = hpt.job_status("halt", exp)
        assert status["Status"] == "Stopped"
        assert status["EndReason"] == ("Stopped" if how == "stop" else "Interrupted")
        df = hpt.load_experiment("halt", exp)
        stopped = df[df["TrainingJobStatus"] == "Stopped"]
        assert len(stopped) >= 1 and stopped["FailureReason"].str.startswith(
            "Stopped: the tuning job ended").all()
        assert live_processes_of(df["TrainingJobName"]) == []
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "launch", str(space), "--resume",
                           "--experiments-dir", str(exp), "--address", address],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    df = hpt.load_experiment("halt", exp)
    assert len(df) == 4 and (df["TrainingJobStatus"] == "Completed").all()


@pytest.mark.parametrize("which", ["local", pytest.param("tune", marks=pytest.mark.smoke)])
def test_hpt_stop_of_one_training_job_stops_it_alone_and_a_retry_does_not_undo_it(
        ray_session, write_space, tmp_path, monkeypatch, which):
    """SageMaker's StopTrainingJob of a tuning job's training job: `hpt stop NAME
    --training-job JOB` (what hpt api's StopTrainingJob writes too). That job ends Stopped
    with the reason, the others run on, the tuning job completes."""
    monkeypatch.setenv("HPT_CONTROLLER", which)
    address = ray_session.get_runtime_context().gcs_address
    space = write_space(sleepy_space("one", max_trials=3, seconds=(3.0, 4.0)))
    exp = tmp_path / "exp"
    launcher = start_launcher(space, exp, address)
    try:
        wait_for(lambda: counts(events(exp, "one"), "trial_started") >= 1, what="a training job")
        victim = next(e["training_job_name"] for e in events(exp, "one")
                      if e["event"] == "trial_started")
        stop = subprocess.run([sys.executable, "-m", "hpt.cli.main", "stop", "one",
                               "--training-job", victim, "--experiments-dir", str(exp)],
                              capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert f"{victim}: Stopped" in stop.stdout and "the rest of one goes on" in stop.stdout
        out, _ = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, out
    df = hpt.load_experiment("one", exp).set_index("TrainingJobName")
    assert df.loc[victim, "TrainingJobStatus"] == "Stopped"
    assert df.loc[victim, "FailureReason"].startswith("StopRequested: hpt stop --training-job")
    assert df.loc[victim, "TrainingElapsedTimeSeconds"] < 3.0  # stopped, not run out
    others = df.drop(index=victim)
    assert len(others) == 2 and (others["TrainingJobStatus"] == "Completed").all()
    assert hpt.job_status("one", exp)["Status"] == "Completed"
    again = subprocess.run([sys.executable, "-m", "hpt.cli.main", "stop", "one",
                            "--training-job", victim, "--experiments-dir", str(exp)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "not running (Stopped)" in again.stderr
    assert live_processes_of(df.index) == []


def test_a_stop_asked_for_a_training_job_outlives_the_archiving_of_its_attempt(tmp_path):
    from hpt.experiment.store import STOP_FILE, attempt_dir, request_training_job_stop

    job = attempt_dir(tmp_path, "j-001-abcd1234")
    (job / "algo-1.log").write_text("first attempt\n")
    request_training_job_stop(tmp_path, "j-001-abcd1234", "StopTrainingJob")
    again = attempt_dir(tmp_path, "j-001-abcd1234")  # a retry after a lost host
    assert (again / "attempt-1" / "algo-1.log").is_file()
    assert (again / STOP_FILE).read_text().startswith("StopTrainingJob at ")


def test_a_lost_actor_is_retried_and_the_retry_recorded(ray_session, write_space, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv("HPT_CONTROLLER", "tune")  # the trial's Ray actor is what gets lost
    spec = load_spec(write_space(sleepy_space("retry", max_trials=1, action="lose_actor_once")))
    exp = tmp_path / "exp"

    def script_pid():
        wait_for(lambda: any(exp.glob("retry/*/algo-1/output/pid")), what="the first attempt")
        return int(next(exp.glob("retry/*/algo-1/output/pid")).read_text())

    launch_killing_the_actor(spec, exp, script_pid)
    _assert_retried_once(exp, "retry")


def test_hpts_own_failure_driving_a_local_job_is_retried_and_recorded(
        ray_session, write_space, tmp_path, monkeypatch):
    """The local controller's lost job: hpt's own code driving it fails (here: the first
    attempt's advance raises, as an exhausted file-descriptor table would)."""
    from hpt.runtime.local_job import LocalTrainingJob

    monkeypatch.setenv("HPT_CONTROLLER", "local")
    spec = load_spec(write_space(sleepy_space("retry", max_trials=1, action="lose_actor_once")))
    exp = tmp_path / "exp"
    advance = LocalTrainingJob.advance

    def failing_once(self, *args, **kwargs):
        if not (self.trial_dir / "attempt-1").exists() and \
                (self.base_dir / "output" / "pid").exists():
            raise OSError(24, "Too many open files")
        return advance(self, *args, **kwargs)

    monkeypatch.setattr(LocalTrainingJob, "advance", failing_once)
    launch(spec, exp, dashboard=False)
    _assert_retried_once(exp, "retry")
    (retried,) = [e for e in events(exp, "retry") if e["event"] == "trial_retried"]
    assert "Too many open files" in retried["error"]


def _assert_retried_once(exp, name):
    (row,) = [r for _, r in hpt.load_experiment(name, exp).iterrows()]
    assert row["TrainingJobStatus"] == "Completed", row["FailureReason"]
    assert row["Retries"] == 1
    assert counts(events(exp, name), "trial_retried") == 1
    assert (Path(row["LogPath"]).parent / "attempt-1" / "algo-1").is_dir()


def test_the_scripts_own_failure_is_never_retried(ray_session, write_space, tmp_path):
    spec = load_spec(write_space(sleepy_space("noretry", max_trials=1, action="crash")))
    launch(spec, tmp_path / "exp", dashboard=False)
    (row,) = [r for _, r in hpt.load_experiment("noretry", tmp_path / "exp").iterrows()]
    assert row["TrainingJobStatus"] == "Failed" and row["Retries"] == 0


def test_warm_start_seeds_the_study_with_the_parents_completed_jobs(
        ray_session, write_space, tmp_path):
    exp = tmp_path / "exp"
    launch(load_spec(write_space(sleepy_space("parent", max_trials=3, seconds=(0.1, 0.2)),
                                 "parent.yaml")), exp, dashboard=False)
    child = sleepy_space("child", max_trials=2, seconds=(0.1, 0.2),
                         warm_start={"parents": ["parent"], "type": "identical_data_and_algorithm"})
    launch(load_spec(write_space(child, "child.yaml")), exp, dashboard=False)
    df = hpt.load_experiment("child", exp)
    assert sorted(df["TrialNumber"]) == [1, 2]  # parents are not re-run
    parent_names = set(hpt.load_experiment("parent", exp)["TrainingJobName"])
    states, study = study_states(exp, "child")
    seeded = [t for t in study.trials if "hpt_warm_start_parent" in t.user_attrs]
    assert len(seeded) == 3 and all(t.state.name == "COMPLETE" for t in seeded)
    assert {t.user_attrs["hpt_warm_start_parent"].split("/")[1] for t in seeded} == parent_names
    # transfer_learning keeps only the hyperparameters both spaces share.
    other = sleepy_space("cousin", max_trials=1, seconds=(0.1, 0.2),
                         warm_start={"parents": ["parent"], "type": "transfer_learning"})
    other["hyperparameters"]["extra"] = {"type": "integer", "min": 1, "max": 3}
    launch(load_spec(write_space(other, "cousin.yaml")), exp, dashboard=False)
    _, study = study_states(exp, "cousin")
    seeded = [t for t in study.trials if "hpt_warm_start_parent" in t.user_attrs]
    assert len(seeded) == 3 and all(set(t.params) == {"seconds", "action"} for t in seeded)


def test_a_stopped_job_says_the_command_that_continues_it_and_keeps_its_maximum(write_space,
                                                                               tmp_path):
    """`hpt launch space.yaml --max-trials 3 --name ctrlc2`, Ctrl-C: the hint printed named
    the space only (it would continue another job), and a plain --resume ran to the space's
    max_trials (6) instead of the job's (3)."""
    from user_env import hpt_command, user_env

    space = write_space(sleepy_space("halting", max_trials=6, seconds=(2.0, 3.0)))
    exp = tmp_path / "exp"
    env = user_env(tmp_path / "home")
    launch = [*hpt_command(), "launch", str(space), "--experiments-dir", str(exp),
              "--no-dashboard"]
    launcher = subprocess.Popen(launch + ["--max-trials", "3", "--name", "ctrlc2"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: counts(events(exp, "ctrlc2"), "trial_started") >= 2, what="trials")
        launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 130, out + err
    hint = re.search(r"`(hpt launch .*)` continues it", out).group(1)
    assert shlex.split(hint)[2:] == [str(space), "--experiments-dir", str(exp),
                                     "--no-dashboard", "--name", "ctrlc2", "--resume"], hint
    status = subprocess.run([*hpt_command(), "status", "ctrlc2", "--experiments-dir", str(exp)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert f"continue it: {hint}" in status.stdout, status.stdout

    resumed = subprocess.run([*hpt_command(), *shlex.split(hint)[1:]], env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    df = hpt.load_experiment("ctrlc2", exp)
    assert len(df) == 3 and (df["TrainingJobStatus"] == "Completed").all()
    assert hpt.job_status("ctrlc2", exp)["MaxTrials"] == 3
