"""MLflow tracking's cost: a whole `hpt launch` of one trial printing 2000 metric lines/s, with
tracking off and on (a real `mlflow server` on 127.0.0.1, sqlite), interleaved. Every data
point must reach MLflow (lost: 0), and the trial (its TrainingElapsedTimeSeconds) must take at
most 1.05x as long with tracking. Also given: the whole command's wall, and how long the
launcher waited at the end for the follower to send what was left (the server's own pace:
MLflow on sqlite takes ~1000-2000 points/s here).

    python scripts/bench_tracking.py [--quick] [--rounds N]     # JSON on stdout

Needs the `mlflow` package (the dev extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s of lines, one round")
    parser.add_argument("--rounds", type=int, default=None, help="launches of each kind")
    opts = parser.parse_args()
    bench, servers = _script("bench"), _script("mlflow_server")
    rate, seconds = 2000, (3.0 if opts.quick else 20.0)
    rounds = opts.rounds or (1 if opts.quick else 3)
    with tempfile.TemporaryDirectory(prefix="hpt-bench-tracking-") as root:
        folder = Path(root)
        bench._ROOT = folder
        server = servers.MlflowServer(folder / "mlflow").start()
        try:
            walls = {"off": [], "on": []}
            trials = {"off": [], "on": []}
            for i in range(rounds):
                for mode in ("off", "on"):
                    space = bench.write_space(
                        folder, f"chatty-{mode}-{i}", 1,
                        {"x": {"type": "continuous", "min": 0, "max": 1}},
                        static={"rate": rate, "seconds": seconds}, entry="chatty.py")
                    (folder / "code" / "chatty.py").write_text(bench.CHATTY)
                    extra = ["--mlflow-uri", server.uri] if mode == "on" else []
                    walls[mode].append(bench.hpt_launch(space, folder, "--no-dashboard",
                                                        *extra)["wall"])
                    trials[mode].append(_trial_and_flush(folder / "exp" / f"chatty-{mode}-{i}"))
            printed = int(rate * seconds)
            received = _points_in_mlflow(server.uri, [f"chatty-on-{i}" for i in range(rounds)])
        finally:
            server.stop()
    off, on = statistics.median(walls["off"]), statistics.median(walls["on"])
    trial_off = statistics.median(t for t, _ in trials["off"])
    trial_on = statistics.median(t for t, _ in trials["on"])
    print(json.dumps({
        "bench": "tracking", "lines_per_second": rate, "seconds": seconds, "rounds": rounds,
        "printed_per_job": printed, "in_mlflow_per_job": received,
        "lost": sum(printed - n for n in received),
        "wall_off_s": [round(w, 2) for w in walls["off"]],
        "wall_on_s": [round(w, 2) for w in walls["on"]],
        "trial_off_s": [round(t, 2) for t, _ in trials["off"]],
        "trial_on_s": [round(t, 2) for t, _ in trials["on"]],
        "trial_on_vs_off": round(trial_on / trial_off, 3), "target_trial_on_vs_off": 1.05,
        "end_flush_s": [round(f, 2) for _, f in trials["on"]],
        "command_on_vs_off": round(on / off, 3), "quick": opts.quick}),
        flush=True)


def _trial_and_flush(root: Path) -> tuple[float, float]:
    """The trial's elapsed seconds, and how long the launcher waited for the follower after
    the job's end (0 without tracking)."""
    import hpt

    events = [json.loads(line) for line in (root / "journal.jsonl").read_text().splitlines()]
    ended = next(e["time"] for e in events if e["event"] == "job_ended")
    tracked = [e["time"] for e in events if e["event"] == "tracking_ended"]
    df = hpt.load_experiment(root)
    return float(df["TrainingElapsedTimeSeconds"].iloc[0]), (tracked[-1] - ended) if tracked \
        else 0.0


def _points_in_mlflow(uri: str, experiments: list[str]) -> list[int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    counts = []
    for name in experiments:
        found = client.get_experiment_by_name(name)
        runs = client.search_runs([found.experiment_id]) if found else []
        child = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        counts.append(len(client.get_metric_history(child[0].info.run_id, "acc"))
                      if child else 0)
    return counts


if __name__ == "__main__":
    sys.exit(main())
