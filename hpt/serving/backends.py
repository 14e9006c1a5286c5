"""One SageMaker-style serving process per model: `python serve.py serve` with SM_MODEL_DIR
and SAGEMAKER_BIND_TO_PORT, in its own process group, on a free loopback port; or, with a
container image, SageMaker's own `docker run IMAGE serve` (model at /opt/ml/model, port 8080
published on the loopback port).

Layout under `<experiment>/serving/<training-job>/`: `model/` (the extracted model.tar.gz)
and `serve.log` (the program's stdout and stderr).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hpt.core.errors import UserError
from hpt.runtime.docker_commands import (container_name, labels_for, remove_argv, serve_run_argv,
                                stop_argv)
from hpt.runtime.host import free_ports
from hpt.runtime.host_process import run_quietly, signal_group
from hpt.processes.reaper import REAPER
from hpt.serving.archive import extract_model

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0
SERVE_LOG = "serve.log"  # the serving program's stdout and stderr, in its folder


class BackendError(Exception):
    """A serving program that did not come up; the message quotes its log."""


def log_tail(path: Path, lines: int = 15) -> str:
    """The log's last lines, without the access-log lines of hpt's own /ping polls (which
    would bury the program's message)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.strip().splitlines()
            if not (line.startswith("{") and '"/ping"' in line)]
    return "\n".join(f"    {line}" for line in kept[-lines:]) or "    (empty log)"


@dataclass
class Backend:
    name: str                  # the training job
    folder: Path               # <experiment>/serving/<training-job>
    port: int
    process: subprocess.Popen | None = None
    container: tuple[str, str] | None = None  # (engine, image): serve in a container
    tuning_job: str = ""  # labels the container, as its training containers are labelled
    environment: dict = field(default_factory=dict)  # the model's own (CreateModel's Environment)
    log_path: Path = field(init=False)

    def __post_init__(self):
        self.log_path = self.folder / SERVE_LOG

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, entry_point: Path | None, archive: Path) -> None:
        model_dir = (self.folder / "model").resolve()
        extract_model(archive, model_dir)
        # Several serving processes share this machine's cores: one thread each unless the
        # user said otherwise.
        threads = os.environ.get("OMP_NUM_THREADS", "1")
        if self.container:
            engine, image = self.container
            argv = serve_run_argv(engine, image, self.name, str(model_dir), self.port,
                                  {"OMP_NUM_THREADS": threads, **self.environment},
                                  {"hpt.serve": "1",
                                   **labels_for(self.tuning_job, self.name, "serve")})
            env, cwd = dict(os.environ), None
        else:
            argv = [sys.executable, str(entry_point), "serve"]
            env = {**os.environ, **self.environment, "SM_MODEL_DIR": str(model_dir),
                   "OMP_NUM_THREADS": threads,
                   "SAGEMAKER_BIND_TO_PORT": str(self.port), "HPT_SERVE_HOST": HOST}
            cwd = str(entry_point.parent)
        with open(self.log_path, "ab") as log:
            log.write(f"--- hpt serve: {' '.join(argv)}, model {model_dir}, port "
                      f"{self.port}, at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group: stopped as a whole
        REAPER.register(self.process.pid)  # and killed even if hpt serve is SIGKILLed
        if self.container:  # a container outlives its CLI: removed then too
            REAPER.on_death(f"serve-{self.name}", remove_argv(
                self.container[0], container_name(self.name, "serve")))

    def ping(self, timeout: float = 1.0) -> int | None:
        return self.ping_answer(timeout)[0]

    def ping_answer(self, timeout: float = 1.0) -> tuple[int | None, dict]:
        """(status, JSON body or {}) of the program's /ping; (None, {}) when unreachable."""
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=timeout) as resp:
                return resp.status, _json_or_empty(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json_or_empty(exc.read())
        except (OSError, ValueError):
            return None, {}

    def wait_ready(self, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise BackendError(f"serving program of {self.name} exited with code "
                                   f"{self.process.returncode} before answering /ping; its log "
                                   f"({self.log_path}) ends:\n{log_tail(self.log_path)}")
            status, answer = self.ping_answer()
            if status == 200:
                return
            if answer.get("status") == "failed":  # it will never load: say why at once
                raise BackendError(f"serving program of {self.name} could not load its model: "
                                   f"{answer.get('error') or 'no reason given'} (its log: "
                                   f"{self.log_path})")
            if time.monotonic() > deadline:
                raise BackendError(f"serving program of {self.name} did not answer /ping with "
                                   f"200 in time; its log ({self.log_path}) ends:\n"
                                   f"{log_tail(self.log_path)}")
            time.sleep(0.2)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to its process group, `grace` seconds, then SIGKILL; reaps the child."""
        if self.process is None:
            return
        if self.container:  # the engine stops and removes the container; the CLI then ends
            engine, name = self.container[0], container_name(self.name, "serve")
            run_quietly(stop_argv(engine, name, grace), wait=True)
            run_quietly(remove_argv(engine, name), wait=True)
        pgid = self.process.pid  # start_new_session: the group id is the child's pid
        signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        signal_group(pgid, signal.SIGKILL)  # and whatever it forked in its group
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
        REAPER.unregister(pgid)
        if self.container:
            REAPER.cancel(f"serve-{self.name}")


def _json_or_empty(raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def serving_container(frozen_spec: dict, runtime: str | None, image: str | None,
                      engine: str = "docker") -> tuple[str, str] | None:
    """(engine, image) when the models serve in containers, else None (local processes).
    By default they serve where the tuning job trained: `runtime: docker` -> its image."""
    chosen = runtime or ("docker" if image or frozen_spec.get("runtime") == "docker"
                         else "local")
    if chosen == "local":
        if image:
            raise UserError(f"--image {image}: an image serves in a container; use "
                            f"--runtime docker with it, or drop --image")
        return None
    image = image or (frozen_spec.get("trainer") or {}).get("image")
    if not image:
        raise UserError("--runtime docker: the tuning job names no trainer.image; pass "
                        "--image IMAGE (e.g. hpt-cnn:latest, built from trainers/cnn/Dockerfile)")
    return engine, image


def entry_point_of(frozen_spec: dict, explicit: str | None) -> Path:
    """`--entry-point PATH`, else `serve.py` in the trainer's source_dir."""
    if explicit:
        path = Path(explicit).resolve()
        if not path.is_file():
            raise UserError(f"--entry-point {explicit}: no such file; give the path of a "
                            f"serving program (run as `python PATH serve`)")
        return path
    source_dir = Path(frozen_spec["trainer"]["source_dir"])
    path = source_dir / "serve.py"
    if not path.is_file():
        raise UserError(f"{path}: the trainer's source_dir has no serve.py; write one (run as "
                        f"`python serve.py serve` with SM_MODEL_DIR and "
                        f"SAGEMAKER_BIND_TO_PORT) or pass --entry-point PATH")
    return path.resolve()


def start_backends(serving_dir: Path, entry_point: Path | None, artifacts: dict[str, str],
                   timeout: float = 120.0,
                   container: tuple[str, str] | None = None) -> dict[str, Backend]:
    """Starts every model's serving process at once and waits until all answer /ping 200.
    On any failure every one started is stopped before the error propagates."""
    backends: dict[str, Backend] = {}
    try:
        ports = free_ports(len(artifacts), HOST)  # distinct, all found at once
        for (name, archive), port in zip(artifacts.items(), ports):
            folder = serving_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            backend = Backend(name, folder, port, container=container,
                              tuning_job=serving_dir.parent.name)
            backends[name] = backend
            backend.start(entry_point, Path(archive))
        deadline = time.monotonic() + timeout
        for backend in backends.values():
            backend.wait_ready(deadline)
    except BaseException:
        stop_backends(backends)
        raise
    return backends


def stop_backends(backends: dict[str, Backend]) -> None:
    for backend in backends.values():
        if backend.process is not None:  # all at once, then wait for each
            signal_group(backend.process.pid, signal.SIGTERM)
    for backend in backends.values():
        backend.stop()
