"""The warm interpreter's wire protocol, one Unix-socket connection per process:

  client -> server  4-byte length + JSON {argv, env, cwd}, with the stdout/stderr pipe ends
                    attached (SCM_RIGHTS)
  server -> client  b'{"pid": N}\\n' once forked, b'{"returncode": R}\\n' when it ended
  the client hangs up early -> the server SIGKILLs the process group (it dies with its owner)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!I")
MAX_REQUEST_BYTES = 16 << 20


@dataclass
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdout_fd: int
    stderr_fd: int


def recv_request(conn: socket.socket) -> Request:
    conn.settimeout(10)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
    if len(fds) != 2 or len(data) < HEADER.size:
        for fd in fds:
            os.close(fd)
        raise ValueError("bad request: expected a header and two file descriptors")
    (size,) = HEADER.unpack_from(data)
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {size} bytes is too large")
    body = bytearray(data[HEADER.size:])
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("client hung up mid-request")
        body += chunk
    conn.setblocking(False)
    msg = json.loads(bytes(body))
    return Request(list(msg["argv"]), dict(msg["env"]), str(msg["cwd"]), fds[0], fds[1])


def send(conn: socket.socket, **msg) -> None:
    try:
        conn.setblocking(True)
        conn.sendall(json.dumps(msg).encode() + b"\n")
        conn.setblocking(False)
    except OSError:
        pass  # the client is gone; its process was or will be killed


def killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
