"""One live writer per tuning job (experiment/lock.py) and the job state read from it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from hpt.experiment.job_state import job_state, no_completed_job
from hpt.experiment.lock import LOCK_FILE, JobBusy, WriterLock, holder
from hpt.experiment.resume import resumed_max_trials

HOLD = """
import sys, time
from hpt.experiment.lock import WriterLock
lock = WriterLock(sys.argv[1], "launch").acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_in_child(root):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_live_one_and_kill_9_frees_the_lock(tmp_path):
    root = tmp_path / "job"
    child = hold_in_child(root)
    try:
        assert holder(root) == {"pid": child.pid, "command": "launch"}
        with pytest.raises(JobBusy) as busy:
            WriterLock(root, "launch").acquire()
        message = str(busy.value)
        assert f"pid {child.pid}" in message and "hpt stop job" in message
        assert "`hpt launch ... --resume` again" in message
        with pytest.raises(JobBusy) as busy:
            WriterLock(root, "rerun").acquire()
        assert "then run `hpt rerun` again" in str(busy.value)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert holder(root) is None  # the kernel dropped it with the process
        began = time.monotonic()
        with WriterLock(root, "rerun"):
            assert time.monotonic() - began < 0.5  # at once, no stale-lock timeout
            assert holder(root) == {"pid": os.getpid(), "command": "rerun"}
        assert holder(root) is None
    finally:
        child.kill()
        child.wait()


def test_a_reader_looking_never_makes_a_writer_fail(tmp_path):
    root = tmp_path / "job"
    root.mkdir()
    (root / LOCK_FILE).write_text("")
    stop = time.monotonic() + 1.5

    def look():
        while time.monotonic() < stop:
            holder(root)

    import threading
    reader = threading.Thread(target=look)
    reader.start()
    try:
        for _ in range(50):
            with WriterLock(root, "launch"):
                pass
    finally:
        reader.join()


def test_no_lock_file_means_nobody_writes(tmp_path):
    assert holder(tmp_path) is None


START = {"event": "job_started", "pid": 11, "max_trials": 3}


def ended(reason, **counts):
    return {"event": "job_ended", "reason": reason, "counts": counts}


def test_the_job_state_follows_the_lock_not_a_pid_in_the_journal():
    me = os.getpid()  # alive, but it does not hold the lock: the job is not running
    start = {**START, "pid": me}
    assert job_state([start], None).status == "Stopped"
    assert job_state([start], None).reason == "LauncherLost"
    live = job_state([start], {"pid": me, "command": "launch"})
    assert live.status == "InProgress" and live.describe() == f"InProgress (launcher running, pid {me})"
    # A resuming launcher holds the lock before its job_resumed line: running already.
    assert job_state([START, ended("Stopped", Completed=1)],
                     {"pid": 99, "command": "launch"}).status == "InProgress"
    # A rerun writes the folder but is not the tuning job running.
    assert job_state([START, ended("MaxNumberOfTrainingJobsReached", Completed=2)],
                     {"pid": 99, "command": "rerun"}).status == "Completed"


def test_a_job_where_nothing_completed_is_failed_and_says_why():
    state = job_state([START, ended("MaxNumberOfTrainingJobsReached", Failed=3)], None)
    assert state.status == "Failed"
    assert state.describe() == ("Failed: no training job completed (3 Failed); every "
                                "training job it was allowed ran")
    assert no_completed_job({}) == "no training job completed (none ran)"


def test_an_end_reason_is_said_once_with_what_it_means():
    stopped = job_state([START, ended("Stopped", Completed=1)], None).describe()
    assert stopped == "Stopped (stopped by `hpt stop` or SIGTERM)"
    assert "Stopped (Stopped" not in stopped
    done = job_state([START, ended("MaxNumberOfTrainingJobsReached", Completed=3)], None)
    assert done.describe() == ("Completed (MaxNumberOfTrainingJobsReached: every training "
                               "job it was allowed ran)")


def test_a_plain_resume_keeps_the_maximum_an_earlier_resume_raised():
    def start(max_trials, space=None):
        return {"event": "job_resumed", "max_trials": max_trials, "space_max_trials": space}

    assert resumed_max_trials(start(30, 20), from_space=20, from_cli=None) == 30
    assert resumed_max_trials(start(20, 20), from_space=25, from_cli=None) == 25  # edited
    assert resumed_max_trials(start(30, 20), from_space=20, from_cli=22) == 22  # asked for
    assert resumed_max_trials({}, from_space=20, from_cli=None) == 20


def test_a_plain_resume_keeps_the_maximum_a_smaller_max_trials_set():
    # `hpt launch space.yaml --max-trials 10` (the space says 20), stopped: a plain --resume
    # runs up to 10, not 20. (Its start recorded no space value: --max-trials replaced it.)
    assert resumed_max_trials(start_of(10, None), from_space=20, from_cli=None) == 10
    # A folder of an earlier release, whose start has no space_max_trials: the maximum it had.
    assert resumed_max_trials({"event": "job_started", "max_trials": 10}, 20, None) == 10


def start_of(max_trials, space):
    return {"event": "job_started", "max_trials": max_trials, "space_max_trials": space}
