"""Warm interpreter (`trainer.warm_start: true`): a pre-started Python that has already
imported the trainer's heavy modules (torch, numpy) forks one process per training job and
runs the entry point as `__main__`, so a trial starts in milliseconds instead of seconds.

The forked process looks to the script like `python train.py ARGS` started cold: its own
session and process group, the trial's argv, environment, cwd, stdin from /dev/null, stdout
and stderr on the launcher's pipes, `sys.path[0]` = the script's folder, Python's exit-code
and traceback rules. Known differences (README, "Warm interpreter"): modules the warm
interpreter preloaded are already in `sys.modules` (imported under the launcher's environment;
hpt re-applies OMP_NUM_THREADS through torch and reseeds numpy's global generator), the hash
seed is shared between trials, and objects still alive at exit are not finalised (their
`__del__` does not run; Python does not promise it either).

Protocol, one Unix-socket connection per process:
  client -> server  4-byte length + JSON {argv, env, cwd}, with the stdout/stderr pipe ends
                    attached (SCM_RIGHTS)
  server -> client  b'{"pid": N}\\n' once forked, b'{"returncode": R}\\n' when it ended
  the client hangs up early -> the server SIGKILLs the process group (it dies with its owner)
"""

from __future__ import annotations

import ast
import io
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from hpt.runtime.reaper import REAPER

READY_TIMEOUT_SECONDS = 120.0
_HEADER = struct.Struct("!I")
_MAX_REQUEST_BYTES = 16 << 20


# -- what to preload (pure) -------------------------------------------------------------------

def modules_to_preload(script: Path, source_dir: Path) -> list[str]:
    """The modules `script` imports at its top level, minus the ones shipped in source_dir
    (those are copied per trial and must be imported fresh from the trial's code/ folder)."""
    try:
        tree = ast.parse(Path(script).read_bytes(), filename=str(script))
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, (ast.If, ast.Try)):  # `try: import x` / `if TYPE_CHECKING:`
            pending.extend(node.body)
    source = Path(source_dir)
    local = set()
    if source.is_dir():
        local = {p.stem for p in source.glob("*.py")} | {p.name for p in source.iterdir()
                                                         if p.is_dir()}
    seen: list[str] = []
    for name in names:
        if name.split(".")[0] not in local and name not in seen and name != "__future__":
            seen.append(name)
    return seen


def can_run_warm(argv: list[str] | tuple[str, ...], python: str) -> bool:
    """Only `python script.py ARGS` with the warm interpreter's own Python can be forked."""
    return len(argv) >= 2 and argv[0] == python and argv[1].endswith(".py")


# -- the server (the warm interpreter itself) ------------------------------------------------

@dataclass
class _Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdout_fd: int
    stderr_fd: int


def _preload(modules: list[str]) -> tuple[list[str], dict[str, str]]:
    imported, failed = [], {}
    for name in modules:
        try:
            __import__(name)
            imported.append(name)
        except BaseException as exc:  # noqa: BLE001 - a module that fails here fails cold too
            failed[name] = f"{type(exc).__name__}: {exc}"
    return imported, failed


def _unsafe_to_fork() -> str | None:
    import threading
    if threading.active_count() > 1:
        return (f"{threading.active_count() - 1} threads run after the preload; forking would "
                f"copy locks they hold")
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "cuda", None) and torch.cuda.is_initialized():
        return "CUDA was initialised during the preload; a forked child cannot use it"
    return None


def _recv_request(conn: socket.socket) -> _Request:
    conn.settimeout(10)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
    if len(fds) != 2 or len(data) < _HEADER.size:
        for fd in fds:
            os.close(fd)
        raise ValueError("bad request: expected a header and two file descriptors")
    (size,) = _HEADER.unpack_from(data)
    if size > _MAX_REQUEST_BYTES:
        raise ValueError(f"request of {size} bytes is too large")
    body = bytearray(data[_HEADER.size:])
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("client hung up mid-request")
        body += chunk
    conn.setblocking(False)
    msg = json.loads(bytes(body))
    return _Request(list(msg["argv"]), dict(msg["env"]), str(msg["cwd"]), fds[0], fds[1])


def _send(conn: socket.socket, **msg) -> None:
    try:
        conn.setblocking(True)
        conn.sendall(json.dumps(msg).encode() + b"\n")
        conn.setblocking(False)
    except OSError:
        pass  # the client is gone; its process was or will be killed


def serve(socket_path: str, ready_path: str, modules: list[str]) -> _Request | None:
    """Runs the warm interpreter until its launcher goes away. Returns only in a forked child,
    with the request that child must run."""
    imported, failed = _preload(modules)
    unsafe = _unsafe_to_fork()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(128)
    tmp = ready_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), "python": sys.executable, "imported": imported,
                   "failed": failed, "unsafe": unsafe}, f)
    os.replace(tmp, ready_path)
    if unsafe:
        return None
    launcher = os.getppid()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w.fileno())
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "listen")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    pid_of: dict[socket.socket, int] = {}
    conn_of: dict[int, socket.socket] = {}

    def forget(conn: socket.socket) -> None:
        sel.unregister(conn)
        conn.close()

    while os.getppid() == launcher:
        for key, _ in sel.select(timeout=1.0):
            if key.data == "listen":
                conn, _ = listener.accept()
                sel.register(conn, selectors.EVENT_READ, "client")
            elif key.data == "wake":
                try:
                    while wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            elif key.fileobj in pid_of:  # a client spoke again or hung up: kill its process
                conn = key.fileobj
                try:
                    if conn.recv(4096):
                        continue
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                pid = pid_of.pop(conn)
                conn_of.pop(pid, None)
                _killpg(pid)
                forget(conn)
            else:
                conn = key.fileobj
                try:
                    request = _recv_request(conn)
                except (OSError, ValueError) as exc:
                    _send(conn, error=f"{type(exc).__name__}: {exc}")
                    forget(conn)
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    sel.close()
                    for sock in (listener, wake_r, wake_w, conn, *pid_of):
                        sock.close()
                    return request
                os.close(request.stdout_fd)
                os.close(request.stderr_fd)
                pid_of[conn] = pid
                conn_of[pid] = conn
                _send(conn, pid=pid)
        # Reap every child that ended and tell its client how.
        while conn_of:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = conn_of.pop(pid, None)
            if conn is not None:
                pid_of.pop(conn, None)
                _send(conn, returncode=os.waitstatus_to_exitcode(status))
                forget(conn)
    for pid in list(conn_of):  # the launcher died: nothing may outlive it
        _killpg(pid)
    return None


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _text_stream(fd: int, unbuffered: bool, errors: str) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    if unbuffered:
        return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, write_through=True)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors=errors)


def run_as_main(req: _Request) -> int:
    """In the forked child: become `python script ARGS` and run it. Returns the exit code."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(req.stdout_fd, 1)
    os.dup2(req.stderr_fd, 2)
    for fd in {devnull, req.stdout_fd, req.stderr_fd} - {0, 1, 2}:
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(req.cwd)
    os.environ.clear()
    os.environ.update(req.env)
    unbuffered = bool(req.env.get("PYTHONUNBUFFERED"))
    sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)
    sys.stdout = sys.__stdout__ = _text_stream(1, unbuffered, "strict")
    sys.stderr = sys.__stderr__ = _text_stream(2, True, "backslashreplace")
    script, args = req.argv[1], req.argv[2:]
    sys.argv = [script, *args]
    # As a cold start: the script's folder first, then the trial's PYTHONPATH.
    extra = [p for p in req.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:1] = [os.path.dirname(os.path.realpath(script)), *extra]
    _reapply_process_settings(req.env)
    script = os.path.abspath(script)  # as a cold start's __file__ and tracebacks show it
    try:
        _exec_as_main(script)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        _print_script_traceback(script)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # as Python does: die of SIGINT
        return 130
    except BaseException:  # noqa: BLE001 - what a cold interpreter prints and exits 1 on
        _print_script_traceback(script)
        return 1
    return 0


def _exec_as_main(script: str) -> None:
    """What `python script` does: a fresh `__main__` module holding the script's code."""
    import importlib.machinery
    import types
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def _reapply_process_settings(env: dict[str, str]) -> None:
    """Settings a cold start reads from the environment at import time."""
    torch = sys.modules.get("torch")
    threads = env.get("OMP_NUM_THREADS", "")
    if torch is not None and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        np_random.seed()  # fresh entropy, as a cold start's numpy would have


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _print_script_traceback(script: str) -> None:
    """The traceback as a cold start prints it: from the script's frame, not runpy's."""
    _, exc, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)


def die_with_parent() -> None:
    """In the child: SIGKILL when the launcher thread that started it dies (Linux only)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m hpt.runtime.warm")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--preload", default="")
    opts = parser.parse_args(argv)
    request = serve(opts.socket, opts.ready, [m for m in opts.preload.split(",") if m])
    if request is None:
        return 0
    _exit_like_python(run_as_main(request))
    return 0  # not reached


def _exit_like_python(code: int) -> None:
    """The observable part of interpreter shutdown (non-daemon threads joined, atexit
    handlers run, stdio flushed), then exit without tearing down every module: that teardown
    is what makes a forked child's exit cost ~15 ms instead of <1 ms."""
    import atexit
    import threading
    try:
        threading._shutdown()  # what Py_FinalizeEx does first: wait for non-daemon threads
    except Exception:  # noqa: BLE001 - as at shutdown: report and go on
        traceback.print_exc()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


# -- the client side -------------------------------------------------------------------------

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
            socket.send_fds(sock, [_HEADER.pack(len(body)) + body], [out_w, err_w])
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
            _killpg(self.pid)
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


if __name__ == "__main__":
    sys.exit(main())
