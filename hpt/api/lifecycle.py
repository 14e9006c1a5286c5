"""`hpt api` as a process: its Ray, its jobs and endpoints, the HTTP server, and the order
they start and stop in (the server is bound before anything starts; on the way out the
endpoints stop, the launchers are interrupted, and Ray goes last)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hpt.api.endpoints import Endpoints
from hpt.api.jobs import TuningJobs
from hpt.api.models import Records
from hpt.api.operations import Api
from hpt.api.server import create_app
from hpt.api.records import ApiStore


def serve_api(experiments: Path, *, host: str, port: int, address: str | None,
              cpus: float | None, gpus: float | None, image_map: dict[str, str],
              keys: dict[str, str] | None, engine: str = "docker", say=print) -> int:
    """Runs the server until SIGINT/SIGTERM. Returns the exit code."""
    import os
    import signal

    import uvicorn

    from hpt.api.ray_head import RayHead
    from hpt.serving.serve import bind, signal_capturing_server

    store = ApiStore(experiments)
    sock = bind(host, port)
    cpus = float(cpus if cpus is not None else os.cpu_count() or 1)
    gpus = float(gpus if gpus is not None else _local_gpus())
    head = None
    if address is None:
        head = RayHead(cpus, gpus, store.root / "ray.log")
        address = head.start()
    jobs = TuningJobs(store, address, cpus, gpus, image_map, engine, say, ray_head=head)
    endpoints = Endpoints(store, Records(store, image_map, engine), say)
    api = Api(store, jobs, endpoints)

    def started(loop):
        endpoints.loop = loop
        jobs.start()  # resumes what an earlier server left running
        api.training.start()
        api.transform.start()  # goes on with what an earlier server left running
        endpoints.restore()
        say(f"hpt api: SageMaker API at http://{host}:{sock.getsockname()[1]} "
            f"(experiments {store.experiments}; Ray {jobs.ray_address}"
            + (f" in {head.temp}" if head else "") + "; "
            f"{'SigV4 required' if keys else 'unsigned requests accepted: loopback only'})")

    app = create_app(api, keys, say, on_startup=started)
    server = signal_capturing_server()(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=5))
    server.signals = []
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        say("hpt api: stopping (running tuning jobs are interrupted and resume at the next "
            "start)")
        endpoints.close()
        api.transform.close()
        api.training.close()
        jobs.close()
        if head is not None:
            head.stop()
        sock.close()
    return 130 if signal.SIGINT in server.signals else 0


def _local_gpus() -> int:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
