"""The launcher's side of the warm interpreter: start it, wait until it serves, ask it for a
process (`WarmProcess`, a `subprocess.Popen` look-alike), close it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpt.processes.reaper import REAPER
from hpt.runtime.warm.child import die_with_parent
from hpt.runtime.warm.wire import HEADER, killpg

READY_TIMEOUT_SECONDS = 120.0


class WarmProcess:
    """A `subprocess.Popen` look-alike (pid, stdout, stderr, poll, wait) for a process the warm
    interpreter forked. Raises OSError when the warm interpreter cannot take the request."""

    def __init__(self, socket_path: str, argv: list[str], env: dict[str, str], cwd: str):
        self.args = list(argv)
        self.returncode: int | None = None
        self._buffer = b""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(10)
            sock.connect(socket_path)
            body = json.dumps({"argv": self.args, "env": env, "cwd": cwd}).encode()
            socket.send_fds(sock, [HEADER.pack(len(body)) + body], [out_w, err_w])
            reply = self._read_message(sock, timeout=10)
        except BaseException:
            sock.close()
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        if reply is None or "pid" not in reply:
            sock.close()
            os.close(out_r)
            os.close(err_r)
            raise OSError(f"warm interpreter refused the request: {reply}")
        self._sock = sock
        self.pid: int = reply["pid"]
        self.stdout = os.fdopen(out_r, "rb")
        self.stderr = os.fdopen(err_r, "rb")

    def _read_message(self, sock: socket.socket, timeout: float | None) -> dict | None:
        """The next JSON line; None at EOF; raises TimeoutError (socket.timeout)."""
        sock.settimeout(timeout)
        while b"\n" not in self._buffer:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _collect(self, timeout: float | None) -> None:
        try:
            msg = self._read_message(self._sock, timeout)
        except (TimeoutError, BlockingIOError):
            return
        if msg is None:  # the warm interpreter died: its child cannot be watched any more
            killpg(self.pid)
            self.returncode = -signal.SIGKILL
        else:
            self.returncode = int(msg["returncode"])
        self._sock.close()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._collect(timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._collect(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode


class WarmInterpreter:
    """The launcher's handle on one warm interpreter: start, wait until ready, close."""

    def __init__(self, modules: list[str], log_path: Path, python: str = sys.executable):
        self.modules = list(modules)
        self.python = python
        self.dir = tempfile.mkdtemp(prefix="hpt-warm-")
        self.socket_path = os.path.join(self.dir, "sock")
        self.ready_path = os.path.join(self.dir, "ready.json")
        self.info: dict = {}
        self._log = open(log_path, "ab")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self._proc = subprocess.Popen(
            [python, "-m", "hpt.runtime.warm", "--socket", self.socket_path,
             "--ready", self.ready_path, "--preload", ",".join(self.modules)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env,
            start_new_session=True, preexec_fn=die_with_parent)
        # Killed with the launcher (PDEATHSIG); its folder goes with them through the reaper.
        REAPER.on_death(f"warm-{self._proc.pid}", ["rm", "-rf", "--", self.dir])

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> str | None:
        """The socket path once the interpreter serves, or None (with self.reason) if not."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.ready_path):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.reason = (f"the warm interpreter exited with {self._proc.returncode}"
                               if self._proc.returncode is not None else
                               f"the warm interpreter was not ready after {timeout:.0f} s")
                return None
            time.sleep(0.02)
        with open(self.ready_path) as f:
            self.info = json.load(f)
        self.reason = self.info.get("unsafe")
        return None if self.reason else self.socket_path

    def close(self) -> None:
        REAPER.cancel(f"warm-{self._proc.pid}")
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        for name in (self.socket_path, self.ready_path):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass
