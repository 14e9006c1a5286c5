"""The launcher's side of MLflow tracking: starts the follower process
(hpt/tracking/follow.py), journals and prints what it reports, and at the job's end gives it
a bounded time to send what is left.

The job never waits on the server: the follower reads the folder on its own, and the end
waits at most FINISH_SECONDS (the follower's flush, and a little for its exit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from hpt.core.schema import Event, File
from hpt.tracking.follow import FINISH, FLUSH_SECONDS
from hpt.tracking.mlflow_plan import MlflowTarget

FINISH_SECONDS = FLUSH_SECONDS + 5.0
FOLLOWER_LOG = File.MLFLOW_FOLLOWER_LOG  # its stderr, in the experiment folder


def tracking_message(kind: str, report: dict, target: MlflowTarget, name: str) -> str | None:
    """The console line of one report of the follower (None: journaled only)."""
    if kind == "started":
        return (f"MLflow: tracking in experiment {target.experiment!r} at {target.uri} "
                f"(parent run {report['parent_run_id']})")
    if kind == "unavailable":
        return (f"MLflow: {target.uri} does not answer ({report['error'][:200]}); the job goes "
                f"on, and what it records is sent once the server answers")
    if kind == "recovered":
        return f"MLflow: {target.uri} answers again after {report['after_seconds']:.0f} s"
    if kind == "flushing":
        return (f"MLflow: sending the last {report['points']} data points to {target.uri} "
                f"(at the server's pace; at most {FLUSH_SECONDS:.0f} s)")
    if kind == "refused":
        return f"MLflow refused {report['what']}: {report['error'][:300]}"
    if kind == "ended" and report.get("complete") and not (
            report.get("written_runs", 1) or report["sent_points"]):
        return (f"MLflow: nothing to send: {target.uri} has all of it already "
                f"({report['runs']} training job runs)")
    if kind == "ended" and report.get("complete"):
        return (f"MLflow: {report['runs']} training job runs in {target.uri} "
                f"({report.get('written_runs', report['runs'])} of them created or ended now) "
                f"and {report['sent_points']} data points sent")
    if kind == "ended":
        left = [f"{report['unsent_points']} data points"] if report.get("unsent_points") else []
        if report.get("runs_not_ended"):
            left.append(f"the end of {len(report['runs_not_ended'])} runs")
        if report.get("parent_not_ended"):
            left.append("the tuning job's end")
        return (f"MLflow: not written to {target.uri}: {', '.join(left) or 'unknown'} "
                f"({report.get('error') or 'no answer'}); they are kept in the job's folder: "
                f"`hpt track {name}` sends them once the server answers")
    return None


class TrackingProcess:
    """The follower of one launch. `record(event, **fields)` journals; `say(line)` prints."""

    def __init__(self, root: Path, target: MlflowTarget, record, say):
        self.root, self.target, self.record, self.say = Path(root), target, record, say
        self.final: dict | None = None
        log = open(self.root / FOLLOWER_LOG, "ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hpt.tracking.follow", str(self.root), "--uri", target.uri,
             "--experiment", target.experiment],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,  # Ctrl-C is the launcher's to handle: it says finish
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        self._reader = threading.Thread(target=self._read, name="hpt-mlflow", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            kind = report.pop("kind", "")
            if kind == "ended":
                self.final = report
                continue  # journaled by finish(), with the job's end
            self.record(f"tracking_{kind}", uri=self.target.uri, **report)
            said = tracking_message(kind, report, self.target, self.root.name)
            if said:
                self.say(said)

    def finish(self) -> dict:
        """After the job's end is journaled: the follower sends what is left (bounded), and
        what it could not send is journaled and said."""
        try:
            self._proc.stdin.write(FINISH + "\n")
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self._proc.wait(timeout=FINISH_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=2.0)
        final = self.final or {"complete": False, "runs": 0, "sent_points": 0,
                               "error": f"the follower ended with exit code "
                                        f"{self._proc.returncode} (see {FOLLOWER_LOG})"}
        self.record(Event.TRACKING_ENDED, uri=self.target.uri, **final)
        self.say(tracking_message("ended", final, self.target, self.root.name))
        return final
