"""The benchmarks run (figures are measured by `scripts/bench.py all`, never asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_and_prints_json():
    for name in ("launch", "search", "metrics"):
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick",
                               name], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        (line,) = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
        assert line["bench"] == name and line["quick"] is True
        if name == "metrics":
            assert line["lost"] == 0 and line["status"] == "Completed"
