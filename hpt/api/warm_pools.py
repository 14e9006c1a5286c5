"""Warm pools of the training jobs `hpt api` runs on their own, as SageMaker's managed warm
pools (ResourceConfig.KeepAlivePeriodInSeconds).

A job that asks for one keeps its hosts after it ends: its runner process (hpt/api/
training_runner.py) stays, with its Ray connection, its placement group and its host actors,
for KeepAlivePeriodInSeconds. A later training job that matches it (the same role, resource
configuration, network settings and hpt's own placement of the hosts) and asks for a warm
pool too runs in that process instead of a new one, so it starts without a new process, a new
connection to Ray and new actors (scripts/bench_warm_pools.py measures how much sooner).

Who decides what a pool does next is settled by one file, the pool's handoff, created once
(O_EXCL): by the server when it hands the pool a job or ends it (UpdateTrainingJob with 0, a
clean stop), or by the runner when the period is over. Whoever creates it first wins; the
other side reads it. The pool's status, as DescribeTrainingJob says it, is its job folder's
warm-pool.json, written by the runner (and by the server for a pool whose runner is gone).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

KEEP_ALIVE = "KeepAlivePeriodInSeconds"
MAX_KEEP_ALIVE_SECONDS = 3600  # SageMaker's limit without a quota increase
STATUS_FILE = "warm-pool.json"
HANDOFF_FILE = "warm-pool-handoff.json"
KEEP_ALIVE_FILE = "warm-pool-keep-alive.json"  # UpdateTrainingJob's new period

IN_USE, AVAILABLE, REUSED, TERMINATED = "InUse", "Available", "Reused", "Terminated"
# The request's fields a job must share with the pool's job to run on it (SageMaker's
# matching rule); hpt adds the hosts' placement it derives from the request.
MATCHED_FIELDS = ("RoleArn", "VpcConfig", "EnableNetworkIsolation",
                  "EnableInterContainerTrafficEncryption")


def keep_alive_seconds(definition: dict[str, Any]) -> int:
    """ResourceConfig.KeepAlivePeriodInSeconds of a training job's definition (0: none)."""
    return int((definition.get("ResourceConfig") or {}).get(KEEP_ALIVE) or 0)


def keep_alive_refusal(definition: dict[str, Any]) -> str | None:
    seconds = keep_alive_seconds(definition)
    if 0 <= seconds <= MAX_KEEP_ALIVE_SECONDS:
        return None
    return (f"ResourceConfig.{KEEP_ALIVE}: {seconds}; give 0 to {MAX_KEEP_ALIVE_SECONDS} "
            f"seconds")


def pool_key(definition: dict[str, Any], placement: dict[str, Any]) -> str:
    """What two training jobs must share for one to run on the other's warm pool (pure):
    SageMaker's matching fields, the resource configuration but its period, and `placement`,
    hpt's hosts as the job's runner holds them (runtime, bundles, ports)."""
    resources = {k: v for k, v in (definition.get("ResourceConfig") or {}).items()
                 if k != KEEP_ALIVE}
    matched = {field: definition.get(field) for field in MATCHED_FIELDS}
    return json.dumps({"resources": resources, **matched, "placement": placement},
                      sort_keys=True, default=str)


def warm_pool_status(state: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """DescribeTrainingJob's WarmPoolStatus from the pool's status file (pure)."""
    if not state:
        return None
    status = {"Status": state["status"]}
    since = state.get("since")
    if since is not None:
        until = state.get("ended", now)
        status["ResourceRetainedBillableTimeInSeconds"] = max(0, int(until - since))
    if state.get("reused_by"):
        status["ReusedByJob"] = state["reused_by"]
    return status


class WarmPool:
    """The warm pool of one training job, through the files of its folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    # -- its status --------------------------------------------------------------------

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return None

    def write(self, status: str, **fields: Any) -> None:
        from hpt.experiment.store import write_json_atomic

        write_json_atomic(self.folder / STATUS_FILE, {**(self.state() or {}),
                                                      "status": status, **fields})

    def is_available(self) -> bool:
        return (self.state() or {}).get("status") == AVAILABLE and \
            not (self.folder / HANDOFF_FILE).exists()

    # -- the one decision of what it does next -------------------------------------------

    def claim(self, job: str | None, why: str = "") -> bool:
        """Hands the pool `job` (a training job's name), or ends it (None, with why): True
        when this call decided, False when the other side had already."""
        try:
            fd = os.open(self.folder / HANDOFF_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            json.dump({"job": job, "why": why, "time": time.time()}, out)
        return True

    def handoff(self) -> dict[str, Any] | None:
        """The decision, once it is complete (a claim writes it right after creating it)."""
        try:
            return json.loads((self.folder / HANDOFF_FILE).read_text())
        except (OSError, ValueError):
            return None

    def set_keep_alive(self, seconds: int) -> None:
        from hpt.experiment.store import write_json_atomic

        write_json_atomic(self.folder / KEEP_ALIVE_FILE, {"seconds": seconds,
                                                          "time": time.time()})

    # -- the runner's side ----------------------------------------------------------------

    def wait(self, seconds: int, poll: float = 0.05) -> str | None:
        """Called by the pool's runner once its job ended: Available until a job is handed
        over (its name is returned, the pool Reused) or the period is over (None, the pool
        Terminated). UpdateTrainingJob may change the period meanwhile."""
        since = time.time()
        self.write(AVAILABLE, since=since, until=since + seconds)
        while True:
            decided = self.handoff()
            if decided is None:
                until = since + self._keep_alive(seconds)
                if time.time() < until:
                    time.sleep(poll)
                    continue
                self.claim(None, f"its {KEEP_ALIVE} ended")
                continue  # read back what was decided: the server may have been first
            ended = time.time()
            if decided.get("job"):
                self.write(REUSED, ended=ended, reused_by=decided["job"])
                return decided["job"]
            self.write(TERMINATED, ended=ended, why=decided.get("why"))
            return None

    def _keep_alive(self, seconds: int) -> int:
        try:
            return int(json.loads((self.folder / KEEP_ALIVE_FILE).read_text())["seconds"])
        except (OSError, ValueError, KeyError):
            return seconds

    def terminate_if_left(self, why: str) -> None:
        """The server's side, for a pool whose runner is gone (it died, or the server did):
        whatever its file said, it is Terminated."""
        state = self.state()
        if state and state.get("status") in (IN_USE, AVAILABLE):
            self.write(TERMINATED, ended=time.time(), why=why)
