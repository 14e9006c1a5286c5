"""The forked child of the warm interpreter becoming `python script ARGS`: its own session,
stdio on the launcher's pipes, the trial's argv, environment and cwd, Python's exit-code and
traceback rules, and a cheap exit."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sys
import traceback
from typing import Any

from hpt.runtime.warm.wire import Request


def _text_stream(fd: int, unbuffered: bool, errors: str) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    if unbuffered:
        return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, write_through=True)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors=errors)


def run_as_main(req: Request) -> int:
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


def exit_like_python(code: int) -> None:
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


# util-linux's setpriv sets PR_SET_PDEATHSIG and execs the command: the child needs no
# Python code between fork and exec, so Popen may vfork (a preexec_fn forces a full fork of
# the launcher, whose page tables are copied: ~15 ms of CPU per trial at 200 MB).
_SETPRIV = shutil.which("setpriv")


def dying_with_parent(argv: list[str]) -> tuple[list[str], Any]:
    """(argv, preexec_fn) of a process SIGKILLed when the thread that starts it dies."""
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv], None
    return list(argv), die_with_parent


def die_with_parent() -> None:
    """In the child: SIGKILL when the launcher thread that started it dies (Linux only)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
