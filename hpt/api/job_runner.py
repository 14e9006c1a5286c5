"""The process that runs one tuning job of `hpt api`:

    python -m hpt.api.job_runner TUNING_DIR --experiments-dir DIR --address RAY [--resume]

A request is validated once, by the server: `stage` loads the request's space.yaml with
`load_spec` when the job is created (it must, to answer a ValidationException at once) and
freezes the spec it got into TUNING_DIR/validated-spec.json. This process rebuilds that spec
(`Spec.from_frozen_dict`: no YAML read, no file or path checked again), runs the space's
`prepare` command if its local channels are still to be made, and runs the job with hpt's
`launch`. It is a process of its own so that the job outlives the server: a restarted
server starts it again with --resume on the same frozen spec, never on a space.yaml edited
since. A job staged by an hpt that froze no spec has only its space.yaml: that is loaded
(and so validated) here, as `hpt launch` would.

space.yaml stays beside the frozen spec for people: `hpt launch TUNING_DIR/space.yaml ...
--resume` continues the job by hand (and validates it, as any command of a user does).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
import traceback
from pathlib import Path

VALIDATED_SPEC = "validated-spec.json"  # the spec the server validated, frozen (stage writes it)
SPACE = "space.yaml"  # the same space as a file for people (and for older tuning folders)


def validated_spec(folder: Path):
    """The spec the server validated; from space.yaml for a folder staged before specs were
    frozen."""
    from hpt.spacefile import load_spec
    from hpt.spacefile.model import Spec

    frozen = folder / VALIDATED_SPEC
    if frozen.is_file():
        return Spec.from_frozen_dict(json.loads(frozen.read_text()))
    return load_spec(folder / SPACE)


def prepare_channels(spec) -> None:
    """The space's `prepare` command, when a local channel it makes is missing (a space `hpt
    export-sagemaker` wrote carries it), as `hpt launch` runs it; then the channels must
    exist. Not a second validation: the data that command makes, looked for after it ran."""
    from hpt.core.errors import UserError
    from hpt.launcher.prepare import prepare_missing_channels
    from hpt.spacefile.load import missing_channels

    if prepare_missing_channels(spec) and missing_channels(spec):
        raise UserError(f"{spec.source_path}: prepare: {' '.join(spec.prepare)} ran but channels "
                        f"{', '.join(missing_channels(spec))} still do not exist; make the "
                        f"command write them")


def run(folder: Path, experiments: Path, address: str, resume: bool) -> int:
    from hpt.experiment.job_state import INTERRUPTED, RESUMABLE
    from hpt.launcher.launch import launch

    spec = validated_spec(folder)
    prepare_channels(spec)
    # What is loaded by now lives as long as this process: frozen, Python's full collections
    # stop walking it again every few trials (as `hpt launch` does).
    gc.freeze()
    by_hand = shlex.join(["hpt", "launch", str(folder / SPACE), "--experiments-dir",
                          str(experiments), "--address", address, "--no-dashboard", "--resume"])
    result = launch(spec, experiments, address=address, dashboard=False, resume=resume,
                    resume_command=by_hand)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items()))
    print(f"Tuning job {spec.name}: {result.state.describe()}, after "
          f"{result.elapsed_seconds:.1f}s: {counts}", flush=True)
    code = result.exit_code
    if result.end_reason in RESUMABLE:
        code = 130 if result.end_reason == INTERRUPTED else code
    return code


def main(argv: list[str] | None = None) -> int:
    from hpt.core.errors import LAUNCHER_LOST_EXIT, CannotGoOn, UserError
    from hpt.spacefile import SpecError

    parser = argparse.ArgumentParser(prog="python -m hpt.api.job_runner",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the tuning job's folder in the server's store")
    parser.add_argument("--experiments-dir", type=Path, required=True)
    parser.add_argument("--address", required=True, help="the server's Ray")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    try:
        code = run(args.folder, args.experiments_dir, args.address, args.resume)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"hpt api: {exc}", file=sys.stderr)
        return 2
    except CannotGoOn as exc:  # said in the log, whose last lines a failed job's reason quotes
        if exc.__cause__ is not None and not getattr(exc.__cause__, "expected", False):
            traceback.print_exception(exc.__cause__)  # hpt's own failure: its trace helps
        print(str(exc), file=sys.stderr)
        return LAUNCHER_LOST_EXIT
    except KeyboardInterrupt:  # the server's clean shutdown: the job stays resumable
        print("hpt api: interrupted; the journal and table are saved", file=sys.stderr)
        return 130
    # The job's record is durable: end at once rather than wait for Ray's shutdown at exit
    # (the reaper's sidecar or Ray ends what this process leaves, as after `hpt launch`).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
