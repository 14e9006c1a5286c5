"""Resource safety: after a tuning job ends -- normally or on an error -- none of the
processes, placement groups and temp folders hpt created is left (listed before and after).
Ctrl-C and `hpt stop` are covered in test_resume.py with the same process sweep."""

import glob
import json
from pathlib import Path

import pytest
import ray

from hpt.launcher.launch import launch
from hpt.spacefile import load_spec
from helpers import live_processes_of
from helpers import faulty_space


def _warm_interpreters() -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"hpt.runtime.warm" in cmdline and state != "Z":
                found.add(int(proc.name))
    return found


def _snapshot():
    groups = {pg_id for pg_id, pg in ray.util.placement_group_table().items()
              if pg["state"] != "REMOVED"}
    return set(glob.glob("/tmp/hpt-warm-*")), _warm_interpreters(), groups


def _space(name):
    space = faulty_space(name=name, hyperparameters={
        "mode": {"type": "categorical", "values": ["ok", "fail"]}})
    space["trainer"]["warm_start"] = True
    return space


def _assert_nothing_left(before, experiment: Path):
    dirs, warm, groups = _snapshot()
    assert dirs <= before[0], dirs - before[0]  # the warm interpreter's socket folder
    assert warm <= before[1], warm - before[1]  # the warm interpreter itself
    assert groups <= before[2], groups - before[2]  # every trial's placement group
    names = [json.loads(line).get("training_job_name") for line in
             (experiment / "journal.jsonl").open()]
    assert live_processes_of([n for n in names if n]) == []  # every trial's processes


def test_a_finished_job_leaves_nothing_behind(ray_session, write_space, tmp_path):
    before = _snapshot()
    result = launch(load_spec(write_space(_space("tidy"))), tmp_path / "exp", dashboard=False)
    assert result.counts == {"Completed": 1, "Failed": 1}
    _assert_nothing_left(before, result.experiment_dir)


def test_a_job_that_errors_leaves_nothing_behind_and_says_it_ended(
        ray_session, write_space, tmp_path, monkeypatch, controller):
    from ray import tune

    from hpt.controller.local_controller import LocalController

    def broken_fit(self):
        raise RuntimeError(f"injected: the {controller} controller failed")
    monkeypatch.setattr(tune.Tuner, "fit", broken_fit)
    monkeypatch.setattr(LocalController, "run", broken_fit)
    from hpt.core.errors import CannotGoOn

    before = _snapshot()
    with pytest.raises(CannotGoOn, match="injected") as raised:
        launch(load_spec(write_space(_space("broken"))), tmp_path / "exp", dashboard=False)
    assert isinstance(raised.value.__cause__, RuntimeError) and "--resume" in str(raised.value)
    experiment = tmp_path / "exp" / "broken"
    _assert_nothing_left(before, experiment)
    events = [json.loads(line)["event"] for line in (experiment / "journal.jsonl").open()]
    # No ending that did not happen: the run says why it stopped, and the job is resumable.
    assert events[-1] == "launcher_failed" and "job_ended" not in events


def test_a_trainer_killed_from_outside_fails_with_the_signal_and_the_job_goes_on(
        ray_session, write_space, tmp_path):
    """What the kernel's OOM killer does: SIGKILL to the script, from outside hpt."""
    import os
    import signal
    import threading
    import time

    space = faulty_space(name="oom", hyperparameters={
        "mode": {"type": "categorical", "values": ["hang", "ok"]}})
    space["trainer"]["max_runtime_seconds"] = 60
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=launch(
        load_spec(write_space(space)), tmp_path / "exp", dashboard=False)))
    thread.start()
    journal = tmp_path / "exp" / "oom" / "journal.jsonl"
    deadline = time.time() + 60
    victim = None
    while victim is None and time.time() < deadline:
        time.sleep(0.2)
        if not journal.exists():
            continue
        started = [json.loads(line) for line in journal.open()
                   if '"trial_started"' in line and '"hang"' in line]
        pids = live_processes_of([e["training_job_name"] for e in started])
        # The script itself: the process whose command line is the entry point.
        for pid in pids:
            if b"train.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                victim = pid
    assert victim, "the hanging trial never started"
    time.sleep(0.5)  # it is past its first line ("hanging")
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=120)
    result = outcome["result"]
    df = __import__("hpt").load_experiment(result.experiment_dir)
    rows = {r["mode"]: r for _, r in df.iterrows()}
    assert rows["ok"]["TrainingJobStatus"] == "Completed"
    assert rows["hang"]["TrainingJobStatus"] == "Failed"
    assert "killed by signal SIGKILL" in rows["hang"]["FailureReason"]
    assert rows["hang"]["Retries"] == 0  # the script's death is not hpt's: no retry
