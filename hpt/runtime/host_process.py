"""Runs one host of a training job as a local process group.

The process gets its own session (so stopping it reaches everything it spawned), its
stdout and stderr are pumped line by line by two threads that never block the script
(lines go to the host's log file and into an unbounded queue the caller drains).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from hpt.core.log_times import LogTimes
from hpt.processes.reaper import REAPER
from hpt.core.trial import FailureCategory, FailureReason
from hpt.runtime.warm import WarmProcess, can_run_warm, dying_with_parent

# A line longer than this is cut and marked; protects memory against output with no newlines.
MAX_LINE_BYTES = 64 * 1024
# After the script exits, how long its output may stay quiet before the log counts as ended
# even though the pipe is still open (a child of the script inherited it). SageMaker ends a
# job when its main process exits; a lingering child must not keep the job running.
AFTER_EXIT_QUIET_SECONDS = 0.5
STDERR_TAIL_LINES = 30


@dataclass(frozen=True)
class LogLine:
    stream: str  # "stdout" | "stderr"
    text: str
    timestamp: float


# Sentinel put on the queue when a stream reaches EOF.
_EOF = object()


class HostProcess:
    """A running host process: start it, drain its lines, stop its whole process group."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, log_path: Path,
                 stream_lines: bool = True, warm_socket: str | None = None,
                 container: tuple[list[str] | None, list[str]] | None = None):
        self.argv = list(argv)
        # runtime: docker -- argv is `docker run`; stopping the CLI does not stop the
        # container, so (stop argv, remove argv) are run too (runtime/docker_commands.py). No stop
        # argv: a `docker exec` in a container its host group stops (host.py).
        self.container = container
        self._container_stopping: subprocess.Popen | None = None
        # A warm interpreter's socket (runtime/warm/): fork from it instead of a cold start.
        self.warm_socket = warm_socket
        self.warm = False
        # Only the chief's lines are read by the caller; for the other processes of a trial
        # the pumps keep the log file and the tails, and queue nothing.
        self.stream_lines = stream_lines
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.lines: queue.Queue = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.last_lines: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._proc: subprocess.Popen | None = None
        self._pumps: list[threading.Thread] = []
        self._log_lock = threading.Lock()
        self._log = None
        self._log_offset = 0
        self._times: LogTimes | None = None
        self._open_streams = 0
        self.started_at: float | None = None
        self.log_error: OSError | None = None  # the log file could not be written

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)
        self._log_offset = os.fstat(self._log.fileno()).st_size  # appended after what is there
        self._times = LogTimes(self.log_path)
        self._proc = self._start_warm() or self._start_cold()
        self.started_at = time.time()
        REAPER.register(self._proc.pid)  # its group dies with this process, however it dies
        if self.container:  # and its container, which the engine runs, is removed
            REAPER.on_death(f"container-{self._proc.pid}", self.container[1])
        for name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            pump = threading.Thread(target=self._pump, args=(name, stream), daemon=True,
                                    name=f"hpt-pump-{name}")
            pump.start()
            self._pumps.append(pump)
        self._open_streams = 2

    def _start_cold(self) -> subprocess.Popen:
        argv, preexec = dying_with_parent(self.argv)
        return subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=preexec)

    def _start_warm(self):
        if self.container or not (self.warm_socket and can_run_warm(self.argv, sys.executable)):
            return None
        try:
            proc = WarmProcess(self.warm_socket, self.argv, self.env, self.cwd)
        except OSError:  # no warm interpreter here (another node) or it is gone: start cold
            return None
        self.warm = True
        return proc

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _pump(self, name: str, stream) -> None:
        try:
            while True:
                raw = stream.readline(MAX_LINE_BYTES)
                if not raw:
                    break
                now = time.time()
                cut = not raw.endswith(b"\n")
                text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
                if cut and len(raw) >= MAX_LINE_BYTES:
                    text += " [hpt: line cut at 64 KiB]"
                self._write_log(raw if not cut else raw + b"\n", now)
                self.last_lines.append(text)
                if name == "stderr":
                    self.stderr_tail.append(text)
                if self.stream_lines:
                    self.lines.put(LogLine(name, text, now))
        finally:
            self.lines.put(_EOF)  # also without stream_lines: next_line() still ends

    def _write_log(self, data: bytes, now: float) -> None:
        # A full disk must not stop the pump: the script would block on a full pipe. The
        # first error is kept (the job fails with it) and the lines keep flowing.
        if self.log_error is not None:
            return
        try:
            with self._log_lock:
                if self._log is None:  # closed by stop() while a pump still drains
                    return
                self._times.line(self._log_offset, now)  # when it was written (GetLogEvents)
                self._log.write(data)
                self._log_offset += len(data)
        except OSError as exc:
            self.log_error = exc

    def next_line(self, timeout: float) -> LogLine | None:
        """The next line, or None on timeout. Raises EOFError once both streams ended, or
        once the script has exited and its output stayed quiet (a child holds the pipe)."""
        while self._open_streams > 0:
            try:
                item = self.lines.get_nowait()  # the streaming case: no syscall per line
            except queue.Empty:
                exited = self._proc is not None and self._proc.poll() is not None
                try:
                    item = self.lines.get(timeout=min(timeout, AFTER_EXIT_QUIET_SECONDS)
                                          if exited else timeout)
                except queue.Empty:
                    if exited:
                        raise EOFError from None
                    return None
            if item is _EOF:
                self._open_streams -= 1
                continue
            return item
        raise EOFError

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def wait(self, timeout: float | None = None) -> int:
        code = self._proc.wait(timeout=timeout)
        for pump in self._pumps:  # briefly: a child of the script may hold the pipe open
            pump.join(timeout=AFTER_EXIT_QUIET_SECONDS)
        return code

    def terminate(self) -> None:
        """SIGTERM to the process group, without waiting (stop() follows)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        if self.container and self.container[0]:  # `docker stop`: SIGTERM inside, SIGKILL
            self._container_stopping = run_quietly(self.container[0], wait=False)  # later
        else:
            signal_group(self._proc.pid, signal.SIGTERM)

    def stop(self, grace_seconds: float = 10.0) -> int | None:
        """SIGTERM to the process group, a grace period, then SIGKILL. Returns the exit code."""
        if self._proc is None:
            return None
        pgid = self._proc.pid  # start_new_session: the group id is the child's pid
        if self.container and self.container[0]:
            if self._proc.poll() is None and self._container_stopping is None:
                self._container_stopping = run_quietly(self.container[0], wait=False)
            if self._container_stopping is not None:
                try:  # the engine's own grace period runs inside `docker stop -t`
                    self._container_stopping.wait(timeout=grace_seconds + 15)
                except subprocess.TimeoutExpired:
                    self._container_stopping.kill()
        signal_group(pgid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        # Grandchildren may outlive the leader; the group kill reaches them too.
        signal_group(pgid, signal.SIGKILL)
        code = self._proc.wait()
        for pump in self._pumps:
            pump.join(timeout=5)
        return code

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.stop(grace_seconds=1.0)
        elif self._proc is not None:
            signal_group(self._proc.pid, signal.SIGKILL)  # reap leftovers of the group
        if self.container and self._proc is not None:
            run_quietly(self.container[1], wait=True)  # no container is left behind
        if self._proc is not None:
            REAPER.unregister(self._proc.pid)
            if self.container:
                REAPER.cancel(f"container-{self._proc.pid}")
        if self._log is not None:
            with self._log_lock:
                self._log.close()
                self._log = None
                self._times.close()


def run_quietly(argv: list[str], wait: bool) -> subprocess.Popen | None:
    """An engine command (stop, rm) whose output nobody needs; None if it cannot start."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return None
    if wait:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc


def signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def failure_reason(exit_code: int, failure_file: Path, stderr_tail: list[str]) -> FailureReason:
    """SageMaker's FailureReason: the script's failure file, else how it ended and the tail
    of its stderr."""
    if failure_file.is_file():
        text = failure_file.read_text(errors="replace").strip()
        if text:
            return FailureReason(FailureCategory.ALGORITHM_ERROR, text, verbatim=True)
    if exit_code < 0:
        try:
            how = f"killed by signal {signal.Signals(-exit_code).name}"
        except ValueError:
            how = f"killed by signal {-exit_code}"
    else:
        how = f"exit code {exit_code}"
    tail = "\n".join(stderr_tail).strip()
    return FailureReason(FailureCategory.ALGORITHM_ERROR,
                         f"{how}; stderr tail:" if tail else f"{how} (no stderr output)", tail)


def pack_model(model_dir: Path, archive: Path) -> Path:
    """model/ -> model.tar.gz with the directory's contents at the archive root, as SageMaker
    does."""
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for entry in sorted(model_dir.iterdir()) if model_dir.is_dir() else []:
            tar.add(entry, arcname=entry.name)
    os.replace(tmp, archive)
    return archive
