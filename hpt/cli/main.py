"""The `hpt` command line. Thin: parses arguments and calls one function per command.

Exit codes: 0 done, 1 the job ran but no trial completed, 2 bad input (message on stderr,
no traceback), 75 the launcher could not go on (its Ray was lost; the job is resumable), 130
interrupted.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import sys
import traceback
from pathlib import Path

from hpt.cli.parser import build_parser
from hpt.cli.results import (cmd_best, cmd_ls, cmd_report, cmd_status, cmd_track,
                             print_front)
from hpt.core.errors import LAUNCHER_LOST_EXIT, CannotGoOn, UserError
from hpt.core.schema import Column, File, Key
from hpt.spacefile import SpecError, load_spec


def _overrides(args) -> dict:
    pairs = {"limits.max_trials": args.max_trials, "limits.max_parallel": args.max_parallel,
             "name": args.name, "runtime": args.runtime}
    return {k: v for k, v in pairs.items() if v is not None}


def cmd_validate(args) -> int:
    from hpt.spacefile.load import missing_channels
    from hpt.core.words import plural

    spec = load_spec(args.space)
    print(f"{args.space}: OK — tuning job {spec.name!r}, "
          f"{plural(len(spec.hyperparameters), 'hyperparameter')}, strategy {spec.strategy}, "
          + ("objectives " if spec.multi_objective else "objective ")
          + ", ".join(f"{o.type} {o.metric!r}" for o in spec.all_objectives)
          + (f", {plural(len(spec.constraints), 'constraint')}" if spec.constraints else ""))
    missing = missing_channels(spec)
    if missing:  # only with a prepare command: without one, a missing channel is an error
        print(f"{args.space}: note: channels {', '.join(missing)} do not exist yet; "
              f"`hpt launch` runs prepare: {' '.join(spec.prepare)} first to create them")
    return 0


def cmd_launch(args) -> int:
    from hpt.launcher.prepare import prepare_missing_channels

    # Everything but the on-disk checks first: a malformed space never runs its prepare command.
    prepared = prepare_missing_channels(load_spec(args.space, _overrides(args),
                                                  check_disk=False))
    spec = load_spec(args.space, _overrides(args), prepared=prepared)
    from hpt.launcher.launch import launch  # imports Ray: only for the command that needs it
    from hpt.experiment.table import experiments_dir

    if getattr(args, "process_exits_after", False):
        # What is loaded by now (Ray, Optuna, pandas: ~100 000 objects) lives as long as the
        # launcher: frozen, Python's full collections stop walking it again every few trials.
        gc.freeze()

    root = experiments_dir(args.experiments_dir)
    resume_hint = resume_command(args.argv)
    result = launch(spec, root, address=args.address, dashboard=not args.no_dashboard,
                    controller=args.controller,
                    dashboard_host=args.dashboard_host, container_engine=args.container_engine,
                    sagemaker_role=args.role, resume=args.resume,
                    max_trials_override=args.max_trials, mlflow_uri=args.mlflow_uri,
                    resume_command=resume_hint)
    # The short form when the default experiments folder finds it, else the full path.
    handle = (spec.name if args.experiments_dir is None and not os.environ.get(
        "HPT_EXPERIMENTS_DIR") else str(result.experiment_dir))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items()))
    if not result.ran:
        print(f"Tuning job {spec.name}: nothing to run: its {sum(result.counts.values())} "
              f"training jobs are done ({counts}; max_trials "
              f"{result.state.start.get('max_trials')}); `--resume --max-trials N` with a "
              f"larger N extends it")
        return 0
    print(f"\nTuning job {spec.name}: {result.state.describe()}, after "
          f"{result.elapsed_seconds:.1f}s: {counts}")
    print(f"Table: {result.table_path} (and {File.TABLE_CSV}); in Python: "
          f"hpt.load_experiment({handle!r})")
    if spec.multi_objective:
        print_front(result.experiment_dir, spec, handle)
    elif result.best:
        best = result.best
        print(f"Best training job: {best[Column.TRAINING_JOB_NAME]}  "
              f"{spec.objective.metric}={best[Column.FINAL_OBJECTIVE_VALUE]:.6g}")
        print(f"  hyperparameters: {json.dumps(best['HyperParameters'], default=str)}")
        print(f"  model: {best[Column.MODEL_ARTIFACT]}")
    else:
        print("No training job completed: see FailureReason in the table "
              f"(hpt report {spec.name})")
    from hpt.experiment.job_state import INTERRUPTED, RESUMABLE

    code = result.exit_code
    if result.end_reason in RESUMABLE:
        print(f"Stopped before its end: `{resume_hint}` continues it")
        code = 130 if result.end_reason == INTERRUPTED else code
    if result.ray_connected and getattr(args, "process_exits_after", False):
        _exit_now(code)
    return code


def resume_command(argv: list[str]) -> str:
    """The command that continues the job a `hpt launch` command line runs: the same options
    (its --name, --experiments-dir, --address...) with --resume, and without --max-trials (a
    plain --resume keeps the job's maximum)."""
    kept, skip = [], False
    for token in argv:
        option = token.split("=", 1)[0]
        if skip:
            skip = False
        elif len(option) > 6 and "--max-trials".startswith(option):  # argparse's abbreviations
            skip = "=" not in token
        elif token != "--resume":
            kept.append(token)
    return shlex.join(["hpt", *kept, "--resume"])


def _exit_now(code: int) -> None:
    """Ends the `hpt` process at once. The job's record is durable; what Ray's shutdown at
    exit does (0.5 s waiting for log lines, then every process of a Ray of its own stopped
    gracefully: 1.5-2 s in all) would only delay the prompt. A Ray of its own: the reaper's
    sidecar SIGKILLs every process of its session once this process is gone; a cluster
    joined: Ray ends the actors of a driver that is gone."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_rerun(args) -> int:
    from hpt.launcher.rerun import rerun
    from hpt.core.trial import TrialStatus

    gpus = tuple(g for g in (args.gpus or "").split(",") if g)
    record = rerun(args.name, args.training_job, args.experiments_dir, gpus,
                   on_point=lambda p: print(f"  {p.name} step {p.step}: {p.value:.6g}"))
    print(f"{record.training_job_name} (rerun): {record.status}"
          + (f" {record.failure_reason}" if record.failure_reason else "")
          + (f" objective={record.objective_value:.6g}" if record.objective_value is not None
             else ""))
    print(f"  log: {record.log_path}")
    return 0 if record.status == TrialStatus.COMPLETED else 1


def cmd_export_sagemaker(args) -> int:
    from hpt.spacefile.sagemaker_json import to_request

    from hpt.spacefile.sagemaker_json.exporting import Inexpressible

    try:
        request, report = to_request(load_spec(args.space, check_disk=False), args.primary,
                                     args.flatten)
    except Inexpressible as exc:  # named as the user wrote the path, as the report's lines
        raise UserError("\n".join(f"{args.space}: {line}" for line in exc.lines)) from None
    for line in report:
        print(f"{args.space}: {line}", file=sys.stderr)
    print(json.dumps(request, indent=2))
    return 0


def cmd_import_sagemaker(args) -> int:
    import yaml

    from hpt.spacefile.sagemaker_json import RequestError, from_request, request_problems

    path = Path(args.request)
    try:
        request = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path}: not JSON ({exc}); give a CreateHyperParameterTuningJob "
                        f"request as JSON") from None
    problems = request_problems(request)
    if problems:
        raise UserError("\n".join(f"{path}: {line}; fix the request (the shape SageMaker's "
                                   f"CreateHyperParameterTuningJob takes)" for line in problems))
    try:
        space, report = from_request(request)
    except (RequestError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: {exc}") from None
    for line in report:
        print(f"{path}: {line}", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump(space, sort_keys=False, allow_unicode=True))
    return 0


def cmd_stop(args) -> int:
    import time

    from hpt.experiment.job_state import IN_PROGRESS
    from hpt.experiment.store import STOP_FILE
    from hpt.experiment.table import resolve_experiment
    from hpt.report.summary import state_of

    root = resolve_experiment(args.name, args.experiments_dir)
    if args.training_job:
        return _stop_training_job(root, args)
    state = state_of(root)
    if state.status != IN_PROGRESS:
        print(f"{args.name}: not running ({state.describe()}); nothing to stop", file=sys.stderr)
        return 1
    (root / STOP_FILE).write_text(f"requested by pid {os.getpid()} at {time.time()}\n")
    print(f"{args.name}: stop requested; waiting for its launcher (pid "
          f"{state.writer.get('pid')}) to stop the running trials")
    state = _until(lambda: state_of(root), lambda s: s.status != IN_PROGRESS, args.wait)
    if state is None:
        print(f"{args.name}: still stopping after {args.wait:g}s; check `hpt status "
              f"{args.name}`", file=sys.stderr)
        return 1
    again = state.start.get(Key.RESUME_COMMAND) or "hpt launch SPACE.yaml --resume"
    print(f"{args.name}: {state.describe()}; `{again}` continues it")
    return 0


def _until(read, done, seconds: float):
    """`read()` every half second until `done` holds for it (returned), or None after
    `seconds`: how `hpt stop` waits for a launcher to act on a request."""
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.5)
    return None


def _stop_training_job(root, args) -> int:
    """`hpt stop NAME --training-job JOB`: that one training job ends Stopped, the tuning job
    goes on (as SageMaker's StopTrainingJob of a tuning job's training job)."""
    from hpt.experiment.job_state import IN_PROGRESS
    from hpt.experiment.store import JOURNAL, read_journal, request_training_job_stop
    from hpt.experiment.table import trial_rows
    from hpt.launcher.rerun import find_training_job

    def row():
        return find_training_job(trial_rows(list(read_journal(root / JOURNAL))),
                                 args.training_job)

    found = row()
    job = found[Key.TRAINING_JOB_NAME]
    if found.get(Key.STATUS, IN_PROGRESS) != IN_PROGRESS:
        print(f"{job}: not running ({found[Key.STATUS]}); nothing to stop", file=sys.stderr)
        return 1
    request_training_job_stop(root, job, f"hpt stop --training-job (pid {os.getpid()})")
    print(f"{job}: stop requested; the rest of {args.name} goes on")
    ended = _until(row, lambda r: r.get(Key.STATUS, IN_PROGRESS) != IN_PROGRESS, args.wait)
    if ended is None:
        print(f"{job}: still stopping after {args.wait:g}s; check `hpt report {args.name}`",
              file=sys.stderr)
        return 1
    print(f"{job}: {ended[Key.STATUS]}")
    return 0


def cmd_serve(args) -> int:
    from hpt.serving.backends import BackendError
    from hpt.serving.serve import serve

    if args.shadow and len(args.shadow) > 1:
        raise UserError(f"--shadow is given {len(args.shadow)} times; an endpoint has one "
                        f"shadow variant: keep one --shadow")
    if not args.start_timeout > 0:
        raise UserError(f"--start-timeout {args.start_timeout}: give a positive number of "
                        f"seconds, e.g. 120")
    try:
        return serve(args.name, args.experiments_dir, host=args.host, port=args.port,
                     entry_point=args.entry_point, start_timeout=args.start_timeout,
                     variants=args.variant or [], trial=args.trial,
                     shadow=args.shadow[0] if args.shadow else None,
                     canary=args.canary, canary_steps=args.canary_steps,
                     bake_seconds=args.bake_seconds, max_error_rate=args.max_error_rate,
                     max_p99_ms=args.max_p99_ms, min_requests=args.min_requests,
                     runtime=args.runtime, image=args.image,
                     container_engine=args.container_engine,
                     pick=args.pick, weights=args.weights,
                     say=lambda line: print(line, flush=True))
    except BackendError as exc:  # the model's serving program failed: not bad input
        print(f"hpt serve: {exc}", file=sys.stderr)
        return 1


def cmd_serve_weights(args) -> int:
    from hpt.serving.admin import set_weights

    print(json.dumps(set_weights(args.url, args.weights), indent=2))
    return 0


SECRET_ENV = "HPT_API_SECRET_ACCESS_KEY"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def cmd_api(args) -> int:
    from hpt.experiment.table import experiments_dir

    image_map = {}
    for item in args.image_map or []:
        repository, sep, image = item.partition("=")
        if not sep or not repository or not image:
            raise UserError(f"--image-map {item!r}: write REPOSITORY=LOCAL_IMAGE, e.g. "
                            f"--image-map pytorch-training=hpt-cnn:pytorch-toolkit")
        image_map[repository] = image
    keys = None
    if args.access_key_id:
        secret = os.environ.get(SECRET_ENV)
        if not secret:
            raise UserError(f"--access-key-id {args.access_key_id}: put its secret in "
                            f"{SECRET_ENV} (never on the command line)")
        keys = {args.access_key_id: secret}
    elif args.host not in LOOPBACK_HOSTS:
        raise UserError(f"--host {args.host}: listening beyond this machine needs "
                        f"credentials: add --access-key-id ID with its secret in {SECRET_ENV}; "
                        f"every request's SigV4 signature is then checked")
    from hpt.api.lifecycle import serve_api

    return serve_api(experiments_dir(args.experiments_dir), host=args.host, port=args.port,
                     address=args.address, cpus=args.num_cpus, gpus=args.num_gpus,
                     image_map=image_map, keys=keys, engine=args.container_engine)


# Commands whose console is only a view of work that goes on (hpt/cli/console.py).
LONG_RUNNING = ("launch", "rerun", "api", "serve")

COMMANDS = {
    "api": cmd_api,
    "launch": cmd_launch, "validate": cmd_validate, "status": cmd_status, "report": cmd_report,
    "export-sagemaker": cmd_export_sagemaker, "import-sagemaker": cmd_import_sagemaker,
    "rerun": cmd_rerun, "stop": cmd_stop, "ls": cmd_ls, "best": cmd_best, "serve": cmd_serve,
    "serve-weights": cmd_serve_weights, "track": cmd_track,
}


def main(argv: list[str] | None = None, process_exits_after: bool = False) -> int:
    """`process_exits_after`: the caller exits with the code (the `hpt` command), so a
    launch may end the process itself rather than wait for its Ray's shutdown."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv, args.process_exits_after = argv, process_exits_after
    if process_exits_after and args.command in LONG_RUNNING:
        from hpt.cli.console import outlive_readers

        outlive_readers()
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (UserError, FileNotFoundError) as exc:
        print(f"hpt {args.command}: {exc}", file=sys.stderr)
        return 2
    except CannotGoOn as exc:
        if exc.__cause__ is not None and not getattr(exc.__cause__, "expected", False):
            traceback.print_exception(exc.__cause__)  # hpt's own failure: its trace helps
        print(str(exc), file=sys.stderr)
        return LAUNCHER_LOST_EXIT
    except KeyboardInterrupt:
        print("hpt: interrupted; the journal and table are saved", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hpt report NAME | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def console_main() -> None:
    """The `hpt` command."""
    sys.exit(main(process_exits_after=True))


if __name__ == "__main__":
    console_main()
