"""A local MLflow tracking server for trying hpt's tracking (and for its tests and benchmark):
`mlflow server` on 127.0.0.1 with a sqlite backend and served artifacts, all in one folder.

    python scripts/mlflow_server.py FOLDER [--port 5000]   # runs until Ctrl-C or SIGTERM

Needs the `mlflow` package (the dev extra has it; the tracking client alone is mlflow-skinny).
Nothing of the server outlives this script: Ctrl-C, SIGTERM and SIGHUP stop its process group
(`mlflow server`, uvicorn, its huey consumers), and hpt's reaper kills that group if the script
itself is killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

START_SECONDS = 120.0  # its first start creates the database (migrations): ~10-20 s here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """One `mlflow server` process group; `stop()` kills it all, `start()` again keeps the
    same port and database (a server that went down and came back)."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        log = open(self.folder / "server.log", "ab")
        self.proc = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        from hpt.processes.reaper import REAPER

        REAPER.register(self.proc.pid)  # its group dies with this process, however it dies
        deadline = time.time() + START_SECONDS
        while not self.answers():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                tail = (self.folder / "server.log").read_text()[-2000:]
                raise RuntimeError(f"mlflow server did not start:\n{tail}")
            time.sleep(0.2)
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.proc is not None:
            from hpt.processes.reaper import REAPER

            REAPER.unregister(self.proc.pid)
        self.proc = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    def stop_on(signum, frame):
        raise KeyboardInterrupt  # the finally below stops the server's whole group

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop_on)
    server = MlflowServer(args.folder, args.port).start()
    print(f"MLflow at {server.uri} (data in {args.folder}); Ctrl-C stops it", flush=True)
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
