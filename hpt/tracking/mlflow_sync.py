"""MLflow tracking, the I/O: mirrors one experiment folder into an MLflow server, while the job
runs and afterwards (`hpt track`).

It reads only what the launcher writes -- the journal and each training job's metrics.jsonl --
and sends what MLflow lacks, batched (up to 1000 data points a request, once a second). So it
never touches a trial, and a server that is slow or down never slows the job: what it has not
sent is still in the folder, and goes once the server answers. What it created is kept in
`mlflow.json` beside the journal (the run ids, and the journal line each run's end came
from), so a resumed job, or `hpt track` later, continues the same runs; a run's points already
in MLflow are read back first and not sent again.

During a launch it runs as its own process (hpt/tracking/process.py starts it), so the MLflow
client's import, threads and retries stay out of the launcher; each line it prints is a report
the launcher journals.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpt.core.sagemaker_names import MODEL_ARCHIVE
from hpt.core.schema import JOB_STARTS, Event, File, Key
from hpt.experiment.data_points import parse_points, read_points
from hpt.experiment.job_state import job_state
from hpt.experiment.store import JOURNAL, SPEC, attempts, write_json_atomic
from hpt.experiment.table import trial_rows
from hpt.tracking import mlflow_plan as plan
from hpt.tracking.mlflow_plan import MlflowTarget, timestamp_ms

STATE_FILE = File.MLFLOW_STATE
# MLflow's error codes that refuse one request for what it carries (retrying cannot help);
# any other failure means the server is not answering: everything is kept and sent later.
REFUSALS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
            "INVALID_STATE", "BAD_REQUEST", "PERMISSION_DENIED"}
# The MLflow client's own retries (7, with backoff: minutes) are off and its requests bounded:
# the follower retries itself, without holding anything up.
CLIENT_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}

Report = Callable[..., None]


class PointsFollower:
    """Follows a training job's metrics.jsonl across its attempts: the open file is read to
    its end even after a new attempt moved it aside, then the new file from its start.
    `earlier`: files read once first (the archived attempts, when a run is picked up again)."""

    def __init__(self, path: Path, earlier: list[Path] = ()):
        self.path = Path(path)
        self._earlier = list(earlier)
        self._file = None
        self._partial = b""

    def read(self) -> list[dict]:
        points: list[dict] = []
        while self._earlier:
            points += read_points(self._earlier.pop(0))
        while True:
            if self._file is None:
                try:
                    self._file = open(self.path, "rb")
                except FileNotFoundError:
                    return points
            *lines, self._partial = (self._partial + self._file.read()).split(b"\n")
            points += parse_points(lines)
            try:
                moved = os.stat(self.path).st_ino != os.fstat(self._file.fileno()).st_ino
            except FileNotFoundError:
                moved = False  # between two attempts: the old file may still grow
            if not moved:
                return points
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._partial = None, b""


@dataclass
class JobRun:
    """One training job's run: what is known of it and what MLflow still lacks."""
    name: str
    follower: PointsFollower
    run_id: str | None = None
    ready: bool = False             # its params are logged
    ended_line: int | None = None   # the journal line of the end it was given
    end_line: int | None = None     # an end still to give it
    reopen: bool = False            # it runs again after an end: back to RUNNING
    history_loaded: bool = False
    seen: set = field(default_factory=set)
    pending: list = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.ended_line is not None and self.end_line is None

    def take(self, points: list[dict]) -> None:
        for point in points:
            key = plan.point_key(point)
            if key not in self.seen:
                self.seen.add(key)
                self.pending.append(key)


class MlflowSync:
    """One experiment folder -> one MLflow experiment. `step()` does one pass; it raises what
    the client raises when the server does not answer (nothing is lost: call it again)."""

    def __init__(self, root: Path, target: MlflowTarget, client, report: Report):
        self.root, self.target, self.client, self.report = Path(root), target, client, report
        self.spec = json.loads((self.root / SPEC).read_text())
        self.state = _load_state(self.root / STATE_FILE, target)
        # The events runs are made of, by training job, and the tuning job's own; a running
        # trial's progress events (one per objective point) are not kept: the records have it.
        self.job_events: dict[str, list[dict]] = {}
        self.tuning_events: list[dict] = []
        self._lines = 0
        self._offset, self._partial = 0, b""
        self.jobs: dict[str, JobRun] = {}
        self.parent_end_line: int | None = None
        self.parent_reopen = False
        self.sent_points = 0
        self.written_runs = 0  # runs this sync created or ended (the points are sent_points)
        self.refused: list[str] = []
        self.lock = None  # the follower lock's open file (follow.py), while it syncs

    # -- reading the folder ---------------------------------------------------------------

    def step(self, read_journal: bool = True) -> None:
        """`read_journal` False: what the journal said so far only (a follower whose launcher
        died sends what it has; the launcher that resumes the job has its own follower)."""
        if read_journal:
            self._read_journal()
        for job in self.jobs.values():
            if not job.done:
                job.take(job.follower.read())
        self._send()

    def _read_journal(self) -> None:
        with open(self.root / JOURNAL, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            self._lines += 1
            if event.get(Key.EVENT) == Event.TRIAL_PROGRESS:
                continue
            name = event.get(Key.TRAINING_JOB_NAME)
            if name is None:
                self.tuning_events.append(event)
            else:
                self.job_events.setdefault(name, []).append(event)
            self._on_event(event, self._lines)

    def _on_event(self, event: dict, line: int) -> None:
        kind, name = event.get(Key.EVENT), event.get(Key.TRAINING_JOB_NAME)
        parent = self.state["parent"]
        if kind in JOB_STARTS and (parent.get("ended_line") or 0) < line:
            self.parent_reopen = parent.get("ended_line") is not None
            self.parent_end_line = None
        elif kind == Event.JOB_ENDED and (parent.get("ended_line") or 0) < line:
            self.parent_end_line = line
        elif kind == Event.TRIAL_STARTED:
            job = self.jobs.get(name) or self._job(name)
            if job.ended_line is not None and job.ended_line < line:
                job.reopen, job.ended_line = True, None
            if job.end_line is not None and job.end_line < line:
                job.end_line = None  # it runs again before its end was sent: a later end comes
        elif kind == Event.TRIAL_ENDED and name in self.jobs:
            job = self.jobs[name]
            if job.ended_line is None or job.ended_line < line:
                job.end_line = line

    def _job(self, name: str) -> JobRun:
        known = self.state["runs"].get(name, {})
        trial_dir = self.root / name
        # Attempts archived before this follower met the job may hold points MLflow lacks.
        earlier = [a / File.METRICS for a in attempts(trial_dir)]
        job = JobRun(name, PointsFollower(trial_dir / File.METRICS,
                                          [p for p in earlier if p.is_file()]),
                     run_id=known.get("run_id"), ready=known.get("ready", False),
                     ended_line=known.get("ended_line"))
        job.history_loaded = job.run_id is None
        self.jobs[name] = job
        return job

    # -- sending ----------------------------------------------------------------------------

    def _send(self) -> None:
        if not any(e.get(Key.EVENT) in JOB_STARTS for e in self.tuning_events[:1]):
            return  # the launcher has not recorded the start yet
        parent_id = self._parent()
        for job in self.jobs.values():
            if job.done and not job.reopen:
                continue
            self._open_run(job, parent_id)
            self._send_points(job)
            if job.end_line is not None:
                self._end_run(job, self._row(job.name))
        if self.parent_end_line is not None and all(j.done for j in self.jobs.values()):
            self._end_parent(parent_id)

    def _row(self, name: str) -> dict:
        """The training job's row, as the table has it (its events folded)."""
        return trial_rows(self.job_events[name])[0]

    def _parent(self) -> str:
        parent = self.state["parent"]
        if self.state.get("experiment_id") is None:
            found = self.client.get_experiment_by_name(self.target.experiment)
            self.state["experiment_id"] = found.experiment_id if found is not None else \
                self.client.create_experiment(self.target.experiment)
            self._save()
        if parent.get("run_id") is None:
            start = self.tuning_events[0]
            run = self.client.create_run(self.state["experiment_id"],
                                         start_time=timestamp_ms(start["time"]),
                                         tags=plan.parent_tags(self.spec["name"],
                                                               str(self.root)))
            parent["run_id"] = run.info.run_id
            self._save()
        if not parent.get("ready"):
            start = self.tuning_events[0]
            self._log(parent["run_id"], params=plan.parent_params(self.spec, start))
            self._artifact(parent["run_id"], self.root / SPEC)
            parent["ready"] = True
            self._save()
            self.report("started", experiment_id=self.state["experiment_id"],
                        parent_run_id=parent["run_id"])
        if self.parent_reopen:
            self.client.update_run(parent["run_id"], status="RUNNING")
            self.parent_reopen = False
        return parent["run_id"]

    def _open_run(self, job: JobRun, parent_id: str) -> None:
        row = next(e for e in self.job_events[job.name] if e[Key.EVENT] == Event.TRIAL_STARTED)
        if job.run_id is None:
            run = self.client.create_run(self.state["experiment_id"],
                                         start_time=timestamp_ms(row[Key.TIME]),
                                         tags=plan.child_tags(row, parent_id))
            job.run_id = run.info.run_id
            self.written_runs += 1
            self._save()
        if not job.ready:
            self._log(job.run_id, params=plan.child_params(row.get(Key.HYPERPARAMETERS, {})))
            job.ready = True
            self._save()
        if job.reopen:
            self.client.update_run(job.run_id, status="RUNNING")
            job.reopen = False
        if not job.history_loaded:  # picked up again: what MLflow has is not sent twice
            already = self._already(job)
            job.seen |= already
            job.pending = [k for k in job.pending if k not in already]
            job.history_loaded = True

    def _already(self, job: JobRun) -> set:
        return {(m.key, m.step, m.value, m.timestamp) for name in
                {plan.metric_key(d["name"]) for d in self.spec["metric_definitions"]}
                for m in self.client.get_metric_history(job.run_id, name)}

    def _send_points(self, job: JobRun) -> None:
        from mlflow.entities import Metric

        while job.pending:
            batch = job.pending[:plan.MAX_METRICS_PER_BATCH]
            self._log(job.run_id, metrics=[Metric(key, value, stamp, step)
                                           for key, step, value, stamp in batch])
            del job.pending[:len(batch)]
            self.sent_points += len(batch)

    def _end_run(self, job: JobRun, row: dict) -> None:
        from mlflow.entities import Metric

        job.take(job.follower.read())  # its last lines: they were written before its end
        self._send_points(job)
        end = timestamp_ms(row.get(Key.END_TIME) or time.time())
        self._log(job.run_id, tags=plan.ended_tags(row),
                  metrics=[Metric(k, v, end, 0) for k, v in plan.ended_metrics(row).items()])
        model = self.root / job.name / MODEL_ARCHIVE
        if model.is_file():
            self._artifact(job.run_id, model)
        self.client.set_terminated(job.run_id, status=plan.run_status(row[Key.STATUS]),
                                   end_time=end)
        job.ended_line, job.end_line = job.end_line, None
        job.follower.close()
        self.written_runs += 1
        self._save()

    def _end_parent(self, parent_id: str) -> None:
        from mlflow.entities import Metric

        from hpt.report.page import render_html

        ended = next(e for e in reversed(self.tuning_events) if e[Key.EVENT] == Event.JOB_ENDED)
        best = ended.get(Key.BEST_TRAINING_JOB)
        status, tags, metrics = plan.parent_end(
            job_state(self.tuning_events, writer=None), ended.get("counts") or {}, best,
            self._row(best).get(Key.OBJECTIVE_VALUE) if best in self.job_events else None)
        end = timestamp_ms(ended[Key.TIME])
        self._log(parent_id, tags=tags, metrics=[Metric(k, v, end, 0)
                                                 for k, v in metrics.items()])
        with tempfile.TemporaryDirectory() as folder:
            page = Path(folder) / File.REPORT_HTML
            page.write_text(render_html(self.root))
            self._artifact(parent_id, page)
        self.client.set_terminated(parent_id, status=status, end_time=end)
        self.state["parent"]["ended_line"] = self.parent_end_line
        self.parent_end_line = None
        self._save()

    def _log(self, run_id: str, params: dict | None = None, tags: dict | None = None,
             metrics: list | None = None) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, v) for k, v in (params or {}).items()]
        tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        metrics = metrics or []
        if not params and len(tags) <= plan.MAX_TAGS_PER_BATCH and \
                len(tags) + len(metrics) <= plan.MAX_METRICS_PER_BATCH:
            # A run's end in one request (each request costs the server a transaction).
            self._refusable(lambda: self.client.log_batch(run_id, metrics=metrics, tags=tags),
                            "the run's end")
            return
        for chunk in plan.chunks(params + tags, plan.MAX_TAGS_PER_BATCH):
            self._refusable(lambda: self.client.log_batch(
                run_id, params=[p for p in chunk if isinstance(p, Param)],
                tags=[t for t in chunk if isinstance(t, RunTag)]), "params and tags")
        if metrics:
            self._refusable(lambda: self.client.log_batch(run_id, metrics=metrics),
                            f"{len(metrics)} data points")

    def _artifact(self, run_id: str, path: Path) -> None:
        self._refusable(lambda: self.client.log_artifact(run_id, str(path)), path.name)

    def _refusable(self, call: Callable[[], Any], what: str) -> None:
        """A request MLflow refuses for what it carries is said once and dropped; any other
        failure propagates (the server is not answering: retried later)."""
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the client raises several kinds
            if getattr(exc, "error_code", None) not in REFUSALS:
                raise
            self.refused.append(f"{what}: {str(exc)[:300]}")
            self.report("refused", what=what, error=str(exc)[:1000])

    # -- state ----------------------------------------------------------------------------

    def _save(self) -> None:
        self.state["runs"] = {**self.state["runs"], **{
            j.name: {"run_id": j.run_id, "ready": j.ready, "ended_line": j.ended_line}
            for j in self.jobs.values() if j.run_id is not None}}
        write_json_atomic(self.root / STATE_FILE, self.state)

    def unsent(self) -> dict[str, Any]:
        """What MLflow still lacks of what the folder holds (after the last pass)."""
        return {"points": sum(len(j.pending) for j in self.jobs.values()),
                "runs_not_ended": [j.name for j in self.jobs.values() if j.end_line is not None],
                "parent_not_ended": self.parent_end_line is not None}

    def complete(self) -> bool:
        left = self.unsent()
        return not (left["points"] or left["runs_not_ended"] or left["parent_not_ended"])


def _load_state(path: Path, target: MlflowTarget) -> dict[str, Any]:
    """The runs an earlier follower made for this server and experiment (another target
    starts afresh: its runs are elsewhere)."""
    fresh = {"uri": target.uri, "experiment": target.experiment, "experiment_id": None,
             "parent": {}, "runs": {}}
    state = _read_state(path)
    same = state.get("uri") == target.uri and state.get("experiment") == target.experiment
    return state if same else fresh


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def tracked_before(root: Path) -> MlflowTarget | None:
    """The server and experiment the folder was tracked in (a launch with --mlflow-uri)."""
    state = _read_state(Path(root) / STATE_FILE)
    if not state.get("uri") or not state.get("experiment"):
        return None
    return MlflowTarget(state["uri"], state["experiment"])
