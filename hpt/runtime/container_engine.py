"""Starts and stops a Docker engine of hpt's own, for runtime: docker's users without one and
for hpt's container tests (Debian's docker.io package: `apt-get install docker.io`, as root).

    eval "$(python -m hpt.runtime.container_engine start)"  # prints: export DOCKER_HOST=unix://...
    python -m hpt.runtime.container_engine stop            # stops it if `start` started it

(`scripts/container_engine.py` in a checkout is the same tool.) Standard library only: CI
runs it with the machine's Python, before hpt is installed.

The engine has its own socket, data root and exec root, so it never meets a system engine's
state; `--iptables=false --ip6tables=false` because a sandbox (or a machine whose firewall
belongs to someone else) may not let it write rules; the default bridge and per-trial
networks work without them. `start` reuses an engine already answering on the socket; when it
starts one it also prints `export HPT_ENGINE_PID=N`, and `stop` stops only that engine, so a
shell that found an engine running leaves it running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# Short paths: containerd puts unix sockets under the exec root (108-byte limit).
RUN_DIR = Path("/run/hpt-engine")
DATA_ROOT = Path("/var/lib/hpt-engine")  # images survive a restart: a rebuild is minutes
START_SECONDS = 60
PID_VARIABLE = "HPT_ENGINE_PID"


def socket_path(run_dir: Path) -> Path:
    return run_dir / "docker.sock"


def docker_host(run_dir: Path) -> str:
    return f"unix://{socket_path(run_dir)}"


def dockerd_argv(run_dir: Path, data_root: Path) -> list[str]:
    return ["dockerd", "--host", docker_host(run_dir), "--data-root", str(data_root),
            "--exec-root", str(run_dir / "exec"), "--pidfile", str(run_dir / "dockerd.pid"),
            "--iptables=false", "--ip6tables=false"]


def answers(run_dir: Path) -> bool:
    if shutil.which("docker") is None:
        return False
    env = {**os.environ, "DOCKER_HOST": docker_host(run_dir)}
    return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                          capture_output=True, timeout=30).returncode == 0


def start(run_dir: Path, data_root: Path) -> tuple[str, int | None]:
    """(DOCKER_HOST, pid of the engine started here, None when one answered already)."""
    if answers(run_dir):
        return docker_host(run_dir), None
    for tool in ("dockerd", "docker"):
        if shutil.which(tool) is None:
            raise SystemExit(f"container_engine: {tool} is not installed: apt-get install "
                             f"docker.io (as root)")
    run_dir.mkdir(parents=True, exist_ok=True)
    data_root.mkdir(parents=True, exist_ok=True)
    log = (run_dir / "dockerd.log").open("ab")
    process = subprocess.Popen(dockerd_argv(run_dir, data_root), stdout=log, stderr=log,
                               start_new_session=True)  # outlives this script, by design
    deadline = time.monotonic() + START_SECONDS
    while not answers(run_dir):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process.pid)  # never left running unannounced
            tail = (run_dir / "dockerd.log").read_text(errors="replace").splitlines()[-5:]
            raise SystemExit("container_engine: dockerd did not start:\n  " + "\n  ".join(tail))
        time.sleep(0.5)
    return docker_host(run_dir), process.pid


def stop(pid: int) -> None:
    """Stops the engine `start` started (its containers with it): SIGTERM, then SIGKILL if
    it is still there after START_SECONDS."""
    def running() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + START_SECONDS
        while running() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not running():
            return


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("start", "stop"))
    p.add_argument("--run-dir", type=Path, default=RUN_DIR)
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    args = p.parse_args(argv)
    if args.action == "start":
        host, pid = start(args.run_dir, args.data_root)
        what = f"started dockerd (pid {pid})" if pid else "an engine already answers"
        print(f"container_engine: {what} at {host}", file=sys.stderr)  # stdout is for eval
        print(f"export DOCKER_HOST={host}")
        if pid is not None:
            print(f"export {PID_VARIABLE}={pid}")
    elif os.environ.get(PID_VARIABLE, "").isdigit():
        stop(int(os.environ[PID_VARIABLE]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
