"""The Ray dashboard tells the tuning job's story: a real `hpt launch` with its dashboard on
127.0.0.1, queried through the dashboard's HTTP API with Ray's auth token."""

import json
import re
import subprocess
import time
import urllib.request

import pytest
import yaml

import hpt
from user_env import hpt_command, user_env

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke

SLEEPER = "import time\ntime.sleep(6)\nprint('val_acc=1.0', flush=True)\n"


def _get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def dashboard_url(launcher) -> str:
    """The dashboard URL a running `hpt launch` prints (read from its stdout)."""
    for line in launcher.stdout:
        found = re.search(r"Ray dashboard: (http://127\.0\.0\.1:\d+)", line)
        if found:
            return found.group(1)
    raise AssertionError("hpt launch did not print a dashboard URL on 127.0.0.1")


def token_of(home) -> str:
    """The token hpt's Ray uses, where the launch says it is: ~/.ray/auth_token (Ray writes
    one there for the first Ray of a HOME that has none)."""
    return (home / ".ray" / "auth_token").read_text().strip()


def write_sleepy_job(folder) -> None:
    """space.yaml (job `dash`: 2 trials of SLEEPER, 2 at a time) and its code/ in folder."""
    (folder / "code").mkdir()
    (folder / "code" / "sleeper.py").write_text(SLEEPER)
    space = {"name": "dash", "trainer": {"source_dir": "code", "entry_point": "sleeper.py"},
             "hyperparameters": {"x": {"type": "continuous", "min": 0, "max": 1}},
             "objective": {"metric": "acc", "type": "maximize"},
             "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
             "strategy": "random", "limits": {"max_trials": 2, "max_parallel": 2}}
    (folder / "space.yaml").write_text(yaml.safe_dump(space))


def test_actors_are_named_after_training_jobs_and_the_job_carries_its_metadata(tmp_path):
    """On the Ray Tune controller each trial is an actor; the local controller has none, and
    the job's metadata is what the dashboard shows of it (the next test)."""
    write_sleepy_job(tmp_path)
    home = tmp_path / "home"
    launcher = subprocess.Popen(
        [*hpt_command(), "launch", "space.yaml", "--experiments-dir", "exp",
         "--dashboard-host", "127.0.0.1", "--controller", "tune"],
        cwd=tmp_path, env=user_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        url = dashboard_url(launcher)
        token = token_of(home)

        # Without the token the API refuses: auth stays on.
        try:
            urllib.request.urlopen(f"{url}/api/v0/actors", timeout=10)
            refused = False
        except urllib.error.HTTPError as exc:
            refused = exc.code in (401, 403)
        assert refused

        names: set[str] = set()
        deadline = time.time() + 60
        while time.time() < deadline and len(names) < 2:
            actors = _get(f"{url}/api/v0/actors?detail=true", token)["data"]["result"]["result"]
            names = {a.get("repr_name") or "" for a in actors}
            names = {n for n in names if re.fullmatch(r"dash-\d{3}-[0-9a-f]{8}/algo-1", n)}
            time.sleep(0.5)
        assert len(names) == 2, names

        jobs = _get(f"{url}/api/jobs/", token)
        tuning = [j for j in jobs if (j.get("metadata") or {}).get("hpt_tuning_job") == "dash"]
        assert tuning and tuning[0]["metadata"]["hpt_max_trials"] == "2"
        assert launcher.wait(timeout=120) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    table = hpt.load_experiment(tmp_path / "exp" / "dash")
    assert {f"{n}/algo-1" for n in table["TrainingJobName"]} == names


def test_on_the_local_controller_trials_start_before_ray_and_the_dashboard_has_the_job(
        tmp_path):
    write_sleepy_job(tmp_path)
    home = tmp_path / "home"
    launcher = subprocess.Popen(
        [*hpt_command(), "launch", "space.yaml", "--experiments-dir", "exp"],
        cwd=tmp_path, env=user_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        url = dashboard_url(launcher)
        jobs = _get(f"{url}/api/jobs/", token_of(home))
        tuning = [j for j in jobs if (j.get("metadata") or {}).get("hpt_tuning_job") == "dash"]
        assert tuning and tuning[0]["metadata"]["hpt_max_trials"] == "2"
        rest = launcher.stdout.read()
        assert launcher.wait(timeout=120) == 0, rest
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    events = [json.loads(line) for line in
              (tmp_path / "exp" / "dash" / "journal.jsonl").read_text().splitlines()]
    first_start = min(e["time"] for e in events if e["event"] == "trial_started")
    (ray,) = [e for e in events if e["event"] == "ray_connected"]
    assert first_start < ray["time"] and ray["started_here"]  # nothing waited for Ray
    assert len(hpt.load_experiment(tmp_path / "exp" / "dash")) == 2
