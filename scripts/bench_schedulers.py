"""Stop-only ASHA vs promotion ASHA vs exhaustive training, side by side in one run.

    python scripts/bench_schedulers.py            # digits-shifted, 16 trials (about 20 min)
    python scripts/bench_schedulers.py --quick    # plain digits, 6 trials (about 2 min)

The same trials (strategy random, one seed: every variant proposes the same 16 points) of
the harder digits job (search_spaces/digits-shifted-cnn.yaml, 15 epochs) run as whole
`hpt launch` commands:

exhaustive        early_stopping: off, every trial trains its 15 epochs;
stop              early_stopping: asha (Ray Tune's ASHA, rungs 2, 6, 15, η = 3): trials below
                  a rung's top third are stopped for good;
promotion         asha with mode: promotion, the same rungs: trials pause at each rung and the
                  best go on from their checkpoint (epochs raised to the next rung);
promotion_full    promotion with the CNN's schedule_epochs: 15, so that its learning-rate
                  schedule spans the full budget whatever rung a run stops at.

One JSON line per variant (best accuracy, epochs trained = the sum of ObjectiveSteps, wall),
then a summary line with each variant's epochs and best accuracy against exhaustive's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RUNGS = {"min_resource": 2, "reduction_factor": 3}


def base_space(quick: bool) -> dict:
    source = REPO / "search_spaces" / ("digits-cnn.yaml" if quick else "digits-shifted-cnn.yaml")
    space = yaml.safe_load(source.read_text())
    here = source.parent
    space["trainer"]["source_dir"] = str((here / space["trainer"]["source_dir"]).resolve())
    space["channels"] = {name: str((here / uri).resolve())
                         for name, uri in space["channels"].items()}
    if space.get("prepare"):
        space["prepare"] = [str((here / a).resolve()) if a.startswith("..") else a
                            for a in space["prepare"]]
    epochs = 6 if quick else 15
    space["static_hyperparameters"] = {**space.get("static_hyperparameters", {}),
                                       "epochs": epochs}
    space.update(strategy="random", early_stopping="off", seed=0,
                 limits={"max_trials": 6 if quick else 16, "max_parallel": 2})
    space.pop("completion", None)
    return space


def variants(quick: bool) -> dict[str, dict]:
    base = base_space(quick)
    epochs = base["static_hyperparameters"]["epochs"]
    rungs = {**RUNGS, "max_resource": epochs}
    promotion = {**base, "early_stopping": "asha",
                 "strategy_config": {**rungs, "mode": "promotion"}}
    return {
        "exhaustive": base,
        "stop": {**base, "early_stopping": "asha", "strategy_config": rungs},
        "promotion": promotion,
        "promotion_full": {**promotion, "static_hyperparameters": {
            **base["static_hyperparameters"], "schedule_epochs": epochs}},
    }


def run(name: str, space: dict, folder: Path) -> dict:
    import hpt

    space = {**space, "name": f"bench-{name.replace('_', '-')}"}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    began = time.time()
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "launch", str(path),
                           "--experiments-dir", str(folder / "exp"), "--no-dashboard"],
                          capture_output=True, text=True, cwd=REPO)
    wall = time.time() - began
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stdout[-3000:]}"
                         f"\n{done.stderr[-3000:]}")
    df = hpt.load_experiment(folder / "exp" / space["name"])
    completed = df[df["TrainingJobStatus"] == "Completed"]
    best = df.loc[df["FinalObjectiveValue"].idxmax()]
    points = sorted(json.dumps(row, sort_keys=True) for row in
                    df[list(space["hyperparameters"])].to_dict("records"))
    return {"variant": name, "best_accuracy": float(best["FinalObjectiveValue"]),
            "best_training_job": best["TrainingJobName"],
            "best_completed_accuracy": float(completed["FinalObjectiveValue"].max())
            if len(completed) else None,
            "epochs_trained": int(df["ObjectiveSteps"].sum()), "trials": len(df),
            "completed": len(completed), "wall_seconds": round(wall, 1),
            "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="hpt-bench-schedulers-") as tmp:
        for name, space in variants(args.quick).items():
            result = run(name, space, Path(tmp))
            results[name] = result
            print(json.dumps({k: v for k, v in result.items() if k != "points"}), flush=True)
    exhaustive = results["exhaustive"]
    same = all(r["points"] == exhaustive["points"] for r in results.values())
    summary = {"bench": "schedulers", "quick": args.quick, "same_trials": same}
    for name, r in results.items():
        if name == "exhaustive":
            continue
        summary[f"{name}_epochs_ratio"] = round(r["epochs_trained"] /
                                                exhaustive["epochs_trained"], 3)
        summary[f"{name}_accuracy_gap_points"] = round(
            100 * (exhaustive["best_accuracy"] - r["best_accuracy"]), 2)
        summary[f"{name}_wall_ratio"] = round(r["wall_seconds"] / exhaustive["wall_seconds"], 3)
    # The target: promotion within 0.3 points of exhaustive, at <= 0.4x its epochs.
    summary["target"] = {"accuracy_gap_points": 0.3, "epochs_ratio": 0.4}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
