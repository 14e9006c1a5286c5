"""The processes `hpt api` runs its jobs in (a training job's runner, a transform job's
runner): each started as `python -m MODULE ARGS...` in a process group of its own, its output
in a log file, and registered with the reaper, so that a server that dies, however it dies,
takes its jobs' processes with it. A watch thread calls `on_exit(name, code)` for each one
that exits, which decides what its ending means for its job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from hpt.processes.reaper import REAPER


class JobProcesses:
    def __init__(self, module: str, on_exit: Callable[[str, int], None],
                 say: Callable[[str], None] = print):
        self.module, self.on_exit, self.say = module, on_exit, say
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name=f"hpt-api-{module}",
                                         daemon=True)

    def start_watching(self) -> None:
        self._watcher.start()

    def launch(self, name: str, args: list[str], log: Path) -> int:
        argv = [sys.executable, "-m", self.module, *args]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        REAPER.register(proc.pid)  # the server's death kills it, and its job with it
        with self._lock:
            self._procs[name] = proc
        return proc.pid

    def hand_over(self, old: str, new: str) -> None:
        """The process of `old` runs job `new` from now on (a warm pool's next job)."""
        with self._lock:
            self._procs[new] = self._procs.pop(old)

    def running(self, name: str) -> bool:
        with self._lock:
            proc = self._procs.get(name)
            return proc is not None and proc.poll() is None

    def _watch(self) -> None:
        while not self._closing.wait(1.0):
            try:
                self.reap()
            except Exception as exc:  # noqa: BLE001 - the watch goes on
                self.say(f"hpt api: watching {self.module}: {type(exc).__name__}: {exc}")

    def reap(self) -> None:
        """`on_exit` for each process that exited since the last look."""
        with self._lock:
            for name, proc in list(self._procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self._procs[name]
                REAPER.unregister(proc.pid)
                self.on_exit(name, code)

    def close(self, ask: Callable[[str], bool] | None, grace: float = 30.0) -> None:
        """The server's clean shutdown: `ask(name)` of each running one (how its job is told
        to end: True when it was), else SIGINT to it (its job is interrupted, to go on at the
        next start); each gets `grace` seconds in all, then its group is killed."""
        self._closing.set()
        with self._lock:
            procs = dict(self._procs)
            self._procs.clear()
        for name, proc in procs.items():
            if proc.poll() is None and not (ask is not None and ask(name)):
                proc.send_signal(signal.SIGINT)
        deadline = time.time() + grace
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
            REAPER.unregister(proc.pid)
