"""What `hpt serve` will serve, decided before anything starts: pure functions, no I/O.

Variants are named after their training jobs (as SageMaker names production variants of an
endpoint); `best` and trial numbers are only ways of writing them on the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from hpt.core.errors import UserError
from hpt.core.sagemaker_names import MODEL_ARCHIVE
from hpt.core.trial import TrialStatus


@dataclass(frozen=True)
class Job:
    """One training job of the experiment table, as far as serving cares."""
    name: str
    trial_number: int
    status: str
    artifact: str | None


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float | None
    max_p99_ms: float | None
    min_requests: int = 20


@dataclass(frozen=True)
class CanaryPlan:
    green: str
    steps: tuple[int, ...]
    bake_seconds: float
    thresholds: Thresholds


@dataclass(frozen=True)
class ServingPlan:
    variants: dict[str, float]          # production: training job -> weight
    shadow: str | None = None
    canary: CanaryPlan | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # every model served -> tar.gz

    @property
    def models(self) -> list[str]:
        """Every training job that needs a serving process, production first."""
        extra = [m for m in (self.shadow, self.canary.green if self.canary else None) if m]
        return list(self.variants) + [m for m in extra if m not in self.variants]


def parse_weight(text: str, flag: str, spec: str = "best") -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight) or weight < 0:
        raise UserError(f"{flag} {spec}: weight {text!r} is not a finite number >= 0; write "
                        f"e.g. {flag} {spec}=0.9")
    return weight


def parse_assignment(text: str, flag: str) -> tuple[str, float]:
    """`SPEC=WEIGHT` -> (SPEC, WEIGHT)."""
    spec, sep, weight = text.rpartition("=")
    if not sep or not spec.strip():
        raise UserError(f"{flag} {text!r}: expected SPEC=WEIGHT (SPEC: best, a training job "
                        f"name or a trial number), e.g. {flag} best=0.9")
    return spec.strip(), parse_weight(weight.strip(), flag, spec.strip())


def check_weights(weights: dict[str, float], flag: str) -> None:
    for name, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise UserError(f"{flag}: weight of {name!r} is {weight!r}; give a finite number "
                            f">= 0")
    if not weights or sum(weights.values()) <= 0:
        raise UserError(f"{flag}: the weights sum to 0, so no variant would get traffic; give "
                        f"at least one variant a weight > 0")


def resolve_job(spec: str, jobs: list[Job], best: str | None, flag: str) -> Job:
    """`best`, a training job's name or its trial number -> that completed job."""
    if spec == "best":
        if best is None:
            raise UserError(f"{flag} best: no completed training job with an objective value; "
                            f"wait for one (hpt status) or name a training job")
        spec = best
    found = next((j for j in jobs if j.name == spec), None) or next(
        (j for j in jobs if str(j.trial_number) == spec), None)
    if found is None:
        names = ", ".join(j.name for j in jobs[:5]) or "none yet"
        raise UserError(f"{flag} {spec}: no training job {spec!r} in this tuning job (e.g. "
                        f"{names}); pass best, a TrainingJobName or a TrialNumber from "
                        f"`hpt report`")
    if found.status != TrialStatus.COMPLETED or not found.artifact:
        raise UserError(f"{flag} {spec}: training job {found.name} is {found.status}, with no "
                        f"{MODEL_ARCHIVE} to serve; pick a Completed one (hpt report)")
    return found


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        steps = ()
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise UserError(f"--canary-steps {text!r}: give increasing percentages in 1..100, "
                        f"e.g. --canary-steps 10,50,100")
    return steps


def make_plan(jobs: list[Job], best: str | None, *, variants: list[str] = (),
              trial: str | None = None, shadow: str | None = None,
              canary: str | None = None, canary_steps: str | None = None,
              bake_seconds: float | None = None, max_error_rate: float | None = None,
              max_p99_ms: float | None = None, min_requests: int | None = None) -> ServingPlan:
    """The serving plan from the command line's flags; UserError names the flag and the fix.
    The canary's flags left None take their defaults (10,50,100 steps, 60 s, 20 requests)."""
    if canary is None:
        given = [flag for flag, value in (("--canary-steps", canary_steps),
                                          ("--bake-seconds", bake_seconds),
                                          ("--max-error-rate", max_error_rate),
                                          ("--max-p99-ms", max_p99_ms),
                                          ("--min-requests", min_requests)) if value is not None]
        if given:
            raise UserError(f"{' / '.join(given)} describe a canary rollout: add --canary SPEC, "
                            f"or drop them")
    production = _production(jobs, best, variants, trial)
    artifacts = {j.name: j.artifact for j in jobs if j.name in production}
    roles = {name: "a production variant" for name in production}
    shadow_name = None
    if shadow is not None:
        job = _job_for_role("--shadow", shadow, jobs, best, roles)
        shadow_name, roles[job.name], artifacts[job.name] = job.name, "the --shadow", job.artifact
    canary_plan = None
    if canary is not None:
        job = _job_for_role("--canary", canary, jobs, best, roles)
        canary_plan = _canary_plan(job.name, canary_steps, bake_seconds, max_error_rate,
                                   max_p99_ms, min_requests)
        artifacts[job.name] = job.artifact
    return ServingPlan(production, shadow_name, canary_plan, artifacts)


def _job_for_role(flag: str, spec: str, jobs: list[Job], best: str | None,
                  roles: dict[str, str]) -> Job:
    """The job --shadow or --canary names; `roles` (job name -> its role in the plan so far)
    must not hold it: one training job, one role."""
    job = resolve_job(spec, jobs, best, flag)
    if job.name in roles:
        raise UserError(f"{flag} {spec}: {job.name} is already {roles[job.name]}; give {flag} "
                        f"a different training job")
    return job


def _production(jobs: list[Job], best: str | None, variants, trial) -> dict[str, float]:
    """The production variants and their weights (--variant, or --trial, or the best)."""
    if trial is not None and variants:
        raise UserError("--trial and --variant both pick what to serve; use one of them "
                        "(--trial T is --variant T=1)")
    assignments = [parse_assignment(v, "--variant") for v in variants] or [
        (trial if trial is not None else "best", 1.0)]
    production: dict[str, float] = {}
    for spec, weight in assignments:
        flag = "--trial" if trial is not None else "--variant"
        name = resolve_job(spec, jobs, best, flag).name
        if name in production:
            raise UserError(f"--variant {spec}: training job {name} is given twice; give each "
                            f"variant once")
        production[name] = weight
    check_weights(production, "--variant")
    return production


def _canary_plan(green: str, steps: str | None, bake_seconds: float | None,
                 max_error_rate: float | None, max_p99_ms: float | None,
                 min_requests: int | None) -> CanaryPlan:
    steps = "10,50,100" if steps is None else steps
    bake_seconds = 60.0 if bake_seconds is None else bake_seconds
    min_requests = 20 if min_requests is None else min_requests
    if max_error_rate is None and max_p99_ms is None:
        raise UserError("--canary needs a guardrail to judge the new model by: add "
                        "--max-error-rate X (e.g. 0.05) and/or --max-p99-ms Y (e.g. 500)")
    if max_error_rate is not None and not 0 <= max_error_rate <= 1:
        raise UserError(f"--max-error-rate {max_error_rate}: give a fraction in 0..1, "
                        f"e.g. 0.05")
    if max_p99_ms is not None and not (math.isfinite(max_p99_ms) and max_p99_ms > 0):
        raise UserError(f"--max-p99-ms {max_p99_ms}: give a positive number of "
                        f"milliseconds, e.g. 500")
    if not (math.isfinite(bake_seconds) and bake_seconds > 0):
        raise UserError(f"--bake-seconds {bake_seconds}: give a positive number of seconds")
    if min_requests < 1:
        raise UserError(f"--min-requests {min_requests}: give at least 1")
    return CanaryPlan(green, parse_steps(steps), float(bake_seconds),
                      Thresholds(max_error_rate, max_p99_ms, int(min_requests)))


def choose(weights: dict[str, float], rand: Callable[[], float]) -> str:
    """A variant drawn with probability weight/sum; `rand()` is uniform in [0, 1)."""
    live = [(name, w) for name, w in weights.items() if w > 0]
    total = sum(w for _, w in live)
    point = rand() * total
    for name, weight in live:
        point -= weight
        if point < 0:
            return name
    return live[-1][0]  # rounding at the top end


def canary_weights(blue: dict[str, float], green: str, percent: float) -> dict[str, float]:
    """Green gets `percent`% of traffic, the blue variants share the rest as they did
    (weights as fractions, like --variant's)."""
    total = sum(blue.values())
    shares = {name: (100 - percent) / 100 * w / total for name, w in blue.items()}
    return {**shares, green: percent / 100}


@dataclass(frozen=True)
class Window:
    """Green's requests since its current step began."""
    requests: int
    errors: int
    p99_ms: float | None


@dataclass(frozen=True)
class Verdict:
    alarm: bool
    judged: bool        # False: too few requests yet to judge
    reason: str


def judge(window: Window, thresholds: Thresholds) -> Verdict:
    """The guardrail: alarm when green's error rate or p99 passes its threshold, once the
    window holds at least `min_requests` requests (a few early errors prove nothing)."""
    if window.requests < thresholds.min_requests:
        return Verdict(False, False, f"{window.requests} of {thresholds.min_requests} requests "
                                     f"needed to judge")
    rate = window.errors / window.requests
    if thresholds.max_error_rate is not None and rate > thresholds.max_error_rate:
        return Verdict(True, True, f"error rate {rate:.2f} > {thresholds.max_error_rate:g} over "
                                   f"{window.requests} requests")
    if (thresholds.max_p99_ms is not None and window.p99_ms is not None
            and window.p99_ms > thresholds.max_p99_ms):
        return Verdict(True, True, f"p99 {window.p99_ms:.0f} ms > {thresholds.max_p99_ms:g} ms "
                                   f"over {window.requests} requests")
    return Verdict(False, True, f"error rate {rate:.2f}, p99 "
                                f"{window.p99_ms or 0:.0f} ms over {window.requests} requests")
