"""hpt's pieces in one process against the bare library: the searcher with its durable
journal vs in-memory Optuna TPE (search), the log pump and metric parser vs /dev/null
(metrics)."""

from __future__ import annotations

import random
import subprocess
import sys
import time

from benchlib.harness import CHATTY, emit, workdir, write_space


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
    from hpt.core.trial import OBJECTIVE, STATUS, TrialStatus

    study = open_study(spec, folder / "optuna.journal")
    searcher = OptunaSearcher(spec, study, rounds)
    began = time.perf_counter()
    for i in range(rounds):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {STATUS: TrialStatus.COMPLETED, OBJECTIVE: rng.random()})
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


def bench_metrics(quick: bool) -> None:
    from hpt.runtime.job_protocol import TrialAssignment
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
