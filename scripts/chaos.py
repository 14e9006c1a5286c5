"""Chaos run: a real tuning job whose trials misbehave on purpose, plus faults from outside.

    python scripts/chaos.py --quick        # every fault once (grid), one launcher kill (~1 min)
    python scripts/chaos.py --trials 120   # soak: random faults, a launcher kill every 40 trials

Each trial's `fault` hyperparameter (tests/trainers/chaos/train.py) makes it fail for real:
failure file, exit code, SIGSEGV, SIGKILL from inside (the OOM killer's way), a hang past
max_runtime_seconds, SIGTERM ignored, orphaned grandchildren, 50 MB without a newline, a
200k-line flood, silence. From outside, while the job runs, this script SIGKILLs trial
scripts and (on the tune controller) Ray worker processes, SIGKILLs the launcher itself,
tears the journal's last line, and resumes. At the end every trial must have the status and
reason hpt promises, no trial may be lost or run twice, and no process of the job (nor a warm
interpreter's folder) may be left. One JSON line on stdout: faults injected / survived, by kind; exit status 1 when any
fault was not survived.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHAOS_TRAINER = REPO / "tests" / "trainers" / "chaos"
MAX_RUNTIME = 4

# fault -> (status, FailureReason pattern or None): what hpt promises for each.
EXPECTED = {
    "none": ("Completed", None),
    "slow": ("Completed", None),
    "failure_file": ("Failed", r"^ValueError: chaos failure_file$"),
    "exit_code": ("Failed", r"exit code 3.*chaos: exiting with code 3"),
    "segfault": ("Failed", r"SIGSEGV"),
    "oom_kill": ("Failed", r"SIGKILL"),
    "hang": ("Failed", r"^MaxRuntimeExceeded"),
    "ignore_sigterm": ("Failed", r"^MaxRuntimeExceeded"),
    "grandchild": ("Completed", None),
    "grandchild_holding_stdout": ("Completed", None),
    "silent": ("Failed", r"^ObjectiveMetricNeverMatched"),
    "long_line": ("Completed", None),
    "flood": ("Completed", None),
    "killed_from_outside": ("Failed", r"SIGKILL"),
    "worker_killed": ("Completed", None),  # an infrastructure fault: retried
}
NOT_FAULTS = {"none", "slow"}
# Faults that need a Ray worker between the launcher and the host: on the local controller
# the launcher drives the host itself (killing it is the launcher_kill fault).
RAY_WORKER_FAULTS = {"worker_killed"}


def faults_for(controller: str) -> list[str]:
    """The `fault` values a job on this controller draws."""
    return [f for f in EXPECTED if controller == "tune" or f not in RAY_WORKER_FAULTS]


def space(name: str, trials: int, grid: bool, mark: str, state_dir: Path,
          warm: bool = False, controller: str = "local") -> dict:
    return {
        "name": name,
        "trainer": {"source_dir": str(CHAOS_TRAINER), "entry_point": "train.py",
                    "cpus_per_host": 1, "max_runtime_seconds": MAX_RUNTIME,
                    "warm_start": warm},
        "static_hyperparameters": {"epochs": 2, "x": 0.9, "mark": mark,
                                   "state_dir": str(state_dir)},
        "hyperparameters": {"fault": {"type": "categorical", "values": faults_for(controller)}},
        "objective": {"metric": "validation:accuracy", "type": "maximize"},
        "metric_definitions": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "grid" if grid else "random",
        "seed": 7,
        "limits": {"max_trials": trials, "max_parallel": 2},
    }


def check_trial(row: dict, resumed_lost: set[str]) -> str | None:
    """None when the trial ended as promised for its fault, else what went wrong."""
    fault = row["fault"]
    status, pattern = EXPECTED[fault]
    reason = row.get("FailureReason") or ""
    if row["TrainingJobStatus"] != status:
        return f"{row['TrainingJobName']} ({fault}): {row['TrainingJobStatus']} {reason!r}, " \
               f"expected {status}"
    if pattern and not re.search(pattern, reason, re.S):
        return f"{row['TrainingJobName']} ({fault}): reason {reason!r} !~ {pattern!r}"
    if fault == "worker_killed" and row["TrainingJobName"] not in resumed_lost \
            and row.get("Retries") != 1:
        return f"{row['TrainingJobName']} ({fault}): Retries={row.get('Retries')}, expected 1"
    return None


# ---------------------------------------------------------------------------------------------
# The outside world: processes


def processes() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                found[int(entry)] = raw.decode(errors="replace").split("\0")
    return found


def worker_of(log_path: str) -> int | None:
    """The Ray worker running a trial: the process holding the trial's log file open (the
    script writes to pipes; its hpt host process, in the worker, writes the log)."""
    for pid in processes():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == log_path:
                    return pid
        except OSError:
            continue
    return None


class Killer(threading.Thread):
    """SIGKILLs each `killed_from_outside` trial script and each `worker_killed` trial's Ray
    worker once, then leaves a flag so that the retry (if any) trains normally. The trial
    scripts announce themselves in state_dir (`<job>.pid`: pid and fault)."""

    def __init__(self, state_dir: Path, experiment: Path):
        super().__init__(daemon=True)
        self.state_dir, self.experiment = state_dir, experiment
        self.kills: list[dict] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            for announced in self.state_dir.glob("*.pid"):
                job = announced.name[:-len(".pid")]
                flag = self.state_dir / f"{job}.killed"
                if flag.exists():
                    continue
                try:
                    pid_text, fault = announced.read_text().split()
                    pid = int(pid_text)
                    os.kill(pid, 0)
                except (OSError, ValueError):  # gone (its launcher was killed): it reruns
                    continue
                target = pid if fault == "killed_from_outside" else \
                    worker_of(str(self.experiment / job / "algo-1.log"))
                if target is None:
                    continue
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                flag.touch()
                self.kills.append({"fault": fault, "job": job, "pid": target})


def ray_sessions(journal: Path) -> list[str]:
    """The session folders of the Rays the job's launchers started (journaled at start)."""
    from hpt.experiment.store import read_journal

    return [e["session_dir"] for e in read_journal(journal)
            if e["event"] == "ray_connected" and e.get("started_here") and e.get("session_dir")]


def leftovers(mark: str, sessions: list[str], wait: float = 15.0) -> list[str]:
    """Processes of the job still alive: marked ones (trial scripts and their children), and
    every process of its launchers' Ray sessions (by session folder: Ray's agents rename
    themselves, so their command line no longer says whose they are)."""
    from hpt.processes.reaper_sidecar import session_processes

    deadline = time.time() + wait
    while True:
        ray_pids = {pid for session in sessions for pid in session_processes(session)}
        left = [" ".join(argv)[:160] for pid, argv in processes().items()
                if pid != os.getpid() and (mark in argv or pid in ray_pids)]
        if not left or time.time() > deadline:
            return left
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# The run


def ended_trials(journal: Path) -> int:
    from hpt.experiment.store import read_journal

    return sum(1 for e in read_journal(journal) if e["event"] == "trial_ended")


def launch(space_file: Path, experiments: Path, log: Path, resume: bool,
           controller: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "hpt", "launch", str(space_file), "--no-dashboard",
            "--controller", controller, "--experiments-dir", str(experiments)] + \
        (["--resume"] if resume else [])
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, cwd=REPO)


def run(trials: int, grid: bool, launcher_kills: int, workdir: Path, warm: bool = False,
        controller: str = "local") -> dict:
    import yaml

    mark = f"hpt-chaos-{uuid.uuid4().hex[:8]}"
    state_dir, experiments = workdir / "state", workdir / "experiments"
    state_dir.mkdir(parents=True)
    space_file = workdir / "chaos.yaml"
    space_file.write_text(yaml.safe_dump(space("chaos", trials, grid, mark, state_dir, warm,
                                                  controller)))
    log = workdir / "launcher.log"
    warm_dirs = Path(tempfile.gettempdir()).glob  # the warm interpreter's folders
    warm_before = set(warm_dirs("hpt-warm-*"))
    killer = Killer(state_dir, experiments / "chaos")
    killer.start()
    started = time.time()
    code, launches, job_level = drive_launchers(space_file, experiments, log, trials,
                                                launcher_kills, controller)
    killer.done.set()
    killer.join()
    seconds = time.time() - started
    sessions = ray_sessions(experiments / "chaos" / "journal.jsonl")
    left = leftovers(mark, sessions)
    left += [f"folder {path}" for path in sorted(set(warm_dirs("hpt-warm-*")) - warm_before)]
    failures, by_fault, trials_lost, duplicated = judge(
        trials, experiments, log, code, launches, job_level, sessions, left, controller)
    injected = sum(v["injected"] for v in by_fault.values())
    survived = sum(v["survived"] for v in by_fault.values())
    return {"bench": "chaos", "trials": trials, "strategy": "grid" if grid else "random",
            "warm_start": warm, "controller": controller,
            "faults_injected": injected, "faults_survived": survived,
            "trials_lost": trials_lost, "trials_duplicated": duplicated,
            "leftover_processes": len(left), "launcher_kills": job_level.count("launcher_kill"),
            "outside_kills": len(killer.kills), "seconds": round(seconds, 1),
            "by_fault": dict(sorted(by_fault.items())), "failures": failures}


def drive_launchers(space_file: Path, experiments: Path, log: Path, trials: int,
                    launcher_kills: int, controller: str) -> tuple[int, int, list[str]]:
    """The job's launcher, SIGKILLed at evenly spaced points of the job, each kill followed by
    a torn journal line and a resume. Returns the last launcher's exit code, the number of
    launches and the job-level faults injected."""
    journal = experiments / "chaos" / "journal.jsonl"
    kill_points = [trials * (k + 1) // (launcher_kills + 1) for k in range(launcher_kills)]
    job_level = []
    proc = launch(space_file, experiments, log, resume=False, controller=controller)
    launches = 1
    for point in kill_points:
        while proc.poll() is None and ended_trials(journal) < point:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(journal, "ab") as f:  # a crash mid-write of the next event
            f.write(b'{"event": "trial_ended", "training_job_na')
        job_level.append("launcher_kill")
        job_level.append("torn_journal_line")
        time.sleep(1.0)  # Ray notices its driver is gone
        proc = launch(space_file, experiments, log, resume=True, controller=controller)
        launches += 1
    return proc.wait(timeout=900), launches, job_level


def judge(trials: int, experiments: Path, log: Path, code: int, launches: int,
          job_level: list[str], sessions: list[str], left: list[str], controller: str):
    """What the job came through: the failures found, every fault kind's injected and
    survived counts, the training jobs lost and duplicated."""
    import hpt
    from hpt.experiment.store import read_journal

    events = list(read_journal(experiments / "chaos" / "journal.jsonl"))
    resumed = [e for e in events if e["event"] == "job_resumed"]
    resumed_lost = {name for e in resumed for name in e.get("lost", [])}
    rows = hpt.load_experiment("chaos", experiments).to_dict("records")
    names = [r["TrainingJobName"] for r in rows]
    failures = [] if code == 0 else [f"the last launcher exited {code}"]
    # Each launcher on Tune starts its own Ray (else the Ray check above would look at
    # nothing); the local controller starts none without the dashboard.
    ray_launches = launches if controller == "tune" else 0
    if len(sessions) != ray_launches:
        failures.append(f"{launches} launches journaled {len(sessions)} Ray sessions")
    by_fault: dict[str, dict[str, int]] = {}

    def count(kind: str, survived: bool) -> None:
        entry = by_fault.setdefault(kind, {"injected": 0, "survived": 0})
        entry["injected"] += 1
        entry["survived"] += int(survived)

    for row in rows:
        problem = check_trial(row, resumed_lost)
        if problem:
            failures.append(problem)
        if row["fault"] not in NOT_FAULTS:
            count(row["fault"], problem is None)
    trials_lost = trials - len(set(names))
    duplicated = len(names) - len(set(names))
    log_text = log.read_text(errors="replace")
    reported_torn = sum(1 for e in resumed if e.get("unreadable_journal_lines"))
    for kind in job_level:
        if kind == "launcher_kill":
            count(kind, trials_lost == 0 and duplicated == 0)
        else:
            count(kind, reported_torn >= 1 and "unreadable line" in log_text)
    if trials_lost or duplicated:
        failures.append(f"{trials_lost} training jobs lost, {duplicated} duplicated")
    if left:
        failures.append(f"left running: {left}")
    return failures, by_fault, trials_lost, duplicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every fault once (grid) and one launcher kill")
    parser.add_argument("--trials", type=int, default=120, help="soak: trials (random faults)")
    parser.add_argument("--launcher-kills", type=int, default=None,
                        help="launcher SIGKILLs + resumes (default: 1 quick, 1 per 40 trials)")
    parser.add_argument("--warm", action="store_true",
                        help="trials fork from the warm interpreter (trainer.warm_start)")
    parser.add_argument("--controller", choices=["local", "tune"], default="local",
                        help="who drives the trials (hpt launch --controller)")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (default: a temp dir)")
    opts = parser.parse_args()
    trials = len(faults_for(opts.controller)) if opts.quick else opts.trials
    kills = opts.launcher_kills if opts.launcher_kills is not None else \
        (1 if opts.quick else max(1, trials // 40))
    with tempfile.TemporaryDirectory(prefix="hpt-chaos-") as tmp:
        workdir = Path(opts.keep) if opts.keep else Path(tmp)
        result = run(trials, grid=opts.quick, launcher_kills=kills, workdir=workdir,
                     warm=opts.warm, controller=opts.controller)
    result["quick"] = opts.quick
    print(json.dumps(result), flush=True)
    sys.exit(0 if not result["failures"] else 1)


if __name__ == "__main__":
    main()
