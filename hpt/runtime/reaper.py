"""Kills a dead launcher's trial process groups: a sidecar process per launching process.

A trial script runs in its own session (so a stop reaches all it spawned) with
PR_SET_PDEATHSIG, so it dies with the Ray worker that started it. Its children do not: when
the worker is SIGKILLed (the launcher was killed, Ray lost the worker), an orphaned grandchild
would run on. The sidecar closes that gap: it reads "+ PGID" / "- PGID" lines from a pipe
whose only writer is the launching process; when that process dies, for any reason, the pipe
ends and the sidecar SIGKILLs every group still registered, runs the cleanup commands still
registered ("c KEY ARGV-JSON" / "u KEY": containers, which the engine owns), then exits. One
sidecar per process, started at its first trial (one interpreter start, not one per trial).
It detaches (double fork) so that Ray, which SIGKILLs a dead worker's children, does not kill
it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

_SIDECAR = """
import json, os, signal, subprocess, sys
if os.fork():
    os._exit(0)  # detached: the launching process's children die with it, this must not
groups, commands = set(), {}
for line in sys.stdin:
    kind, _, rest = line.rstrip("\\n").partition(" ")
    try:
        if kind == "+":
            groups.add(int(rest))
        elif kind == "-":
            groups.discard(int(rest))
        elif kind == "c":
            key, _, argv = rest.partition(" ")
            commands[key] = json.loads(argv)
        elif kind == "u":
            commands.pop(rest, None)
    except ValueError:
        continue
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
for argv in commands.values():  # e.g. `docker rm --force NAME`: the engine owns containers
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pass
"""


class GroupReaper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe = None  # the write end; the sidecar's stdin
        self._pid = None  # the process that started the sidecar (a fork must start its own)

    def _sidecar(self):
        if self._pipe is None or self._pid != os.getpid():
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _SIDECAR], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                    start_new_session=True)  # a signal to the launcher's group spares it
                proc.wait()  # the first fork exits at once; the sidecar lives on
                self._pipe, self._pid = proc.stdin, os.getpid()
            except OSError:
                self._pipe = None
        return self._pipe

    def _send(self, line: str) -> None:
        with self._lock:
            pipe = self._sidecar()
            if pipe is None:
                return
            try:
                pipe.write(line + "\n")
                pipe.flush()
            except (OSError, ValueError):  # the sidecar is gone: the next call starts another
                self._pipe = None

    def register(self, pgid: int) -> None:
        self._send(f"+ {pgid}")

    def unregister(self, pgid: int) -> None:
        if self._pipe is not None:
            self._send(f"- {pgid}")

    def on_death(self, key: str, argv: list[str]) -> None:
        """Runs argv (after the groups are killed) if this process dies first: what a
        process group kill cannot reach, such as a container the engine runs."""
        self._send(f"c {key} {json.dumps(argv)}")

    def cancel(self, key: str) -> None:
        if self._pipe is not None:
            self._send(f"u {key}")


REAPER = GroupReaper()
