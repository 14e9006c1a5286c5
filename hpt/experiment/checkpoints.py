"""Checkpoints carried from one attempt of a training job to the next.

SageMaker's managed spot training gives a restarted job the `/opt/ml/checkpoints` its earlier
run left (synced through `CheckpointConfig`); a script that resumes from it continues where
it was. hpt does the same for every attempt of a training job in its experiment folder (a
retry after a lost host, a resumed tuning job's re-run): each host's `checkpoints/` is copied
from the latest earlier attempt that wrote any, with that attempt's metrics, so the objective's
steps continue from where the checkpoint was taken instead of starting over at 1.

Copied, not moved or linked: the earlier attempt keeps its files (a script that rewrites a
checkpoint in place must not change the archived one).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hpt.core.sagemaker_names import CHECKPOINTS_DIR
from hpt.core.schema import File, Point
from hpt.experiment.data_points import read_points, write_points

HOST_GLOB = "algo-*"


def has_checkpoint(attempt: Path) -> bool:
    """Whether any host of this attempt (folder) wrote a file into its checkpoints/."""
    return any(path.is_file() for host in Path(attempt).glob(HOST_GLOB)
               for path in (host / CHECKPOINTS_DIR).rglob("*"))


def carry_checkpoints(earlier: Path, trial_dir: Path) -> int:
    """Seeds `trial_dir` (a new attempt, still empty) with `earlier`'s checkpoints and metrics.
    Returns the objective steps carried over (0: nothing to carry, the attempt starts fresh).
    `earlier` is an archived attempt of the same job, or a snapshot of one (a Ray Tune
    checkpoint: a paused trial's own, or a PBT donor's). Also takes that snapshot: from a
    running attempt's folder into an empty one."""
    earlier, trial_dir = Path(earlier), Path(trial_dir)
    if not has_checkpoint(earlier):
        return 0
    for host in sorted(earlier.glob(HOST_GLOB)):
        _copy_files(host / CHECKPOINTS_DIR, trial_dir / host.name / CHECKPOINTS_DIR)
    # Rewritten point by point: a line torn by the kill that ended the earlier attempt
    # must not swallow the first line this attempt appends.
    points = read_points(earlier / File.METRICS)
    if points:
        write_points(trial_dir / File.METRICS, points)
    return carried_steps(trial_dir)


def _copy_files(source: Path, target: Path) -> None:
    """Copies the files under `source`; one that goes away meanwhile is left out (a running
    script may replace or prune its checkpoints while a pause or an exploit copies them)."""
    for path in sorted(source.rglob("*")) if source.is_dir() else ():
        if not path.is_file():
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, destination)
        except FileNotFoundError:
            continue


def latest_with_checkpoint(attempts: list[Path]) -> Path | None:
    """The newest of the archived attempts (oldest first) that left a checkpoint: an attempt
    that died before its first checkpoint does not hide the one before it."""
    return next((a for a in reversed(attempts) if has_checkpoint(a)), None)


def carried_steps(trial_dir: Path) -> int:
    """How many data points (of the metric with the most) the attempt in `trial_dir` starts
    with, from its carried metrics.jsonl."""
    steps: dict[str, int] = {}
    for point in read_points(Path(trial_dir) / File.METRICS):
        steps[point[Point.METRIC]] = max(steps.get(point[Point.METRIC], 0), int(point[Point.STEP]))
    return max(steps.values(), default=0)
