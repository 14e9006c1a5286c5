"""The canary rollout as a state machine: no clock, no I/O (the router feeds it both).

Blue is the production traffic as it was; green is the new model. Each step gives green
`step`% for `bake_seconds`, judged on green's own requests of that step; an alarm sends all
traffic back to blue at once (RolledBack), the last step passing makes green the only
variant (Promoted).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpt.serving.plan import CanaryPlan, Window, canary_weights, judge

BAKING, ROLLED_BACK, PROMOTED = "Baking", "RolledBack", "Promoted"
STATES = (BAKING, ROLLED_BACK, PROMOTED)


@dataclass
class Canary:
    plan: CanaryPlan
    blue: dict[str, float]
    step_started: float
    state: str = BAKING
    step_index: int = 0
    reason: str = ""
    last_verdict: str = ""

    @property
    def percent(self) -> int:
        return self.plan.steps[self.step_index]

    def weights(self) -> dict[str, float]:
        """The traffic split the router should use now."""
        if self.state == ROLLED_BACK:
            return {**self.blue, self.plan.green: 0.0}
        if self.state == PROMOTED:
            return {**{name: 0.0 for name in self.blue}, self.plan.green: 1.0}
        return canary_weights(self.blue, self.plan.green, self.percent)

    def tick(self, now: float, window: Window) -> str | None:
        """Judges green's window of the current step; returns a log line when the rollout
        moves (next step, rolled back, promoted), else None."""
        if self.state != BAKING:
            return None
        verdict = judge(window, self.plan.thresholds)
        self.last_verdict = verdict.reason
        if verdict.alarm:
            self.state = ROLLED_BACK
            self.reason = f"canary rolled back at step {self.percent}%: {verdict.reason}"
            return self.reason
        if not verdict.judged or now - self.step_started < self.plan.bake_seconds:
            return None  # keep baking: a step passes only after its time, on enough traffic
        passed = f"step {self.percent}% passed ({verdict.reason})"
        if self.step_index + 1 == len(self.plan.steps):
            self.state = PROMOTED
            self.reason = f"canary promoted: {self.plan.green} takes 100% after {passed}"
            return self.reason
        self.step_index += 1
        self.step_started = now
        return f"canary {passed}; {self.plan.green} now gets {self.percent}%"

    def as_dict(self) -> dict:
        return {"state": self.state, "green": self.plan.green, "blue": dict(self.blue),
                "step_percent": self.percent if self.state == BAKING else
                (100 if self.state == PROMOTED else 0),
                "steps": list(self.plan.steps), "step_index": self.step_index,
                "bake_seconds": self.plan.bake_seconds, "reason": self.reason,
                "last_verdict": self.last_verdict,
                "thresholds": {"max_error_rate": self.plan.thresholds.max_error_rate,
                               "max_p99_ms": self.plan.thresholds.max_p99_ms,
                               "min_requests": self.plan.thresholds.min_requests}}
