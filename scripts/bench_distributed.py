"""Scaling of the CNN trainer's distributed modes: 1 worker vs 2 workers (1 thread each).

Prints JSON lines: one per run (mode, workers, samples/s) and one per mode with the scaling
efficiency = tput(2) / (2 x tput(1)), all measured side by side in this run. Throughput is
the chief's `samples_per_sec` per epoch, the first epoch left out as warm-up. The processes
get exactly the environment hpt's plan gives a trial (hpt.runtime.distribution_plan).

    python scripts/bench_distributed.py            # shifted 28x28 digits, 4 epochs
    python scripts/bench_distributed.py --quick    # 2 epochs on a quarter of the data
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from hpt.runtime.host import free_ports  # noqa: E402
from hpt.core.sagemaker_names import distribution_hyperparameters  # noqa: E402
from hpt.runtime.distribution_plan import (HostAddress,  # noqa: E402
                              plan_trial)

TRAIN_PY = REPO / "trainers" / "cnn" / "train.py"
THROUGHPUT = re.compile(r"^throughput epoch=(\d+) samples_per_sec=([0-9.]+)$", re.M)


def data_dir(quick: bool) -> Path:
    full = REPO / "data" / "digits-shifted"
    if not (full / "train" / "data.npz").is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_data.py"),
                        "--variant", "shifted"], check=True, stdout=subprocess.DEVNULL)
    if not quick:
        return full
    small = Path(tempfile.mkdtemp(prefix="bench-data-"))
    for channel in ("train", "test"):
        with np.load(full / channel / "data.npz") as d:
            x, y = d["x"], d["y"]
        keep = len(y) // 4
        (small / channel).mkdir(parents=True)
        np.savez(small / channel / "data.npz", x=x[:keep], y=y[:keep])
    return small


def run(mode: str, workers: int, data: Path, args: list[str]) -> float:
    """Samples/s of one job: `workers` gradient workers on as many hosts, 1 thread each."""
    hosts = [HostAddress(f"algo-{h + 1}", "127.0.0.1", free_ports(2)) for h in range(workers)]
    argv = (sys.executable, str(TRAIN_PY), *args)
    plans = plan_trial(mode if workers > 1 else "none", hosts, argv,
                       master_port=free_ports(1)[0])
    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    procs = []
    for plan in plans:
        for p in plan.processes:
            env = {**os.environ, **p.env, "SM_CHANNEL_TRAIN": str(data / "train"),
                   "SM_CHANNEL_TEST": str(data / "test"),
                   "SM_MODEL_DIR": str(work / p.log_name / "model"),
                   "SM_OUTPUT_DIR": str(work / p.log_name / "output"), "SM_NUM_CPUS": "1",
                   "OMP_NUM_THREADS": "1",
                   "SM_FRAMEWORK_PARAMS": json.dumps(distribution_hyperparameters(mode, 1))}
            procs.append(subprocess.Popen(list(p.argv), env=env, cwd=TRAIN_PY.parent,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    outputs = [proc.communicate(timeout=900) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        if proc.returncode != 0:
            raise SystemExit(f"{mode} x{workers} failed:\n{err[-3000:]}")
    rates = [float(r) for e, r in THROUGHPUT.findall(outputs[0][0]) if int(e) > 1]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int)
    opts = parser.parse_args()
    epochs = opts.epochs or (3 if opts.quick else 4)
    data = data_dir(opts.quick)
    args = ["--epochs", str(epochs), "--batch_size", "256", "--conv_channels", "32",
            "--lr", "0.01", "--optimizer", "adam", "--dist_timeout", "120"]
    targets = {"data_parallel": 0.90, "parameter_server": 0.75}
    single = run("none", 1, data, args)
    print(json.dumps({"bench": "distributed", "mode": "single", "workers": 1,
                      "samples_per_sec": round(single, 1)}), flush=True)
    for mode, target in targets.items():
        two = run(mode, 2, data, args)
        # The single-worker baseline again, right after: the machine's speed drifts.
        again = run("none", 1, data, args)
        base = (single + again) / 2
        print(json.dumps({"bench": "distributed", "mode": mode, "workers": 2,
                          "samples_per_sec": round(two, 1),
                          "single_worker_samples_per_sec": round(base, 1),
                          "scaling_efficiency": round(two / (2 * base), 3), "target": target,
                          "servers": 2 if mode == "parameter_server" else 0,
                          "epochs": epochs, "quick": opts.quick}), flush=True)
        single = again


if __name__ == "__main__":
    main()
