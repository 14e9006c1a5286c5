"""The reaper's sidecar process (see reaper.py), and how it finds a Ray session's processes.

Run as `python -I -S reaper_sidecar.py PID` with the launching process PID's pipe on stdin: the
standard library only, no hpt import, so it starts in milliseconds and nothing the launcher
imported can break it. It reads, one per line:
    + PGID / - PGID          a trial's process group to kill / no longer to kill
    c KEY ARGV-JSON / u KEY  a cleanup command to run (a container's `docker rm --force`) / not
    r SESSION_DIR            a Ray session this process started: every process of it dies too
When the pipe ends (the launching process died, however it died) it SIGKILLs the groups, then
(once the launching process is gone: a clean exit closes the pipe a moment before the process
ends, and the process itself holds files of its Ray session) the Ray sessions' processes,
then runs the commands, and exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

# How long the sidecar keeps killing a session's processes: a raylet being killed may still
# start a worker, so it looks again until none is left.
SESSION_KILL_SECONDS = 10.0


def session_processes(session_dir: str) -> list[int]:
    """Pids of the processes of one Ray session: those whose command line names its session
    folder (gcs_server, raylet, dashboard, log monitor) or that hold a file in it open (the
    agents and workers rename themselves `ray::...`, but keep their logs there open). Matching
    the session folder, never a process name, spares every other Ray on the machine."""
    folder = os.path.realpath(session_dir).rstrip("/")
    inside = folder + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
            if folder in argv:
                found.append(int(entry))
                continue
            for fd in os.listdir(f"/proc/{entry}/fd"):
                try:
                    target = os.readlink(f"/proc/{entry}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(inside):
                    found.append(int(entry))
                    break
        except OSError:  # gone, or not ours to look at
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie has ended
    except (OSError, IndexError):
        return False


def kill_session(session_dir: str, spare: int, seconds: float = SESSION_KILL_SECONDS) -> None:
    """SIGKILLs every process of the session but `spare` (the launching process) until none
    is left or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        pids = [pid for pid in session_processes(session_dir) if pid != spare]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not pids or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def main() -> None:
    watched = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    if os.fork():
        os._exit(0)  # detached: the launching process's children die with it, this must not
    groups, commands, sessions = set(), {}, set()
    for line in sys.stdin:
        kind, _, rest = line.rstrip("\n").partition(" ")
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
            elif kind == "r":
                sessions.add(rest)
        except ValueError:
            continue
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    if sessions:
        deadline = time.monotonic() + SESSION_KILL_SECONDS
        while _alive(watched) and time.monotonic() < deadline:
            time.sleep(0.05)
    for session in sessions:
        kill_session(session, spare=watched)
    # e.g. `docker rm --force NAME`: the engine owns containers. Last registered first, as
    # with atexit: a trial's network goes after the containers that were started on it.
    for argv in reversed(list(commands.values())):
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass


if __name__ == "__main__":
    main()
