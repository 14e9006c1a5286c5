"""The fault-injection run (scripts/chaos.py): a real tuning job whose trials fail in every
way hpt knows, plus faults from outside (trial scripts and Ray workers SIGKILLed, the launcher
SIGKILLed mid-job, the journal's last line torn, then a resume). Fast set: every fault once,
with trials started cold, on each controller (the local one has no Ray worker to kill).
Slow set (pytest --slow): a 120-trial soak with random faults and three launcher kills,
cold and warm."""

import json
import subprocess
import sys

import pytest

from chaos import REPO, check_trial, faults_for

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke


def run_chaos(*args: str, timeout: float) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "chaos.py"), *args],
                          capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result (exit {done.returncode}): {done.stderr[-3000:]}"
    return lines[-1]


def assert_survived_everything(result: dict) -> None:
    assert result["failures"] == []
    assert result["faults_injected"] == result["faults_survived"]
    assert result["trials_lost"] == 0 and result["trials_duplicated"] == 0
    assert result["leftover_processes"] == 0


# The warm-start run is in the slow set (pytest --slow): CI's 25 minutes; the warm
# interpreter's own fault handling is tested in test_warm.py.
@pytest.mark.parametrize("start", ["cold", pytest.param("warm", marks=pytest.mark.slow)])
def test_every_fault_once_ends_as_promised_and_nothing_is_lost(start, controller):
    # warm: the trials fork from the warm interpreter, whose processes stop and die otherwise.
    result = run_chaos("--quick", "--controller", controller,
                       *(["--warm"] if start == "warm" else []), timeout=400)
    assert result["warm_start"] is (start == "warm") and result["controller"] == controller
    assert_survived_everything(result)
    faults = set(faults_for(controller)) - {"none", "slow"}
    assert set(result["by_fault"]) == faults | {"launcher_kill", "torn_journal_line"}
    assert result["faults_injected"] == len(faults) + 2
    # The trial script, and on Tune the Ray worker under another.
    assert result["outside_kills"] == (2 if controller == "tune" else 1)


@pytest.mark.slow
@pytest.mark.parametrize("start", ["cold", "warm"])
def test_a_soak_of_random_faults_with_launcher_kills_loses_nothing(start, controller):
    result = run_chaos("--trials", "120", "--launcher-kills", "3", "--controller", controller,
                       *(["--warm"] if start == "warm" else []), timeout=1800)
    assert_survived_everything(result)
    assert result["launcher_kills"] == 3 and result["faults_injected"] >= 100


def test_the_chaos_checks_themselves_catch_a_wrong_outcome():
    row = {"TrainingJobName": "c-001", "fault": "segfault", "TrainingJobStatus": "Failed",
           "FailureReason": "AlgorithmError: killed by signal SIGSEGV", "Retries": 0}
    assert check_trial(row, set()) is None
    assert "expected Failed" in check_trial({**row, "TrainingJobStatus": "Completed"}, set())
    assert "reason" in check_trial({**row, "FailureReason": "AlgorithmError: exit code 1"}, set())
    retried = {**row, "fault": "worker_killed", "TrainingJobStatus": "Completed",
               "FailureReason": None}
    assert "Retries=0" in check_trial(retried, set())
    assert check_trial({**retried, "Retries": 1}, set()) is None
    assert check_trial(retried, {"c-001"}) is None  # re-run after a launcher kill: no retry
