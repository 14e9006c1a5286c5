"""What every benchmark stands on: the trainer scripts it times, the space it writes, a
folder of its own, Ray, a whole command timed with its peak RSS, and the JSON line it prints."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

# -- the trainer scripts the benchmarks run ----------------------------------------------

SLEEPER = """import sys, time
seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 1.0
time.sleep(seconds)
print("val_acc=1.0", flush=True)
"""
CHATTY = """import argparse, sys, time
p = argparse.ArgumentParser()
p.add_argument("--rate", type=int, default=2000)
p.add_argument("--seconds", type=float, default=3.0)
args, _ = p.parse_known_args()
rate, seconds = args.rate, args.seconds
n = int(rate * seconds)
start = time.time()
for i in range(n):
    print(f"step={i} val_acc={i / n:.6f}")
    if i % 100 == 99:
        sys.stdout.flush()
        lag = start + (i + 1) / rate - time.time()
        if lag > 0:
            time.sleep(lag)
sys.stdout.flush()
"""
NOOP = 'print("val_acc=1.0", flush=True)\n'
TWO_PARAMETERS = {"x": {"type": "continuous", "min": 0, "max": 1},
                  "y": {"type": "continuous", "min": 0, "max": 1}}


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


ROOT: Path | None = None  # bench.py runs every bench inside one folder it removes at the end


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="hpt-bench-", dir=ROOT))


def write_space(folder: Path, name: str, trials: int, hyperparameters: dict,
                static: dict | None = None, entry: str = "sleeper.py", **fields) -> Path:
    """`fields`: top-level keys of the space (strategy, ...); `trainer_*` keys go to the
    trainer section (trainer_warm_start=True)."""
    import yaml

    trainer = {k.removeprefix("trainer_"): v for k, v in fields.items()
               if k.startswith("trainer_")}
    space = {"name": name,
             "trainer": {"source_dir": str(folder / "code"), "entry_point": entry,
                         "cpus_per_host": 1, "max_runtime_seconds": 600, **trainer},
             "static_hyperparameters": static or {},
             "hyperparameters": hyperparameters,
             "objective": {"metric": "acc", "type": "maximize"},
             "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
             "strategy": "random", "limits": {"max_trials": trials, "max_parallel": min(2, trials)},
             "seed": 0, **{k: v for k, v in fields.items() if not k.startswith("trainer_")}}
    (folder / "code").mkdir(exist_ok=True)
    if not (folder / "code" / entry).exists():
        (folder / "code" / entry).write_text(SLEEPER)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def ensure_ray():
    import ray

    from hpt.cluster.session import keep_on_loopback

    if not ray.is_initialized():
        keep_on_loopback()  # as hpt's own Ray: on 127.0.0.1
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    return ray


def whole(argv: list[str], **kwargs) -> dict:
    """Runs a whole command; its wall time and its own peak RSS (VmHWM, polled)."""
    # Output to a file, not a pipe: a pipe nobody reads while the command runs fills up
    # (10 000 trials print ~1 MB) and blocks the command.
    out_file = tempfile.TemporaryFile()
    began = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out_file, stderr=subprocess.STDOUT, **kwargs)
    peak = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - began
    out_file.seek(0)
    out = out_file.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{out[-3000:]}")
    return {"wall": wall, "rss_mb": round(peak / 1024, 1)}


def noop_job(folder: Path, name: str, trials: int, **fields) -> Path:
    (folder / "code").mkdir(exist_ok=True)
    (folder / "code" / "noop.py").write_text(NOOP)
    return write_space(folder, name, trials, dict(TWO_PARAMETERS), entry="noop.py", **fields)


def hpt_launch(space: Path, folder: Path, *args: str) -> dict:
    return whole([sys.executable, "-m", "hpt", "launch", str(space), "--experiments-dir",
                  str(folder / "exp"), *args])
