"""Multi-objective early stopping, measured: hypervolume against the budget spent, for the
same training jobs run three ways, one JSON line.

    python scripts/bench_moasha.py            # 3 seeds x 40 training jobs each way
    python scripts/bench_moasha.py --quick    # 1 seed x 16 jobs, a smoke check

A synthetic two-objective problem with learning curves: a training job with hyperparameters
(width, rate) trains 9 epochs; its accuracy at epoch t rises towards a final value that
grows with width (with noise) at a speed set by rate, and its size is width; every epoch's
line prints both. The same jobs (strategy random, one seed: the same draws in the same
order whatever is stopped) run as whole `hpt launch` commands, 2 at a time:

exhaustive      early_stopping off: every job trains to the end
first           ASHA on accuracy alone (the space's one objective), as before MOASHA
moasha          ASHA on both objectives (hpt's multi-objective ASHA)

For each: the budget spent (epochs trained, all jobs) and the hypervolume of the completed
jobs' (accuracy, size) front (reference point: accuracy 0, size 1.1 × the largest width);
also the hypervolume each had reached when it had spent the budget the cheapest run spent in
all (`hypervolume_at_common_budget`). Averaged over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EPOCHS = 9
MAX_WIDTH = 64
TRAINER = '''
import argparse, math, random, time
p = argparse.ArgumentParser()
p.add_argument("--width", type=int); p.add_argument("--rate", type=float)
p.add_argument("--seed", type=int, default=0); p.add_argument("--epochs", type=int)
a, _ = p.parse_known_args()
noise = random.Random(a.width * 1000 + int(a.rate * 1000)).gauss(0, 0.03)
final = min(0.99, 0.55 + 0.4 * math.log(a.width) / math.log(64) + noise)
for t in range(1, a.epochs + 1):
    time.sleep(0.05)
    acc = final * (1 - math.exp(-a.rate * t))
    print(f"epoch={t} val_acc={acc:.5f} size_mb={a.width}", flush=True)
'''


def space(name: str, folder: Path, jobs: int, seed: int, rule: str) -> dict:
    objectives = [{"metric": "acc", "type": "maximize"}]
    if rule == "moasha":
        objectives.append({"metric": "size", "type": "minimize"})
    spec = {
        "name": name,
        "trainer": {"source_dir": str(folder / "code"), "entry_point": "train.py",
                    "cpus_per_host": 1, "max_runtime_seconds": 60},
        "static_hyperparameters": {"epochs": EPOCHS},
        "hyperparameters": {
            "width": {"type": "integer", "min": 1, "max": MAX_WIDTH, "scaling": "log"},
            "rate": {"type": "continuous", "min": 0.1, "max": 1.5}},
        "objectives": objectives,
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"},
                               {"name": "size", "regex": "size_mb=([0-9.]+)"}],
        "strategy": "random", "seed": seed,
        "limits": {"max_trials": jobs, "max_parallel": 2},
        "early_stopping": "off" if rule == "exhaustive" else "asha",
    }
    if rule != "exhaustive":
        spec["strategy_config"] = {"min_resource": 1, "max_resource": EPOCHS,
                                   "reduction_factor": 3}
    return spec


def hypervolume(points: list[tuple[float, float]]) -> float:
    """2-D hypervolume of (accuracy up, size down) points against (0, 1.1 × MAX_WIDTH)."""
    reference = 1.1 * MAX_WIDTH
    front, best = [], -1.0
    for acc, size in sorted(points, key=lambda p: (p[1], -p[0])):  # smallest first
        if acc > best:
            front.append((acc, size))
            best = acc
    volume = 0.0
    for i, (acc, size) in enumerate(front):
        next_size = front[i + 1][1] if i + 1 < len(front) else reference
        volume += acc * (next_size - size)
    return volume


def run(folder: Path, name: str, jobs: int, seed: int, rule: str) -> dict:
    import yaml

    import hpt

    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space(name, folder, jobs, seed, rule)))
    subprocess.run([sys.executable, "-m", "hpt", "launch", str(path), "--experiments-dir",
                    str(folder / "exp"), "--no-dashboard"], check=True,
                   stdout=subprocess.DEVNULL)
    table = hpt.load_experiment(name, folder / "exp").sort_values("TrainingEndTime")
    spent, curve, done = 0, [], []
    for _, row in table.iterrows():
        spent += int(row["ObjectiveSteps"] or 0)
        if row["TrainingJobStatus"] == "Completed":
            done.append((float(row["acc"]), float(row["size"])))
        curve.append((spent, hypervolume(done)))
    return {"budget": spent, "hypervolume": curve[-1][1], "curve": curve,
            "completed": len(done)}


def at_budget(curve: list[tuple[int, float]], budget: int) -> float:
    return max([hv for spent, hv in curve if spent <= budget], default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds, jobs = ([0], 16) if args.quick else ([0, 1, 2], 40)
    rules = ("exhaustive", "first", "moasha")
    results: dict[str, list[dict]] = {rule: [] for rule in rules}
    with tempfile.TemporaryDirectory(prefix="hpt-bench-moasha-") as tmp:
        folder = Path(tmp)
        (folder / "code").mkdir()
        (folder / "code" / "train.py").write_text(TRAINER)
        for seed in seeds:
            for rule in rules:
                results[rule].append(run(folder, f"{rule}-{seed}", jobs, seed, rule))
    for seed_index in range(len(seeds)):
        common = min(results[rule][seed_index]["budget"] for rule in rules)
        for rule in rules:
            found = results[rule][seed_index]
            found["at_common"] = at_budget(found["curve"], common)
    out = {"bench": "moasha", "seeds": len(seeds), "jobs_each": jobs, "epochs": EPOCHS,
           "quick": args.quick}
    for rule in rules:
        runs = results[rule]
        out[rule] = {"budget_epochs": statistics.mean(r["budget"] for r in runs),
                     "hypervolume": round(statistics.mean(r["hypervolume"] for r in runs), 3),
                     "hypervolume_at_common_budget": round(
                         statistics.mean(r["at_common"] for r in runs), 3),
                     "completed_jobs": statistics.mean(r["completed"] for r in runs)}
    out["moasha_vs_first_hypervolume"] = round(
        out["moasha"]["hypervolume"] / out["first"]["hypervolume"], 3)
    out["moasha_vs_exhaustive_hypervolume"] = round(
        out["moasha"]["hypervolume"] / out["exhaustive"]["hypervolume"], 3)
    out["moasha_vs_exhaustive_budget"] = round(
        out["moasha"]["budget_epochs"] / out["exhaustive"]["budget_epochs"], 3)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
