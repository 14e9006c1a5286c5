"""The tuning jobs `hpt launch` started in the server's experiments folder, as the API shows
them: one view of the machine, whoever started a job.

Such a job has no request of the API's; its record is built from the experiment's own
spec.json, as `hpt export-sagemaker` would write the request (the first objective when
there are several, conditional ranges flattened: what SageMaker can express), created when
the experiment was. The API lists and describes it and its training jobs; it does not stop
or resume it (the launcher that runs it is not the server's: `hpt stop` and `hpt launch
--resume` do).
"""

from __future__ import annotations

import json
from pathlib import Path

from hpt.core.schema import File
from hpt.experiment.api_requests import API_DIR, TuningRecord


def launched_record(folder: Path) -> TuningRecord | None:
    """The read-only record of the experiment in `folder`; None when it is no experiment, or
    one whose spec cannot be shown as a SageMaker request."""
    from hpt.spacefile.model import Spec
    from hpt.spacefile.sagemaker_json.exporting import to_request

    path = Path(folder) / File.SPEC
    try:
        spec = Spec.from_frozen_dict(json.loads(path.read_text()))
        request, _ = to_request(spec, primary=spec.objective.metric, flatten=True)
        created = path.stat().st_mtime
    except Exception:  # noqa: BLE001 - a folder the API cannot show is left out, not fatal
        return None
    return TuningRecord(request, created, launched_by_hpt=True)


def launched_names(experiments: Path, known: set[str]) -> list[str]:
    """The experiments in `experiments` that the API did not create (`known`)."""
    experiments = Path(experiments)
    if not experiments.is_dir():
        return []
    return sorted(p.parent.name for p in experiments.glob(f"*/{File.SPEC}")
                  if p.parent.name not in known and p.parent.name != API_DIR)


def refuse_control(record: TuningRecord, what: str, command: str | None = None) -> str | None:
    """Why the API may not `what` (stop, ...) this job or one of its training jobs, or None
    when it may; `command`: the hpt command that does it (default `hpt WHAT NAME`)."""
    if not record.launched_by_hpt:
        return None
    return (f"Tuning job {record.name} was started with `hpt launch`, not through this API, "
            f"which shows it but does not {what} it; run "
            f"`{command or f'hpt {what} {record.name}'}` instead")
