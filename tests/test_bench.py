"""The benchmarks run (figures are measured by `scripts/bench.py all`, never asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke

REPO = Path(__file__).resolve().parent.parent


def _quick(*names):
    for name in names:
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick",
                               name], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        (line,) = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
        assert line["bench"] == name and line["quick"] is True
        if name == "metrics":
            assert line["lost"] == 0 and line["status"] == "Completed"
        if name == "scale":  # every trial ran (the figures are the full run's business)
            assert line["completed"] == line["trials"]


def test_bench_quick_runs_and_prints_json():
    _quick("launch", "search", "metrics", "scale")


# In the slow set, for CI's 25 minutes (a minute together): the startup benchmark starts Ray
# clusters, the sweep one runs four launches and bare Tune beside them.
@pytest.mark.slow
def test_bench_quick_startup_and_sweep_run_and_print_json():
    _quick("startup", "sweep")


# In the slow set (pytest --slow), for CI's 25 minutes: the serving benchmark launches its
# own job and three endpoints; the routing it measures is tested in test_serving.
@pytest.mark.slow
def test_bench_serve_quick_runs_and_prints_json():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_serve.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
    assert [line["scenario"] for line in lines] == ["direct", "one", "two", "shadow"]
    assert all(line["errors"] == 0 and line["throughput_rps"] > 0 for line in lines)
    assert "throughput_ratio_vs_direct" in lines[1] and "throughput_ratio_vs_one" in lines[3]


def test_bench_moasha_quick_runs_and_prints_json():
    """About 20 s: three launches of 16 short jobs (multi-objective ASHA, first-objective
    ASHA, every job trained)."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_moasha.py"),
                           "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
    assert line["exhaustive"]["completed_jobs"] == line["jobs_each"] == 16
    assert 0 < line["moasha"]["budget_epochs"] < line["exhaustive"]["budget_epochs"]


@pytest.mark.slow  # starts hpt api and moto's S3: about 40 s
def test_bench_warm_pools_quick_runs_and_prints_json():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_warm_pools.py"),
                           "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
    assert line["every_warm_job_reused_a_pool"] is True and line["jobs_each"] == 3
