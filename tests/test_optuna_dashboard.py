"""optuna-dashboard opens a running job's study (hpt's optuna.journal is Optuna's journal
format): its HTTP API lists the trials with their states and values while the job runs, and
reading it all along neither disturbs the job nor corrupts the journal. Real: the
optuna-dashboard server, a launched `hpt launch`, Optuna's own journal reader."""

import json
import signal
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

import hpt
from hpt.runtime.host import free_ports
from helpers import wait_for

CURVES = Path(__file__).parent / "trainers" / "curves"
PROFILES = [f"0.{i}:0.4" for i in range(1, 9)]  # 8 jobs, each a different final value

pytestmark = pytest.mark.smoke


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def _trials(port: int, name: str) -> list[dict] | None:
    """The study's trials as the dashboard serves them; None until it lists the study."""
    try:
        studies = _get(port, "/api/studies")["study_summaries"]
        study = next((s for s in studies if s["study_name"] == name), None)
        return None if study is None else _get(port, f"/api/studies/{study['study_id']}")["trials"]
    except (urllib.error.URLError, ConnectionError):  # the server is still starting
        return None


def _value(trial: dict) -> float | None:
    return trial["values"][0] if trial.get("values") else None


def test_optuna_dashboard_lists_a_running_jobs_trials_and_never_corrupts_its_journal(
        write_space, tmp_path):
    space = {
        "name": "dash",
        "trainer": {"source_dir": str(CURVES), "entry_point": "train.py", "cpus_per_host": 1,
                    "max_runtime_seconds": 60},
        "static_hyperparameters": {"epochs": 3},
        "hyperparameters": {"profile": {"type": "categorical", "values": PROFILES}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "grid",
        "limits": {"max_parallel": 2},
    }
    exp = tmp_path / "exp"
    journal = exp / "dash" / "optuna.journal"
    launcher = subprocess.Popen([sys.executable, "-m", "hpt.cli.main", "launch",
                                 str(write_space(space)), "--experiments-dir", str(exp),
                                 "--no-dashboard"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    (port,) = free_ports(1, "127.0.0.1")
    dashboard = None
    snapshots = []  # what the dashboard showed while the job ran
    try:
        wait_for(journal.exists, timeout=90, what="the job's optuna.journal")
        dashboard = subprocess.Popen(
            [str(Path(sys.executable).parent / "optuna-dashboard"), str(journal), "--host",
             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        while launcher.poll() is None:  # read it all along, as a user's open browser does
            trials = _trials(port, "dash")
            if trials:
                snapshots.append(trials)
            time.sleep(0.2)
        assert launcher.returncode == 0, launcher.stderr.read()[-3000:]
        # The dashboard re-reads the journal every 2 s (its cache of a small study).
        wait_for(lambda: [t["state"] for t in _trials(port, "dash") or []] == ["Complete"] * 8,
                 timeout=30, what="the dashboard listing all 8 trials complete")
        final = _trials(port, "dash")
    finally:
        for process in (launcher, dashboard):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    df = hpt.load_experiment("dash", exp)
    assert len(df) == 8 and (df["TrainingJobStatus"] == "Completed").all()
    table = dict(zip(df["profile"], df["FinalObjectiveValue"]))
    # While the job ran, the dashboard listed running trials beside completed ones, each
    # completed one with the value the table has for its hyperparameters.
    live = [s for s in snapshots if any(t["state"] == "Running" for t in s) and
            any(t["state"] == "Complete" for t in s)]
    assert live, f"no snapshot showed running and completed trials ({len(snapshots)} taken)"
    for trials in [*live, final]:
        for trial in trials:
            (profile,) = [p["param_external_value"] for p in trial["params"]]
            if trial["state"] == "Complete":
                assert _value(trial) == pytest.approx(table[profile])
    assert sorted(t["state"] for t in final) == ["Complete"] * 8
    # The journal is intact: Optuna's own reader loads every trial, complete with its value.
    study = optuna.load_study(study_name="dash", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    assert sorted((t.params["profile"], t.value) for t in study.trials) == \
        sorted(table.items())
