"""kill -9 of `hpt launch` with a Ray of its own: no process of that Ray session outlives it
(Ray's dashboard and runtime-env agents did, for at least ten minutes, without the reaper)."""

import signal
import subprocess
import sys
import time

import pytest

from hpt.processes.reaper_sidecar import session_processes
from helpers import counts, events, live_processes_of, sleepy_space, wait_for

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke


@pytest.mark.parametrize("dashboard", [True, False], ids=["dashboard", "no-dashboard"])
def test_kill_9_of_the_launcher_leaves_no_process_of_its_ray(dashboard, write_space, tmp_path):
    space = write_space(sleepy_space("k9", max_trials=2, seconds=(30.0, 40.0)))
    exp = tmp_path / "exp"
    argv = [sys.executable, "-m", "hpt.cli.main", "launch", str(space), "--experiments-dir", str(exp)]
    launcher = subprocess.Popen(argv + ([] if dashboard else ["--no-dashboard"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: counts(events(exp, "k9"), "trial_started") >= 1, timeout=120,
                 what="a running training job")
        if not dashboard:  # the local controller needs no Ray without a dashboard
            time.sleep(3)
            assert not [e for e in events(exp, "k9") if e["event"] == "ray_connected"]
        else:  # Ray starts beside the first trials
            wait_for(lambda: any(e["event"] == "ray_connected" for e in events(exp, "k9")),
                     timeout=120, what="Ray")
            (ray,) = [e for e in events(exp, "k9") if e["event"] == "ray_connected"]
            assert ray["started_here"] and ray["session_dir"]
            assert len(session_processes(ray["session_dir"])) >= 3  # gcs, raylet, agents
        launcher.send_signal(signal.SIGKILL)
        out, err = launcher.communicate(timeout=10)
    finally:
        launcher.kill()
    names = {e["training_job_name"] for e in events(exp, "k9") if e["event"] == "trial_started"}
    wait_for(lambda: live_processes_of(names) == [], timeout=30, what="the trials to go")
    if dashboard:
        deadline = time.time() + 30
        while session_processes(ray["session_dir"]) and time.time() < deadline:
            time.sleep(0.5)
        left = session_processes(ray["session_dir"])
        names = [open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:80] for pid in left]
        assert left == [], names
    # Ray's own "token authentication is enabled" warning stays out of the user's terminal.
    assert "Token authentication is enabled" not in err, err
