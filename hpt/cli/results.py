"""The `hpt` commands that read tuning jobs' results and write nothing into them: `hpt status`,
`hpt best`, `hpt report`, `hpt ls`, and the Pareto front `hpt launch` prints at the end of a
multi-objective job (`hpt track` sends a job's results to MLflow). hpt.cli.main is the rest: the
commands that run, stop or convert jobs, and the servers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hpt.core.schema import Column, File
from hpt.core.words import plural


def print_front(root: Path, spec, handle: str) -> None:
    from hpt.report.summary import front_trials

    front = front_trials(root)
    if not front:
        print("No completed, feasible training job: no Pareto front (see FailureReason and "
              f"Feasible in hpt report {spec.name})")
        return
    print(f"Pareto front: {len(front)} training jobs (hpt.pareto_front({handle!r}); "
          f"`hpt best {spec.name} --pick ...` chooses one)")
    for trial in front:
        values = "  ".join(f"{m}={v:.6g}" for m, v in trial["ObjectiveValues"].items())
        print(f"  {trial[Column.TRAINING_JOB_NAME]}  {values}")


def cmd_status(args) -> int:
    from hpt.report.summary import job_status
    from hpt.core.trial import TrialStatus

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
        print(f"  {said}: {best[Column.TRAINING_JOB_NAME]} {best['ObjectiveMetric']}="
              f"{best[Column.FINAL_OBJECTIVE_VALUE]:.6g} {json.dumps(best['HyperParameters'])}")
    overhead = status["Overhead"]
    if overhead:
        waited = overhead["TotalResourceWaitSeconds"]
        print(f"  hpt overhead: {overhead['MedianPerTrialSeconds'] * 1000:.0f} ms per trial "
              f"(median; mean {overhead['MeanPerTrialSeconds'] * 1000:.0f} ms; queue wait "
              f"{overhead['TotalQueueWaitSeconds'] - waited:.2f} s, launch "
              f"{overhead['TotalLaunchSeconds']:.2f} s, teardown "
              f"{overhead['TotalTeardownSeconds']:.2f} s in all)")
        if waited:
            print(f"  waiting for resources (not hpt's overhead): {waited:.1f} s in all, "
                  f"training jobs waiting for others to free the CPUs or GPUs they need")
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
    from hpt.experiment.api_requests import unlaunched_tuning_jobs
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
    from hpt.report.summary import best_trial, front_trials, picked_trial, said_front

    root = resolve_experiment(args.name, args.experiments_dir)
    several = len(json.loads((root / File.SPEC).read_text()).get("objectives") or []) > 1
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


def cmd_report(args) -> int:
    from hpt.experiment.table import resolve_experiment
    from hpt.report.summary import format_table, load_experiment, readable_table

    if args.format in ("html", "png", "tensorboard"):
        return _visual_report(args)
    root = resolve_experiment(args.name, args.experiments_dir)
    df = load_experiment(root)
    if args.format == "table" and not args.all_columns:
        spec = json.loads((root / File.SPEC).read_text())
        text = readable_table(df, spec, _terminal_width())
    else:
        text = format_table(df, args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _visual_report(args) -> int:
    from hpt.experiment.table import resolve_experiment
    from hpt.report.page import render_html
    from hpt.report.plots import write_pngs

    root = resolve_experiment(args.name, args.experiments_dir)
    if args.format == "tensorboard":
        from hpt.report.tensorboard import write_event_files

        logdir = Path(args.output) if args.output else root / "tensorboard"
        written = write_event_files(root, logdir)
        print(f"wrote {len(written)} training jobs' metrics to {logdir}: tensorboard --logdir "
              f"{logdir}")
        return 0
    if args.format == "html":
        path = Path(args.output) if args.output else root / File.REPORT_HTML
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render_html(root), encoding="utf-8")
        os.replace(tmp, path)  # a browser reloading it never sees half a page
        print(f"wrote {path}")
        return 0
    written = write_pngs(root, Path(args.output) if args.output else root / "report")
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{args.name}: no completed training job yet, nothing to plot", file=sys.stderr)
    return 0


def _terminal_width() -> int:
    """Columns to fit a table in: the terminal's (or $COLUMNS); no limit into a pipe or file."""
    import shutil

    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return 1 << 16


def cmd_ls(args) -> int:
    from hpt.report.summary import format_table, list_api_jobs, list_experiments

    df, alone = list_experiments(args.experiments_dir), list_api_jobs(args.experiments_dir)
    if df.empty and alone.empty:
        print("no tuning jobs yet (hpt launch SPACE.yaml starts one)", file=sys.stderr)
        return 0
    if args.format != "table":
        sys.stdout.write(format_table(df, args.format))
        return 0
    if not df.empty:
        _print_listing(df, "EndReason")
    if not alone.empty:  # what hpt api ran outside any tuning job
        print(f"{'' if df.empty else chr(10)}Training and transform jobs hpt api ran on their "
              f"own:")
        _print_listing(alone, "Reason")
    return 0


def _print_listing(df, reason: str) -> None:
    """A listing as a table: minutes are enough to tell jobs apart; the reason, last, is cut
    first."""
    from hpt.report.summary import render_rows

    shown = df.assign(**{c: df[c].dt.strftime("%Y-%m-%d %H:%M") for c in
                         ("CreationTime", "EndTime")}).fillna("").astype(str)
    shown = shown[[c for c in shown.columns if c != reason] + [reason]]
    sys.stdout.write(render_rows(list(shown.columns), shown.values.tolist(), _terminal_width()))
