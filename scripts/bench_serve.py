"""`hpt serve` under load on loopback: one JSON line per scenario, ratios measured in one run.

    python scripts/bench_serve.py                         # a tiny CNN job is launched first
    python scripts/bench_serve.py --experiment digits-cnn # an existing tuning job
    python scripts/bench_serve.py --quick                 # small sizes, a smoke check

Scenarios, each N requests (one 8x8 digit as JSON) at concurrency C through the router:
direct    the best trial's serving program alone, no router (the baseline of `one`)
one       the best trial alone
two       best and another trial, weights 0.5 / 0.5
shadow    the best trial, plus a copy of every request to another trial (the shadow)

Each line: requests, errors (non-200 or no answer), throughput_rps, p50_ms, p99_ms, and for
two/shadow their ratios to `one` (throughput, p50, p99). Without --experiment, a tuning job of
the CNN (trainers/cnn, 2 trials, 1 epoch) is launched into a temporary folder first (about
20-30 s on 2 cores). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def launch_tiny_job(folder: Path) -> tuple[str, Path]:
    """A 2-trial, 1-epoch tuning job of the CNN: real models to serve."""
    import yaml

    sys.path.insert(0, str(REPO / "scripts"))
    from prepare_data import ensure_prepared

    data = REPO / "data" / "digits"
    ensure_prepared(data, "plain", 0)
    space = {"name": "bench-serve",
             "trainer": {"source_dir": str(REPO / "trainers" / "cnn"), "entry_point": "train.py",
                         "cpus_per_host": 1, "max_runtime_seconds": 300},
             "channels": {"train": str(data / "train"), "test": str(data / "test")},
             "static_hyperparameters": {"epochs": 1},
             "hyperparameters": {"lr": {"type": "continuous", "min": 0.01, "max": 0.05}},
             "objective": {"metric": "validation:accuracy", "type": "maximize"},
             "metric_definitions": [{"name": "validation:accuracy",
                                     "regex": "val_acc=([0-9.]+)"}],
             "strategy": "random", "limits": {"max_trials": 2, "max_parallel": 2}, "seed": 0}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "launch", str(path),
                           "--experiments-dir", str(folder / "exp"), "--no-dashboard"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"bench_serve: launching the tiny job failed:\n{done.stdout[-2000:]}"
                 f"{done.stderr[-2000:]}")
    return "bench-serve", folder / "exp"


class Serve:
    """`hpt serve` in a subprocess, on a free port."""

    def __init__(self, name: str, experiments_dir: Path | None, flags: list[str]):
        cmd = [sys.executable, "-m", "hpt.cli.main", "serve", name, "--port", "0", *flags]
        if experiments_dir is not None:
            cmd += ["--experiments-dir", str(experiments_dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self.url = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if self.url is None and " at http://" in line:
                    self.url = line.split(" at ", 1)[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(180)
        if self.url is None:
            self.stop()
            sys.exit("bench_serve: hpt serve did not start:\n" + "\n".join(self.lines[-20:]))

    def backend_url(self, training_job: str) -> str:
        """The serving program's own URL, from the line `hpt serve` prints for it."""
        deadline = time.time() + 10  # printed right after the endpoint's own line
        while time.time() < deadline:
            for line in list(self.lines):
                if f" {training_job} (trial " in line:
                    return next(w for w in line.split() if w.startswith("http://"))
            time.sleep(0.05)
        raise LookupError(f"hpt serve printed no line for {training_job}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def load(url: str, body: bytes, requests: int, concurrency: int) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))

    async def worker(session):
        nonlocal errors
        for _ in remaining:
            start = time.perf_counter()
            try:
                async with session.post(f"{url}/invocations", data=body,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    errors += resp.status != 200
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - start)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for _ in range(min(20, requests)):  # warm: connections, the models' first batches
            async with session.post(f"{url}/invocations", data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {"requests": requests, "errors": errors,
            "throughput_rps": round(requests / wall, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", metavar="NAME", help="tuning job to serve (default: "
                        "launch a tiny CNN job into a temporary folder)")
    parser.add_argument("--experiments-dir", metavar="DIR")
    parser.add_argument("--requests", type=int, metavar="N")
    parser.add_argument("--concurrency", type=int, default=8, metavar="C")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    parser.add_argument("--entry-point", metavar="PATH", help="serving program (default the "
                        "trainer's serve.py)")
    args = parser.parse_args()
    requests = args.requests or (200 if args.quick else 1500)

    experiments_dir = Path(args.experiments_dir) if args.experiments_dir else None
    if args.experiment is not None:
        return run_scenarios(args, args.experiment, experiments_dir, requests)
    with tempfile.TemporaryDirectory(prefix="hpt-bench-serve-") as tmp:  # its tiny job
        name, experiments_dir = launch_tiny_job(Path(tmp))
        return run_scenarios(args, name, experiments_dir, requests)


def run_scenarios(args, name: str, experiments_dir: Path | None, requests: int) -> int:
    import hpt

    df = hpt.load_experiment(name, experiments_dir)
    best = hpt.best_trial(name, experiments_dir)
    if best is None:
        sys.exit(f"bench_serve: {name} has no completed training job")
    others = [n for n in df.loc[df["TrainingJobStatus"] == "Completed", "TrainingJobName"]
              if n != best["TrainingJobName"]]
    if not others:
        sys.exit(f"bench_serve: {name} needs two completed training jobs (two variants)")
    other = others[0]

    import numpy as np

    x = np.load(REPO / "data" / "digits" / "test" / "data.npz")["x"][:1]
    body = json.dumps({"instances": x.tolist()}).encode()
    extra = ["--entry-point", args.entry_point] if args.entry_point else []
    scenarios = {"one": ["--variant", "best=1"],
                 "two": ["--variant", "best=0.5", "--variant", f"{other}=0.5"],
                 "shadow": ["--variant", "best=1", "--shadow", other]}
    results = {}
    for scenario, flags in scenarios.items():
        serve = Serve(name, experiments_dir, flags + extra)
        try:
            if scenario == "one":  # the same serving program without the router in front
                direct = asyncio.run(load(serve.backend_url(best["TrainingJobName"]), body,
                                          requests, args.concurrency))
                emit(bench="serve", scenario="direct", quick=args.quick,
                     concurrency=args.concurrency, **direct)
            results[scenario] = asyncio.run(load(serve.url, body, requests, args.concurrency))
        finally:
            serve.stop()
        line = {"bench": "serve", "scenario": scenario, "quick": args.quick,
                "concurrency": args.concurrency, **results[scenario]}
        if scenario == "one":  # what the router costs per request
            line["router_p50_ms"] = round(line["p50_ms"] - direct["p50_ms"], 2)
            line["throughput_ratio_vs_direct"] = round(
                line["throughput_rps"] / direct["throughput_rps"], 3)
        else:
            base = results["one"]
            line["throughput_ratio_vs_one"] = round(
                results[scenario]["throughput_rps"] / base["throughput_rps"], 3)
            line["p50_ratio_vs_one"] = round(results[scenario]["p50_ms"] / base["p50_ms"], 3)
            line["p99_ratio_vs_one"] = round(results[scenario]["p99_ms"] / base["p99_ms"], 3)
        emit(**line)
    return 1 if any(r["errors"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
