"""`hpt serve`: plan, bind, start the serving programs, run the router until a signal.

Order matters for "bad input starts nothing": everything is resolved and the router's port
is bound before any serving program starts.
"""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import socket
import time
from pathlib import Path

from hpt.core.errors import UserError
from hpt.core.sagemaker_names import MODEL_ARCHIVE
from hpt.core.schema import Column
from hpt.experiment.store import SPEC
from hpt.experiment.table import load_table, resolve_experiment
from hpt.serving.backends import (entry_point_of, serving_container, start_backends,
                                  stop_backends)
from hpt.serving.plan import Job, ServingPlan, make_plan
from hpt.core.trial import TrialStatus


class _Terminated(BaseException):
    """SIGTERM while the serving programs start: stop them, then end."""


def jobs_of(root: Path) -> list[Job]:
    df = load_table(root)
    return [Job(str(r.TrainingJobName), int(r.TrialNumber), str(r.TrainingJobStatus),
                r.ModelArtifact if isinstance(r.ModelArtifact, str) else None)
            for r in df.itertuples(index=False)]


def plan_for(name: str, experiments_dir, **flags) -> tuple[Path, ServingPlan, list[Job],
                                                         str | None]:
    root = resolve_experiment(name, experiments_dir)
    jobs = jobs_of(root)
    if not any(j.status == TrialStatus.COMPLETED and j.artifact for j in jobs):
        raise UserError(f"{name}: no completed training job with a {MODEL_ARCHIVE} yet; wait for "
                        f"one (hpt status {name}) or launch the tuning job")
    best_name = _best_name(root, name, flags.pop("pick", None), flags.pop("weights", None),
                           flags)
    return root, make_plan(jobs, best_name, **flags), jobs, best_name


def _best_name(root: Path, name: str, pick: str | None, weights: str | None,
               flags: dict) -> str | None:
    """What `best` means for this job: its best trial, or the one --pick/--weights choose
    from a multi-objective job's Pareto front (which has no single best without a rule)."""
    from hpt.report.summary import best_trial, front_trials, picked_trial, said_front

    several = len(json.loads((root / SPEC).read_text()).get("objectives") or []) > 1
    if pick is None and weights is None and not several:
        best = best_trial(root)
        return best[Column.TRAINING_JOB_NAME] if best else None
    front = said_front(front_trials(root))
    if pick is not None or weights is not None:
        chosen = picked_trial(root, None, pick, weights)
        if chosen is None:
            raise UserError(f"--pick {pick}: no training job of the Pareto front passes it "
                            f"(the front: {front}); loosen the rule")
        return chosen[Column.TRAINING_JOB_NAME]
    specs = [v.rpartition("=")[0] or v for v in flags.get("variants") or []]
    if (flags.get("trial") is None and not specs) or "best" in [
            *specs, flags.get("shadow"), flags.get("canary")]:
        raise UserError(f"{name}: a multi-objective tuning job has no single best model; choose "
                        f"one of its Pareto front with --pick 'METRIC<=X' or --weights "
                        f"'OBJECTIVE=W,...', or name it with --trial (the front: {front})")
    return None


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: a port is 0-65535 (0: any free port); e.g. --port 8080")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it every response waits out the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: {host}:{port} is already in use; pick another "
                            f"--port (or stop what listens there)") from None
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
                        f"use --host 127.0.0.1 and a free --port") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def signal_capturing_server():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a signal ends serve() and is remembered, not re-raised: the
        caller still has serving programs to stop."""

        signals: list[int] = []

        def install_signal_handlers(self) -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)

        def _on_signal(self, sig, frame) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            self.signals.append(sig)

        def capture_signals(self):  # uvicorn >= 0.29 installs handlers here
            import contextlib

            self.install_signal_handlers()
            return contextlib.nullcontext()

    return Server


def serve(name: str, experiments_dir=None, *, host: str = "127.0.0.1", port: int = 8080,
          entry_point: str | None = None, start_timeout: float = 120.0, say=print,
          runtime: str | None = None, image: str | None = None,
          container_engine: str = "docker", **flags) -> int:
    """Serves until SIGINT (returns 130) or SIGTERM (returns 0)."""
    import uvicorn

    root, plan, jobs, best_name = plan_for(name, experiments_dir, **flags)
    frozen = json.loads((root / SPEC).read_text())
    container = serving_container(frozen, runtime, image, container_engine)
    if container and entry_point:
        raise UserError(f"--entry-point {entry_point}: a local serving program; in a container "
                        f"the image's `serve` runs: drop --entry-point or use --runtime local")
    entry = None if container else entry_point_of(frozen, entry_point)
    sock = bind(host, port)
    serving_dir = root / "serving"
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    backends = {}
    router = None
    try:
        url = f"http://{host}:{sock.getsockname()[1]}"
        program = f"{container[0]} run {container[1]} serve" if container else entry
        say(f"hpt serve: starting {len(plan.models)} serving program(s) ({program})")
        backends = start_backends(serving_dir, entry, plan.artifacts, timeout=start_timeout,
                                  container=container)
        router = _router(plan, jobs, best_name, backends, serving_dir, say)
        _announce(name, url, plan, jobs, router, backends, serving_dir, say)
        server = signal_capturing_server()(uvicorn.Config(
            router.app, log_level="warning", access_log=False, lifespan="on",
            timeout_keep_alive=30, timeout_graceful_shutdown=10))
        server.signals = []
        asyncio.run(server.serve(sockets=[sock]))
        return 130 if signal.SIGINT in server.signals else 0
    except _Terminated:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_backends(backends)
        if router is not None:
            router.close()
        sock.close()
        say("hpt serve: stopped; serving programs ended")


def _router(plan: ServingPlan, jobs: list[Job], best_name: str | None, backends: dict,
            serving_dir: Path, say):
    from hpt.serving.canary import Canary
    from hpt.serving.router import Router

    canary = None
    if plan.canary is not None:
        canary = Canary(plan.canary, dict(plan.variants), time.monotonic())
    number = {j.name: j.trial_number for j in jobs}
    # What --variant accepts, the admin endpoint (hpt serve-weights) accepts too.
    aliases = {str(number[model]): model for model in plan.models}
    if best_name in plan.models:
        aliases["best"] = best_name
    return Router({n: b.url for n, b in backends.items()}, plan.variants, serving_dir,
                  shadow=plan.shadow, canary=canary, say=say, aliases=aliases)


def _announce(name: str, url: str, plan: ServingPlan, jobs: list[Job], router, backends: dict,
              serving_dir: Path, say) -> None:
    number = {j.name: j.trial_number for j in jobs}
    say(f"hpt serve: {name} at {url}  (POST /invocations, GET /ping, GET /metrics, "
        f"/admin/variants, /admin/canary)")
    for model in plan.models:
        role = ("shadow" if model == plan.shadow else
                "canary" if plan.canary and model == plan.canary.green else
                f"weight {router.weights.get(model, 0):g}")
        say(f"  {role:>12}  {model} (trial {number[model]})  {backends[model].url}  "
            f"log {backends[model].log_path}")
    say(f"  logs: {serving_dir / 'access.jsonl'}"
        + (f", {serving_dir / 'shadow.jsonl'}" if plan.shadow else "")
        + "; Ctrl-C stops")


def _raise_terminated(sig, frame):
    raise _Terminated()
