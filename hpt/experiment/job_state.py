"""The state of a tuning job as SageMaker names it, from its journal and its writer lock
(pure: the caller reads the journal and asks `lock.holder`).

Status: InProgress while its launcher holds the lock; once it ended, Completed, Stopped (it
can be resumed), or Failed when it ran and no training job completed. A launcher that died
without ending the job leaves it Stopped with reason LauncherLost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpt.core.schema import Event, JOB_STARTS, Key
from hpt.core.trial import TrialStatus

# A tuning job's status has the same names as a training job's (SageMaker's too).
IN_PROGRESS, COMPLETED, FAILED, STOPPED = (TrialStatus.IN_PROGRESS, TrialStatus.COMPLETED,
                                           TrialStatus.FAILED, TrialStatus.STOPPED)

# Why a tuning job ended: the `reason` of its job_ended event (SageMaker's names where
# SageMaker has one), and what each means for a reader.
MAX_TRIALS_REACHED = "MaxNumberOfTrainingJobsReached"
MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
TARGET_REACHED = "TargetObjectiveMetricValueReached"
NOT_IMPROVING = "BestObjectiveNotImproving"
CONVERGED = "ConvergenceDetected"
STOP_REQUESTED = str(STOPPED)  # `hpt stop` or SIGTERM (the journal has always said Stopped)
INTERRUPTED = "Interrupted"  # Ctrl-C
LAUNCHER_LOST = "LauncherLost"  # no job_ended: the launcher died
END_REASONS = {
    MAX_TRIALS_REACHED: "every training job it was allowed ran",
    MAX_RUNTIME_EXCEEDED: "limits.max_runtime_seconds was reached",
    TARGET_REACHED: "a training job reached completion.target_objective",
    NOT_IMPROVING: "completion.max_trials_not_improving jobs in a row did not improve the best",
    CONVERGED: "the best objective converged (completion.convergence)",
    STOP_REQUESTED: "stopped by `hpt stop` or SIGTERM",
    INTERRUPTED: "interrupted by Ctrl-C",
    LAUNCHER_LOST: "its launcher died before ending it",
}
# Ends after which `hpt launch --resume` has work to continue.
RESUMABLE = (STOP_REQUESTED, INTERRUPTED, LAUNCHER_LOST)


@dataclass(frozen=True)
class JobState:
    status: str
    reason: str | None = None  # an END_REASONS key, once the job ended
    failure: str | None = None  # why a Failed job failed
    writer: dict[str, Any] | None = None  # the live holder of the lock: {"pid", "command"}
    start: dict[str, Any] = field(default_factory=dict)  # the latest job_started/_resumed
    lost_why: str | None = None  # LauncherLost: what its launcher said when it could not go on

    def describe(self) -> str:
        """One line: `InProgress (launcher running, pid 12)`, `Failed: no training job
        completed (3 Failed); every training job it was allowed ran`."""
        if self.status == IN_PROGRESS:
            pid = (self.writer or {}).get("pid")
            return f"{IN_PROGRESS} (launcher running" + (f", pid {pid})" if pid else ")")
        text = self.status + (f": {self.failure}" if self.failure else "")
        if self.reason:
            words = END_REASONS.get(self.reason, self.reason)
            if self.reason == LAUNCHER_LOST and self.lost_why:
                words = f"its launcher could not go on: {self.lost_why}"
            named = words if self.reason == self.status else f"{self.reason}: {words}"
            text += f"; {words}" if self.failure else f" ({named})"
        return text


def job_state(events: list[dict[str, Any]], writer: dict[str, Any] | None) -> JobState:
    """`events`: the journal; `writer`: `lock.holder(folder)`."""
    starts = [i for i, e in enumerate(events) if e.get(Key.EVENT) in JOB_STARTS]
    start = events[starts[-1]] if starts else {}
    ended = next((e for e in events[starts[-1]:] if e.get(Key.EVENT) == Event.JOB_ENDED), None) \
        if starts else None
    launching = writer is not None and writer.get("command", "launch") == "launch"
    # A launcher that has the lock but not yet its job_resumed line is a new run starting.
    if launching and (ended is None or writer.get("pid") != start.get("pid")):
        return JobState(IN_PROGRESS, writer=writer, start=start)
    if ended is None:
        said = [e.get(Key.WHY) for e in events[starts[-1]:]
                if e.get(Key.EVENT) == Event.LAUNCHER_FAILED] \
            if starts else []
        return JobState(STOPPED, LAUNCHER_LOST, writer=writer, start=start,
                        lost_why=said[-1] if said else None)
    reason = ended.get(Key.REASON)
    if reason in (STOP_REQUESTED, INTERRUPTED):
        return JobState(STOPPED, reason, writer=writer, start=start)
    counts = ended.get("counts") or {}
    if not counts.get(COMPLETED):
        return JobState(FAILED, reason, no_completed_job(counts), writer, start)
    return JobState(COMPLETED, reason, writer=writer, start=start)


def no_completed_job(counts: dict[str, int]) -> str:
    """`no training job completed (3 Failed, 1 Stopped)`."""
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n) or "none ran"
    return f"no training job completed ({shown})"
