"""Whole tuning jobs against their ideal: wall / ideal for hpt, bare Ray Tune and a bare Optuna
loop (overhead), busy / available slot-seconds (utilisation), the default CNN job (cnn)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchlib.harness import REPO, emit, ensure_ray, hpt_launch, workdir, write_space


def bench_overhead(quick: bool) -> None:
    trials, seconds = (10, 0.5) if quick else (80, 1.0)
    ideal = trials * seconds / 2
    folder = workdir()
    from hpt.report.summary import load_experiment, overhead_summary

    # Whole `hpt launch` commands (import, Ray beside the trials, exit), cold and with
    # trainer.warm_start (trials fork from a warm interpreter).
    space = write_space(folder, "overhead", trials,
                        {"x": {"type": "continuous", "min": 0, "max": 1}},
                        static={"seconds": seconds})
    hpt_wall = hpt_launch(space, folder)["wall"]
    per_trial = overhead_summary(load_experiment(folder / "exp" / "overhead"))
    warm_space = write_space(folder, "overhead-warm", trials,
                             {"x": {"type": "continuous", "min": 0, "max": 1}},
                             static={"seconds": seconds}, trainer_warm_start=True)
    warm_wall = hpt_launch(warm_space, folder)["wall"]
    warm_per_trial = overhead_summary(load_experiment(folder / "exp" / "overhead-warm"))
    ensure_ray()
    from ray import tune

    def sleeper(config):
        time.sleep(seconds)
        tune.report({"objective": 1.0})

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    began = time.time()
    tune.Tuner(tune.with_resources(sleeper, {"CPU": 1}),
               param_space={"x": tune.uniform(0, 1)},
               tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=2),
               run_config=tune.RunConfig(storage_path=str(folder / "tune"), verbose=0)).fit()
    tune_wall = time.time() - began

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    script = folder / "code" / "sleeper.py"

    def objective(trial):
        trial.suggest_float("x", 0, 1)
        out = subprocess.run([sys.executable, str(script), "--seconds", str(seconds)],
                             capture_output=True, text=True, check=True).stdout
        return float(out.split("=")[1])

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    began = time.time()
    study.optimize(objective, n_trials=trials, n_jobs=2)
    optuna_wall = time.time() - began
    emit(bench="overhead", trials=trials, trial_seconds=seconds, ideal_seconds=ideal,
         hpt_wall=round(hpt_wall, 2), hpt_ratio=round(hpt_wall / ideal, 3),
         hpt_warm_wall=round(warm_wall, 2), hpt_warm_ratio=round(warm_wall / ideal, 3),
         hpt_per_trial=per_trial, hpt_warm_per_trial=warm_per_trial,
         ray_tune_wall=round(tune_wall, 2), ray_tune_ratio=round(tune_wall / ideal, 3),
         optuna_wall=round(optuna_wall, 2), optuna_ratio=round(optuna_wall / ideal, 3),
         target_hpt_ratio=1.05, quick=quick)


def bench_utilisation(quick: bool) -> None:
    ensure_ray()
    import hpt
    from hpt.launcher.launch import launch
    from hpt.spacefile import load_spec

    trials = 12 if quick else 40
    folder = workdir()
    space = write_space(folder, "util", trials,
                        {"seconds": {"type": "continuous", "min": 0.2, "max": 5.0}})
    launch(load_spec(space), folder / "exp", dashboard=False, stream=open(os.devnull, "w"))
    df = hpt.load_experiment(folder / "exp" / "util")
    busy = df["TrainingElapsedTimeSeconds"].sum()
    span = (df["TrainingEndTime"].max() - df["TrainingStartTime"].min()).total_seconds()
    emit(bench="utilisation", trials=trials, busy_slot_seconds=round(busy, 2),
         available_slot_seconds=round(2 * span, 2), utilisation=round(busy / (2 * span), 3),
         target=0.95, quick=quick)


def bench_cnn(quick: bool) -> None:
    folder = workdir()
    command = [sys.executable, "-m", "hpt.cli.main", "launch", str(REPO / "search_spaces" /
               "digits-cnn.yaml"), "--experiments-dir", str(folder), "--no-dashboard"]
    if quick:
        command += ["--max-trials", "2"]
    began = time.time()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - began
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    import hpt

    best = hpt.best_trial(folder / "digits-cnn")
    emit(bench="cnn", wall_seconds=round(wall, 1), best_accuracy=best["FinalObjectiveValue"],
         best_training_job=best["TrainingJobName"], quick=quick)
