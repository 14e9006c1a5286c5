"""The `hpt` commands that read a tuning job's results: `hpt status` and `hpt best`, and the
Pareto front `hpt launch` prints at the end of a multi-objective job (hpt.cli is the rest)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hpt.words import plural


def print_front(root: Path, spec, handle: str) -> None:
    from hpt.report import front_trials

    front = front_trials(root)
    if not front:
        print("No completed, feasible training job: no Pareto front (see FailureReason and "
              f"Feasible in hpt report {spec.name})")
        return
    print(f"Pareto front: {len(front)} training jobs (hpt.pareto_front({handle!r}); "
          f"`hpt best {spec.name} --pick ...` chooses one)")
    for trial in front:
        values = "  ".join(f"{m}={v:.6g}" for m, v in trial["ObjectiveValues"].items())
        print(f"  {trial['TrainingJobName']}  {values}")


def cmd_status(args) -> int:
    from hpt.report import job_status
    from hpt.trial import TrialStatus

    try:
        status = job_status(args.name, args.experiments_dir)
    except FileNotFoundError as missing:
        return _unlaunched_status(args, missing)
    counts = dict(status["Counts"])
    # Without a live launcher, a job still InProgress in the journal was lost with it.
    lost = counts.pop(TrialStatus.IN_PROGRESS, 0) if status["Status"] != TrialStatus.IN_PROGRESS \
        else 0
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    if lost:
        shown += (", " if shown else "") + (f"{lost} lost (running when the launcher died; "
                                            f"--resume runs them again)")
    print(f"{status['TuningJobName']}: {status['Description']}")
    print(f"  trials: {shown or 'no trials yet'} (max {status['MaxTrials']})")
    best = status["Best"]
    if status["ParetoFrontSize"] is not None:
        print(f"  Pareto front: {status['ParetoFrontSize']} training jobs (hpt best "
              f"{status['TuningJobName']} lists them)")
    if best:
        said = "best " + best["ObjectiveMetric"] if status["ParetoFrontSize"] is not None \
            else "best"
        print(f"  {said}: {best['TrainingJobName']} {best['ObjectiveMetric']}="
              f"{best['FinalObjectiveValue']:.6g} {json.dumps(best['HyperParameters'])}")
    overhead = status["Overhead"]
    if overhead:
        print(f"  hpt overhead: {overhead['MedianPerTrialSeconds'] * 1000:.0f} ms per trial "
              f"(median; mean {overhead['MeanPerTrialSeconds'] * 1000:.0f} ms; queue wait {overhead['TotalQueueWaitSeconds']:.2f} s, launch "
              f"{overhead['TotalLaunchSeconds']:.2f} s, teardown "
              f"{overhead['TotalTeardownSeconds']:.2f} s in all)")
        if overhead.get("TotalResourceWaitSeconds"):
            print(f"  waiting for resources (not hpt's overhead): "
                  f"{overhead['TotalResourceWaitSeconds']:.1f} s in all, training jobs waiting "
                  f"for others to free the CPUs or GPUs they need")
    for gpu, use in status["Gpus"].items():
        print(f"  GPU {gpu}: {plural(use['TrainingJobs'], 'training job')}, busy "
              f"{use['Utilisation']:.0%} of the job's time")
    for name in status["Running"]:
        print(f"  running: {name}")
    if status["ResumeCommand"]:
        print(f"  continue it: {status['ResumeCommand']} (from the folder it was launched in)")
    return 0


def _unlaunched_status(args, missing: FileNotFoundError) -> int:
    """A tuning job hpt api was asked for that never got an experiment folder."""
    from hpt.api.store import unlaunched_tuning_jobs
    from hpt.experiment.table import experiments_dir

    for job in unlaunched_tuning_jobs(experiments_dir(args.experiments_dir)):
        if job["TuningJobName"] == args.name:
            print(f"{args.name}: {job['Description']}")
            print(f"  trials: none ran (a tuning job of hpt api; its launcher's output: "
                  f"{job['LauncherLog']})")
            return 0
    raise missing  # no such job anywhere


def cmd_best(args) -> int:
    from hpt.experiment.table import resolve_experiment
    from hpt.report import best_trial, front_trials, picked_trial, said_front

    root = resolve_experiment(args.name, args.experiments_dir)
    several = len(json.loads((root / "spec.json").read_text()).get("objectives") or []) > 1
    if args.pick is not None or args.weights is not None:
        best = picked_trial(root, None, args.pick, args.weights)
        if best is None:
            front = front_trials(root)
            print(f"{args.name}: no training job of the {'Pareto front' if several else 'job'} "
                  f"passes --pick {args.pick!r}; its jobs: "
                  + said_front(front)
                  + ". Loosen the rule", file=sys.stderr)
            return 1
    elif several:
        front = front_trials(root)
        if not front:
            print(f"{args.name}: no completed, feasible training job yet", file=sys.stderr)
            return 1
        print(json.dumps(front, indent=2, default=str))
        return 0
    else:
        best = best_trial(root)
    if best is None:
        print(f"{args.name}: no completed training job yet", file=sys.stderr)
        return 1
    print(json.dumps(best, indent=2, default=str))
    return 0


def cmd_track(args) -> int:
    """`hpt track NAME`: what the MLflow server lacks of the job's folder, sent now."""
    from hpt.experiment.table import resolve_experiment
    from hpt.tracking import track_folder

    root = resolve_experiment(args.name, args.experiments_dir)
    complete, lines = track_folder(root, args.mlflow_uri, args.wait)
    for line in lines:
        print(line)
    return 0 if complete else 1
