"""The one Ray `hpt api` runs every tuning job on: `ray start --head` on 127.0.0.1, in its own
session folder, handed to the reaper so that nothing of it outlives the server (however the
server ends); or a cluster the server was told to join (`--address`), left as it is.

Each tuning job's launcher joins it as a Ray job of its own (`hpt launch --address`), so jobs
share the CPUs and GPUs the way Ray shares them between drivers. A head that dies (a killed
gcs_server ends `ray start --block`) is noticed by `lost()`, and the server starts another
(hpt/api/jobs.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpt.core.errors import UserError
from hpt.runtime.host import free_ports
from hpt.processes.reaper import REAPER

START_SECONDS = 60.0


class RayHead:
    def __init__(self, cpus: float, gpus: float, log: Path):
        self.cpus, self.gpus, self.log = cpus, gpus, log
        self.temp = tempfile.mkdtemp(prefix="hpt-api-ray-", dir="/tmp")  # socket paths: short
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None
        self._silent_since: float | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def lost(self) -> str | None:
        """Why this Ray is gone (its `ray start` exited, or its GCS has not answered for
        ray_watch.LOST_AFTER_SECONDS), or None while it serves."""
        from hpt.cluster.watch import LOST_AFTER_SECONDS, gcs_answers

        if self.process is None:
            return None
        if self.process.poll() is not None:
            return f"its `ray start --head` exited with code {self.process.returncode}"
        silent = gcs_answers(self.address)
        if silent is None:
            self._silent_since = None
            return None
        self._silent_since = self._silent_since or time.monotonic()
        if time.monotonic() - self._silent_since < LOST_AFTER_SECONDS:
            return None
        return f"nothing has answered there for {LOST_AFTER_SECONDS:.0f} s: {silent}"

    def restart(self) -> str:
        """A new Ray (on a new port) after this one was lost; its address."""
        self.stop()
        self.temp = tempfile.mkdtemp(prefix="hpt-api-ray-", dir="/tmp")
        self.port = free_ports(1)[0]
        self._silent_since = None
        return self.start()

    def start(self) -> str:
        ray = Path(sys.executable).with_name("ray")
        argv = [str(ray) if ray.exists() else "ray", "start", "--head", "--block",
                "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                "--num-cpus", str(int(self.cpus)), "--num-gpus", str(int(self.gpus)),
                "--include-dashboard", "false", "--disable-usage-stats",
                "--temp-dir", self.temp]
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        REAPER.register(self.process.pid)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserError(f"hpt api: `ray start --head` exited with code "
                                f"{self.process.returncode}; its output is in {self.log}")
            session = Path(self.temp) / "session_latest"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.2)
                continue
            if session.exists():
                REAPER.ray_session(os.path.realpath(session))
                return self.address
            time.sleep(0.2)
        self.stop()
        raise UserError(f"hpt api: Ray did not start within {START_SECONDS:.0f}s; its output "
                        f"is in {self.log}")

    def stop(self) -> None:
        """Ray's processes, all of them: the head's group, then whatever of its session is
        left (its workers and agents run in groups of their own)."""
        from hpt.processes.reaper_sidecar import kill_session

        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=20)
        REAPER.unregister(self.process.pid)
        kill_session(self.temp, spare=os.getpid())
        self.process = None
        shutil.rmtree(self.temp, ignore_errors=True)  # its session files: nothing reads them
