"""hpt's benchmarks, each a ratio measured side by side in one run; JSON lines on stdout.

    python scripts/bench.py all            # every benchmark (several minutes)
    python scripts/bench.py overhead       # one benchmark (names below)
    python scripts/bench.py --quick all    # small sizes, a smoke check (about a minute)

overhead     80 trials of a script that sleeps 1 s at max_parallel 2: wall / ideal (40 s) for
             a whole `hpt launch` (cold, and with trainer.warm_start), bare Ray Tune (a
             function trainable that sleeps) and a bare Optuna loop running the same
             subprocess (n_jobs=2).
launch       spawn -> first output line of a no-op script through hpt's training job
             (contract, tree, process group) vs a bare `python -c pass`.
torch        a trial whose script imports torch, spawn -> its first line (training starts),
             with trainer.warm_start (forked from the warm interpreter) and cold, vs a cold
             `python -c "import torch"`.
search       R suggest+tell rounds of hpt's searcher with its durable journal storage vs
             bare in-memory Optuna TPE.
metrics      a script printing 2000 metric lines/s through hpt's log pump and parser vs the
             same script writing to /dev/null; lines lost must be 0.
utilisation  trials of mixed lengths (0.2-5 s) at max_parallel 2: busy / available slot-seconds.
cnn          the default job (search_spaces/digits-cnn.yaml): wall time and best accuracy.
containers   spawn -> first output line of a no-op script as a container trial (runtime:
             docker, the toolkit's `train` in hpt-cnn:latest) vs a local trial, and vs a bare
             `docker run --rm IMAGE python -c print()`; needs a running engine and the image.
startup      whole `hpt launch` of 2 no-op trials (cold: hpt starts its own Ray, and without
             the dashboard; joining a Ray already running, `--address`, on Ray Tune and on
             the local controller) vs a bare `ray.init(); ray.shutdown()` and a bare Optuna
             loop running the same 2 trials, each a whole command, interleaved.
sweep        1000 no-op trials (TPE, 2 parameters) at max_parallel 2, whole commands: hpt
             (cold, without the dashboard, and with trainer.warm_start) vs a bare Optuna loop
             with a subprocess per trial (n_jobs=2) and vs bare Ray Tune running the same
             subprocess (a tenth of the trials: its wall is also given scaled to all).
scale        10 000 no-op trials (strategy random, warm_start) at max_parallel 2: throughput
             of the last tenth vs the first, the launcher's peak RSS, and how long `hpt
             status` and `hpt report` take on the finished job.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


_ROOT: Path | None = None  # main() runs every bench inside one folder it removes at the end


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="hpt-bench-", dir=_ROOT))


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


# -- overhead ----------------------------------------------------------------------------

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


# -- launch ------------------------------------------------------------------------------

def bench_launch(quick: bool) -> None:
    from hpt.runtime.api import TrialAssignment
    from hpt.runtime.local_job import LocalTrainingJob
    from hpt.spacefile import load_spec

    runs = 5 if quick else 20
    folder = workdir()
    (folder / "code").mkdir()
    (folder / "code" / "noop.py").write_text("print('val_acc=1', flush=True)\n")
    space = write_space(folder, "launch", 1, {"x": {"type": "continuous", "min": 0, "max": 1}},
                        entry="noop.py")
    spec = load_spec(space)
    bare, ours = [], []
    for i in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - began)
        job = LocalTrainingJob(spec, TrialAssignment(i + 1, f"launch-{i:03d}", {"x": 0.5}),
                               folder / "exp" / f"launch-{i:03d}")
        began = time.perf_counter()
        job.start()
        job.advance()  # the first objective data point = the script's first line
        ours.append(time.perf_counter() - began)
        job.stop()
    b, o = statistics.median(bare), statistics.median(ours)
    emit(bench="launch", runs=runs, bare_python_seconds=round(b, 4),
         hpt_first_line_seconds=round(o, 4), ratio=round(o / b, 3), target_ratio=4.0,
         quick=quick)


def bench_containers(quick: bool) -> None:
    from hpt.runtime.api import JobContext, Slot, TrialAssignment
    from hpt.runtime.runtimes import RUNTIMES
    from hpt.spacefile import load_spec

    image, engine = "hpt-cnn:latest", os.environ.get("HPT_CONTAINER_ENGINE", "docker")
    if subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode:
        emit(bench="containers", skipped=f"{engine} has no {image} here: start an engine "
             "(scripts/container_engine.py) and build it (scripts/build_images.py)")
        return
    runs = 3 if quick else 10
    folder = workdir()
    (folder / "code").mkdir()
    (folder / "code" / "noop.py").write_text("print('val_acc=1', flush=True)\n")
    spec = load_spec(write_space(folder, "boxed", 1, {"x": {"type": "continuous", "min": 0,
                                                             "max": 1}}, entry="noop.py"))
    boxed = load_spec(write_space(folder, "boxed-docker", 1, {"x": {
        "type": "continuous", "min": 0, "max": 1}}, entry="noop.py"), {
        "runtime": "docker", "trainer.image": image})

    def first_line(runtime: str, the_spec, i: int) -> float:
        name = f"{runtime}-{i:03d}"
        job = RUNTIMES[runtime].job(JobContext(
            the_spec, TrialAssignment(i + 1, name, {"x": 0.5}), folder / "exp" / name,
            {"container_engine": engine}, Slot(num_cpus=1)))
        began = time.perf_counter()
        job.start()
        job.advance()  # the first objective data point = the script's first line
        took = time.perf_counter() - began
        job.stop()
        return took

    bare, local, container = [], [], []
    for i in range(runs):
        began = time.perf_counter()
        subprocess.run([engine, "run", "--rm", image, "python", "-c", "print()"], check=True,
                       capture_output=True)
        bare.append(time.perf_counter() - began)
        local.append(first_line("local", spec, i))
        container.append(first_line("docker", boxed, i))
    b, lo, c = (statistics.median(x) for x in (bare, local, container))
    emit(bench="containers", runs=runs, local_first_line_seconds=round(lo, 4),
         container_first_line_seconds=round(c, 4), bare_docker_run_seconds=round(b, 4),
         ratio=round(c / lo, 3), ratio_vs_bare_docker_run=round(c / b, 3), quick=quick)


# -- torch start -------------------------------------------------------------------------

def bench_torch(quick: bool) -> None:
    from hpt.runtime.api import TrialAssignment
    from hpt.runtime.local_job import LocalTrainingJob
    from hpt.runtime.warm import WarmInterpreter, modules_to_preload
    from hpt.spacefile import load_spec

    runs = 3 if quick else 10
    folder = workdir()
    (folder / "code").mkdir()
    (folder / "code" / "torchy.py").write_text(
        "import torch\nprint('val_acc=1', flush=True)\n")
    spec = load_spec(write_space(folder, "torch", 1, {"x": {"type": "continuous", "min": 0,
                                                               "max": 1}}, entry="torchy.py"))
    began = time.perf_counter()
    warm = WarmInterpreter(modules_to_preload(folder / "code" / "torchy.py", folder / "code"),
                           folder / "warm.log")
    socket_path = warm.wait_ready()
    ready = time.perf_counter() - began

    def first_line(i: int, socket: str | None) -> float:
        name = f"torch-{'warm' if socket else 'cold'}-{i:03d}"
        job = LocalTrainingJob(spec, TrialAssignment(i + 1, name, {"x": 0.5}),
                               folder / "exp" / name, warm_socket=socket)
        began = time.perf_counter()
        job.start()
        job.advance()
        took = time.perf_counter() - began
        job.stop()
        return took

    cold_import, hot, cold = [], [], []
    try:
        for i in range(runs):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            cold_import.append(time.perf_counter() - began)
            hot.append(first_line(i, socket_path))
            cold.append(first_line(i, None))
    finally:
        warm.close()
    b, w, c = (statistics.median(x) for x in (cold_import, hot, cold))
    emit(bench="torch", runs=runs, cold_import_torch_seconds=round(b, 4),
         hpt_warm_first_line_seconds=round(w, 4), hpt_cold_first_line_seconds=round(c, 4),
         warm_interpreter_ready_seconds=round(ready, 3), ratio=round(w / b, 4),
         cold_ratio=round(c / b, 3), target_ratio=0.05, quick=quick)


# -- search ------------------------------------------------------------------------------

def bench_search(quick: bool) -> None:
    import optuna

    from hpt.search.searcher import OptunaSearcher, open_study
    from hpt.spacefile import load_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rounds = 100 if quick else 1000
    folder = workdir()
    hps = {"lr": {"type": "continuous", "min": 1e-4, "max": 0.1, "scaling": "log"},
           "units": {"type": "integer", "min": 8, "max": 256},
           "opt": {"type": "categorical", "values": ["sgd", "adam"]}}
    spec = load_spec(write_space(folder, "search", rounds, hps),
                     {"strategy": "bayesian", "limits.max_parallel": 1})  # TPE on both sides
    rng = random.Random(0)

    study = open_study(spec, folder / "optuna.journal")
    searcher = OptunaSearcher(spec, study, rounds)
    began = time.perf_counter()
    for i in range(rounds):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"hpt_status": "Completed", "objective": rng.random()})
    ours = time.perf_counter() - began

    from hpt.search.searcher import make_sampler
    from hpt.search.space import build_distributions

    bare_study = optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    distributions = build_distributions(spec.hyperparameters)
    began = time.perf_counter()
    for _ in range(rounds):
        trial = bare_study.ask(distributions)
        bare_study.tell(trial, rng.random())
    bare = time.perf_counter() - began
    emit(bench="search", rounds=rounds, hpt_seconds=round(ours, 3),
         bare_optuna_seconds=round(bare, 3), ratio=round(ours / bare, 3), target_ratio=1.5,
         quick=quick)


# -- metrics -----------------------------------------------------------------------------

def bench_metrics(quick: bool) -> None:
    from hpt.runtime.api import TrialAssignment
    from hpt.runtime.local_job import LocalTrainingJob
    from hpt.spacefile import load_spec

    rate, seconds = 2000, (3.0 if quick else 20.0)
    folder = workdir()
    space = write_space(folder, "metrics", 1, {"x": {"type": "continuous", "min": 0, "max": 1}},
                        static={"rate": rate, "seconds": seconds}, entry="chatty.py")
    (folder / "code" / "chatty.py").write_text(CHATTY)
    began = time.perf_counter()
    subprocess.run([sys.executable, str(folder / "code" / "chatty.py"), "--rate", str(rate),
                    "--seconds", str(seconds)], stdout=subprocess.DEVNULL, check=True)
    bare = time.perf_counter() - began
    job = LocalTrainingJob(load_spec(space), TrialAssignment(1, "metrics-001", {"x": 0.5}),
                           folder / "exp" / "metrics-001")
    began = time.perf_counter()
    received, record = 0, None
    job.start()
    while record is None:
        progress = job.advance()
        received += progress.point is not None
        record = progress.record
    ours = time.perf_counter() - began
    emit(bench="metrics", lines_per_second=rate, seconds=seconds, printed=int(rate * seconds),
         received=received, lost=int(rate * seconds) - received,
         bare_seconds=round(bare, 3), hpt_seconds=round(ours, 3),
         overhead_ratio=round(ours / bare, 3), status=record.status, quick=quick)


# -- utilisation -------------------------------------------------------------------------

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


# -- cnn ---------------------------------------------------------------------------------

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


# -- whole commands: startup, sweep, scale -----------------------------------------------

NOOP = 'print("val_acc=1.0", flush=True)\n'
TWO_PARAMETERS = {"x": {"type": "continuous", "min": 0, "max": 1},
                  "y": {"type": "continuous", "min": 0, "max": 1}}
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


BENCHES = {"overhead": bench_overhead, "launch": bench_launch, "torch": bench_torch,
           "search": bench_search,
           "metrics": bench_metrics, "utilisation": bench_utilisation, "cnn": bench_cnn,
           "containers": bench_containers, "startup": bench_startup, "sweep": bench_sweep,
           "scale": bench_scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke check)")
    opts = parser.parse_args()
    global _ROOT
    with tempfile.TemporaryDirectory(prefix="hpt-bench-") as root:
        _ROOT = Path(root)
        for name in (BENCHES if opts.bench == "all" else [opts.bench]):
            BENCHES[name](opts.quick)


if __name__ == "__main__":
    main()
