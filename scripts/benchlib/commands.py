"""Whole commands, timed as a user runs them: hpt's start-up cold and joined (startup), a
1000-trial sweep (sweep) and 10 000 trials (scale), against bare Optuna and Ray Tune programs
running the same no-op trial."""

from __future__ import annotations

import statistics
import sys

from benchlib.harness import emit, hpt_launch, noop_job, whole, workdir

BARE_OPTUNA = """import subprocess, sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
n, script, sampler = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def objective(trial):
    trial.suggest_float("x", 0, 1); trial.suggest_float("y", 0, 1)
    out = subprocess.run([sys.executable, script], capture_output=True, text=True,
                         check=True).stdout
    return float(out.split("=")[1])
samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
optuna.create_study(direction="maximize", sampler=samplers[sampler](seed=0)).optimize(
    objective, n_trials=n, n_jobs=2)
"""
BARE_TUNE = """import os, subprocess, sys
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
from ray import tune
n, script, storage = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def trainable(config):
    out = subprocess.run([sys.executable, script], capture_output=True, text=True,
                         check=True).stdout
    tune.report({"objective": float(out.split("=")[1])})
tune.Tuner(tune.with_resources(trainable, {"CPU": 1}),
           param_space={"x": tune.uniform(0, 1), "y": tune.uniform(0, 1)},
           tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=2),
           run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
"""


def bench_startup(quick: bool) -> None:
    from hpt.api.ray_head import RayHead

    runs = 1 if quick else 5
    folder = workdir()
    (folder / "bare_optuna.py").write_text(BARE_OPTUNA)
    walls: dict[str, list[float]] = {"hpt": [], "hpt_no_dashboard": [], "ray_init_shutdown": [],
                                     "optuna_loop": [], "hpt_joined": [], "hpt_joined_local": []}
    for i in range(runs):
        space = noop_job(folder, f"startup-{i}", 2)
        walls["hpt"].append(hpt_launch(space, folder)["wall"])
        space = noop_job(folder, f"startup-quiet-{i}", 2)
        walls["hpt_no_dashboard"].append(hpt_launch(space, folder, "--no-dashboard")["wall"])
        walls["ray_init_shutdown"].append(whole([sys.executable, "-c", (
            "import ray; ray.init(address='local'); ray.shutdown()")])["wall"])
        walls["optuna_loop"].append(whole([sys.executable, str(folder / "bare_optuna.py"), "2",
                                           str(folder / "code" / "noop.py"), "tpe"])["wall"])
    head = RayHead(cpus=2, gpus=0, log=folder / "ray-head.log")
    address = head.start()
    try:
        for i in range(runs):
            space = noop_job(folder, f"joined-{i}", 2)
            walls["hpt_joined"].append(hpt_launch(space, folder, "--address", address)["wall"])
            # A Ray kept running for the dashboard; hpt drives the trials (no Tune actors).
            space = noop_job(folder, f"joined-local-{i}", 2)
            walls["hpt_joined_local"].append(hpt_launch(space, folder, "--address", address,
                                                        "--controller", "local")["wall"])
    finally:
        head.stop()
    med = {k: round(statistics.median(v), 2) for k, v in walls.items()}
    emit(bench="startup", runs=runs, trials=2, **{f"{k}_wall": v for k, v in med.items()},
         cold_ratio_vs_ray_init=round(med["hpt"] / med["ray_init_shutdown"], 3),
         target_cold_ratio=1.2, target_joined_wall=2.0, quick=quick)


def bench_sweep(quick: bool) -> None:
    trials = 60 if quick else 1000
    folder = workdir()
    (folder / "bare_optuna.py").write_text(BARE_OPTUNA)
    (folder / "bare_tune.py").write_text(BARE_TUNE)
    fields = {"strategy": "bayesian"}
    cold = hpt_launch(noop_job(folder, "sweep", trials, **fields), folder)
    quiet = hpt_launch(noop_job(folder, "sweep-quiet", trials, **fields), folder,
                       "--no-dashboard")
    warm = hpt_launch(noop_job(folder, "sweep-warm", trials, trainer_warm_start=True,
                               **fields), folder)
    script = str(folder / "code" / "noop.py")
    optuna_loop = whole([sys.executable, str(folder / "bare_optuna.py"), str(trials), script,
                         "tpe"])
    # Bare Tune runs ~1.5 s a trial here: a tenth of the trials (at least 10), its wall
    # scaled to the whole sweep.
    tune_trials = max(10, trials // 10)
    tune_run = whole([sys.executable, str(folder / "bare_tune.py"), str(tune_trials), script,
                      str(folder / "tune")])
    emit(bench="sweep", trials=trials, hpt_wall=round(cold["wall"], 2),
         hpt_no_dashboard_wall=round(quiet["wall"], 2),
         hpt_warm_wall=round(warm["wall"], 2), optuna_loop_wall=round(optuna_loop["wall"], 2),
         ray_tune_trials=tune_trials, ray_tune_wall=round(tune_run["wall"], 2),
         ray_tune_wall_scaled=round(tune_run["wall"] * trials / tune_trials, 1),
         ratio_vs_optuna=round(cold["wall"] / optuna_loop["wall"], 3),
         warm_speedup_vs_optuna=round(optuna_loop["wall"] / warm["wall"], 3),
         trials_per_second=round(trials / cold["wall"], 1), launcher_rss_mb=cold["rss_mb"],
         target_ratio_vs_optuna=1.0, target_warm_speedup=1.5, quick=quick)


def bench_scale(quick: bool) -> None:
    import hpt

    trials = 300 if quick else 10_000
    folder = workdir()
    space = noop_job(folder, "scale", trials, trainer_warm_start=True)
    run = hpt_launch(space, folder, "--no-dashboard")
    df = hpt.load_experiment(folder / "exp" / "scale").sort_values("TrainingEndTime")
    ends = df["TrainingEndTime"].astype("int64").to_numpy() / 1e9
    tenth = trials // 10
    first = tenth / (ends[tenth - 1] - ends[0])
    last = tenth / (ends[-1] - ends[-tenth])
    status = whole([sys.executable, "-m", "hpt", "status", "scale", "--experiments-dir",
                    str(folder / "exp")])
    report = whole([sys.executable, "-m", "hpt", "report", "scale", "--experiments-dir",
                    str(folder / "exp")])
    emit(bench="scale", trials=trials, completed=int((df["TrainingJobStatus"] ==
                                                      "Completed").sum()),
         wall=round(run["wall"], 1), first_tenth_per_second=round(first, 1),
         last_tenth_per_second=round(last, 1), last_vs_first=round(last / first, 3),
         launcher_rss_mb=run["rss_mb"], status_seconds=round(status["wall"], 2),
         report_seconds=round(report["wall"], 2), target_last_vs_first=0.9,
         target_rss_mb=500, target_status_report_seconds=2.0, quick=quick)
