"""Where a tuning job is also recorded while it runs: MLflow (space.yaml's `tracking:`).

mlflow_plan.py is pure (the target, what runs, params, tags and metrics are made of);
mlflow_sync.py mirrors the experiment folder into the server; follow.py is the follower
process's loop; process.py the launcher's handle on it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable

from hpt.core.errors import UserError
from hpt.tracking.mlflow_plan import mlflow_target


def start_tracking(spec, cli_uri: str | None) -> Callable:
    """Checks the tracking settings now (before anything runs); returns what starts the
    follower once the job's start is journaled: `(store, view) -> TrackingProcess | None`."""
    target = mlflow_target(spec, cli_uri, os.environ)
    if target is None:
        return lambda store, view: None
    if importlib.util.find_spec("mlflow") is None:
        raise UserError(f"{spec.source_path}: tracking.mlflow: the MLflow client is not "
                        f"installed here; pip install mlflow-skinny (or hpt[mlflow])")

    def track(store, view):
        from hpt.tracking.process import TrackingProcess

        return TrackingProcess(store.root, target,
                               lambda event, **fields: store.append(event, **fields),
                               view.print)
    return track


def track_folder(root, cli_uri: str | None, seconds: float) -> tuple[bool, list[str]]:
    """`hpt track`: sends what the server lacks of a job's folder (the launcher's lock held,
    so no launch writes it meanwhile). Returns whether all is there, and what to print."""
    from hpt.experiment.lock import WriterLock
    from hpt.experiment.store import ExperimentStore
    from hpt.spacefile import Spec
    from hpt.tracking.follow import catch_up
    from hpt.tracking.mlflow_sync import tracked_before
    from hpt.tracking.process import tracking_message

    store = ExperimentStore(root)
    spec = Spec.from_frozen_dict(store.read_spec())
    target = mlflow_target(spec, cli_uri, os.environ) or tracked_before(root)
    if target is None:
        raise UserError(f"{root}: its space has no tracking.mlflow and it was never tracked; "
                        f"pass --mlflow-uri URI")
    lines: list[str] = []

    def report(kind, **fields):
        store.append(f"tracking_{kind}", uri=target.uri, **fields)
        said = tracking_message(kind, fields, target, root.name)
        if said:
            lines.append(said)
    with WriterLock(root, "track"):
        final = catch_up(root, target, report, seconds)
        report("ended", **final)
        store.close()
    return final["complete"], lines

