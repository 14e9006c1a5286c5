"""The warm interpreter itself: preloads the script's modules, then serves requests by forking
one child per training job, until its launcher goes away (then nothing it forked survives)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys

from hpt.runtime.warm.child import exit_like_python, run_as_main
from hpt.runtime.warm.preload import preload, unsafe_to_fork
from hpt.runtime.warm.wire import Request, killpg, recv_request, send


class _Server:
    """The accept / fork / reap loop. `run()` returns only in a forked child, with the
    request that child must run."""

    def __init__(self, listener: socket.socket):
        self.listener = listener
        self.wake_r, self.wake_w = socket.socketpair()  # SIGCHLD wakes the selector
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w.fileno())
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.pid_of: dict[socket.socket, int] = {}
        self.conn_of: dict[int, socket.socket] = {}

    def run(self) -> Request | None:
        launcher = os.getppid()
        while os.getppid() == launcher:
            for key, _ in self.sel.select(timeout=1.0):
                request = self._on_ready(key)
                if request is not None:
                    return request  # in the forked child
            self._reap()
        for pid in list(self.conn_of):  # the launcher died: nothing may outlive it
            killpg(pid)
        return None

    def _on_ready(self, key) -> Request | None:
        if key.data == "listen":
            conn, _ = self.listener.accept()
            self.sel.register(conn, selectors.EVENT_READ, "client")
        elif key.data == "wake":
            try:
                while self.wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        elif key.fileobj in self.pid_of:
            self._on_client_spoke(key.fileobj)
        else:
            return self._fork(key.fileobj)
        return None

    def _on_client_spoke(self, conn: socket.socket) -> None:
        """A client with a running process spoke again or hung up: kill its process."""
        try:
            if conn.recv(4096):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        pid = self.pid_of.pop(conn)
        self.conn_of.pop(pid, None)
        killpg(pid)
        self._forget(conn)

    def _fork(self, conn: socket.socket) -> Request | None:
        try:
            request = recv_request(conn)
        except (OSError, ValueError) as exc:
            send(conn, error=f"{type(exc).__name__}: {exc}")
            self._forget(conn)
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            self.sel.close()
            for sock in (self.listener, self.wake_r, self.wake_w, conn, *self.pid_of):
                sock.close()
            return request
        os.close(request.stdout_fd)
        os.close(request.stderr_fd)
        self.pid_of[conn] = pid
        self.conn_of[pid] = conn
        send(conn, pid=pid)
        return None

    def _reap(self) -> None:
        """Every child that ended: tell its client how."""
        while self.conn_of:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.conn_of.pop(pid, None)
            if conn is not None:
                self.pid_of.pop(conn, None)
                send(conn, returncode=os.waitstatus_to_exitcode(status))
                self._forget(conn)

    def _forget(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        conn.close()


def serve(socket_path: str, ready_path: str, modules: list[str]) -> Request | None:
    """Runs the warm interpreter until its launcher goes away. Returns only in a forked child,
    with the request that child must run."""
    imported, failed = preload(modules)
    unsafe = unsafe_to_fork()
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
    return _Server(listener).run()


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
    exit_like_python(run_as_main(request))
    return 0  # not reached
