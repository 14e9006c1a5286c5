"""The README's tour, as a new user runs it: a folder laid out like a fresh clone, the
default relative experiments folder, every command of the tour block in the README, each
checked against what the README says it does. The job is the default digits-cnn space,
made small (4 training jobs of 1 epoch) so the walk takes about a minute.

Commands run in the tour's order, except that `hpt stop` (which the README says runs "from
another shell") stops the first launch while it runs, and `hpt serve` (which runs until
Ctrl-C) runs last, in the background, asked for /ping and one /invocations.

The quick start runs too, unchanged: the default job, 20 training jobs. Both run in a new
user's shell (tests/user_env.py): none of the test suite's variables, a HOME of its own."""

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from user_env import hpt_command, user_env

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke

REPO = Path(__file__).resolve().parent.parent
SPACE = "search_spaces/digits-cnn.yaml"
JOB = "digits-cnn"
SMALL = {"max_trials": 4, "max_parallel": 2}


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def tour_commands() -> list[list[str]]:
    """The tour block's commands, comments dropped, as argv lists."""
    commands = []
    for line in readme_block("## A tour").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def invocation_payload() -> bytes:
    """The JSON body of the README's `curl ... /invocations` example."""
    block = readme_block("### Serving the best model")
    return re.search(r"-d '(\{.*?\})'", block, re.S).group(1).encode()


def fresh_clone(root: Path) -> Path:
    """What a fresh clone has for the default job: the trainer, the data script and the space
    (no data yet)."""
    shutil.copytree(REPO / "trainers" / "cnn", root / "trainers" / "cnn")
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "prepare_data.py", root / "scripts")
    (root / "search_spaces").mkdir()
    shutil.copy(REPO / SPACE, root / SPACE)
    return root


@pytest.fixture
def clone(tmp_path):
    """A fresh clone with the job made small; the tour runs from its top folder."""
    root = fresh_clone(tmp_path / "hpt")
    space = yaml.safe_load((REPO / SPACE).read_text())
    space["limits"].update(SMALL)
    space["static_hyperparameters"]["epochs"] = 1
    (root / SPACE).write_text(yaml.safe_dump(space, sort_keys=False))
    return root


def test_the_quick_start_runs_the_default_job_as_the_readme_says(tmp_path):
    install, launch = [part.strip() for part in readme_block("## Quick start").splitlines()[0]
                       .split("&&")]
    assert install == 'pip install -e ".[cnn]"'  # this environment has it
    root = fresh_clone(tmp_path / "hpt")
    began = time.time()
    done = subprocess.run(hpt_command() + shlex.split(launch)[1:], cwd=root,
                          env=user_env(tmp_path / "home"), capture_output=True, text=True,
                          timeout=600)
    took = time.time() - began
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
    assert f"Tuning job {JOB}: Completed (MaxNumberOfTrainingJobsReached" in done.stdout
    df = __import__("hpt").load_experiment(root / "experiments" / JOB)
    assert len(df) == 20 and (df["TrainingJobStatus"] == "Completed").all()
    # The README: 20 trials, 2 at a time, about a minute on 2 cores; best >= 98.5% (the
    # space's own comment). The time is printed, not asserted (a benchmark's business).
    assert df["FinalObjectiveValue"].max() >= 0.985
    print(f"quick start: {took:.0f} s, best {df['FinalObjectiveValue'].max():.4f}")


def wait_for_event(journal: Path, event: str, launcher: subprocess.Popen) -> None:
    deadline = time.time() + 180
    while time.time() < deadline and launcher.poll() is None:
        if journal.is_file() and f'"{event}"' in journal.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"no {event} in {journal} (launcher exit {launcher.poll()})")


def wait_for_completed(journal: Path, launcher: subprocess.Popen) -> None:
    from hpt.experiment.store import read_journal
    from hpt.experiment.table import trial_rows

    deadline = time.time() + 180
    while time.time() < deadline and launcher.poll() is None:
        if any(row.get("status") == "Completed"
               for row in trial_rows(list(read_journal(journal)))):
            return
        time.sleep(0.2)
    raise AssertionError(f"no training job completed (launcher exit {launcher.poll()})")


def newest_running(journal: Path) -> int:
    """The TrialNumber of the newest training job that has started and not ended."""
    from hpt.experiment.store import read_journal
    from hpt.experiment.table import trial_rows

    running = [row["trial_number"] for row in trial_rows(list(read_journal(journal)))
               if row.get("status", "InProgress") == "InProgress"]
    assert running, journal.read_text()
    return max(running)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_tour_works_as_written_from_a_fresh_clone(clone, tmp_path):
    env = user_env(tmp_path / "home")
    hpt_cli = hpt_command()

    def run(argv, timeout=300):
        assert argv[0] == "hpt", argv
        done = subprocess.run(hpt_cli + argv[1:], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, (argv, done.stdout + done.stderr)
        assert "Traceback" not in done.stderr, (argv, done.stderr)
        return done.stdout

    tour = tour_commands()
    by_name = {}
    for argv in tour:
        key = argv[1] + "".join(f" {a}" for a in argv[2:] if a.startswith("--"))
        by_name[key] = argv
    assert sorted(by_name) == sorted([
        "validate", "launch", "status", "report", "report --format", "best", "serve", "ls",
        "stop", "stop --training-job", "launch --resume", "launch --resume --max-trials",
        "rerun"]), sorted(by_name)

    # validate on a fresh clone: OK, and it says the data will be prepared at launch.
    out = run(by_name["validate"])
    assert f"{SPACE}: OK" in out and "prepare" in out

    # launch (runs prepare, then the job); stop it from "another shell" mid-job.
    launcher = subprocess.Popen(hpt_cli + by_name["launch"][1:], cwd=clone, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = clone / "experiments" / JOB / "journal.jsonl"
    try:
        wait_for_event(journal, "trial_started", launcher)
        # One training job stopped alone as soon as it starts (the README's number is one of
        # its 20; this job has 4, so the one running stands in): it ends Stopped, the job
        # goes on.
        victim = newest_running(journal)
        out = run(by_name["stop --training-job"][:-1] + [str(victim)])
        assert "stop requested; the rest of digits-cnn goes on" in out, out
        assert out.rstrip().endswith(": Stopped"), out
        assert launcher.poll() is None
        # Mid-job: once another training job has completed (a launch whose every job ended
        # Stopped exits 1, saying that none completed).
        wait_for_completed(journal, launcher)
        status = run(by_name["status"])
        assert re.search(rf"{JOB}: InProgress \(launcher running, pid {launcher.pid}\)", status)
        out = run(by_name["stop"])
        assert "stop requested" in out
        out, err = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, out + err
    assert "Preparing data:" in out and "--resume` continues it" in out
    stopped = [line for line in out.splitlines() if re.match(rf"{JOB}-\d{{3}}-\w+  Stopped ", line)]
    alone = [line for line in stopped if line.startswith(f"{JOB}-{victim:03d}-")]
    assert len(alone) == 1 and "StopRequested: hpt stop --training-job" in alone[0], out
    assert all("Stopped: the tuning job ended (Stopped)" in s for s in stopped if s not in alone)
    assert "Token authentication is enabled" not in err  # Ray's own warning stays in its logs

    # resume: runs to the job's end.
    out = run(by_name["launch --resume"])
    assert "Completed" in out and "Best training job: digits-cnn-" in out
    status = run(by_name["status"])
    assert status.startswith(f"{JOB}: Completed") and f"(max {SMALL['max_trials']})" in status
    assert "best:" in status

    # report: a readable table, best first; html beside the experiment.
    table = run(by_name["report"])
    header = table.splitlines()[0].split()
    assert header[:3] == ["#", "status", "validation:accuracy"] and "lr" in header
    assert max(len(line) for line in table.splitlines()) < 200
    out = run(by_name["report --format"])
    assert (clone / "experiments" / JOB / "report.html").is_file() and "wrote" in out

    best = json.loads(run(by_name["best"]))
    assert best["TrainingJobName"].startswith(f"{JOB}-") and Path(best["ModelArtifact"]).is_file()
    listing = run(by_name["ls"])
    assert re.search(rf"^{JOB}\s+Completed\s+{SMALL['max_trials']}\b", listing, re.M), listing

    # resume --max-trials extends the job; a plain --resume afterwards keeps that maximum.
    extend = by_name["launch --resume --max-trials"]
    extended = int(extend[extend.index("--max-trials") + 1])
    extend = extend[:extend.index("--max-trials") + 1] + [str(SMALL["max_trials"] + 2)]
    out = run(extend)
    # The one stopped alone stays Stopped (a resume does not undo a StopTrainingJob).
    assert f"{SMALL['max_trials'] + 1} Completed, 1 Stopped" in out, out
    out = run(by_name["launch --resume"])  # done already: says so, starts no Ray
    assert "nothing to run" in out and f"max_trials {SMALL['max_trials'] + 2}" in out, out
    assert "Ray dashboard" not in out
    status = run(by_name["status"])
    assert f"(max {SMALL['max_trials'] + 2})" in status, status
    assert extended > SMALL["max_trials"]  # the README's own number extends its job too

    # rerun with the default, relative experiments folder (this crashed).
    rerun = by_name["rerun"]
    number = min(int(rerun[-1]), SMALL["max_trials"])
    out = run(rerun[:-1] + [str(number)])
    assert re.search(rf"{JOB}-{number:03d}-[0-9a-f]{{8}} \(rerun\): Completed", out), out
    assert list((clone / "experiments" / JOB / "reruns").glob(f"{JOB}-{number:03d}-*-1"))

    # serve the best model; /ping, then the README's own /invocations example.
    port = free_port()
    server = subprocess.Popen(hpt_cli + by_name["serve"][1:] + ["--port", str(port)], cwd=clone,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert server.poll() is None and time.time() < deadline, server.stdout.read()
                time.sleep(0.3)
        request = urllib.request.Request(f"{url}/invocations", data=invocation_payload(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            predicted = json.loads(answer.read())
        assert isinstance(predicted["predictions"], list) and len(predicted["predictions"]) == 1
        assert predicted["predictions"][0] in range(10)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            out, _ = server.communicate(timeout=60)
        finally:
            server.kill()
    assert "serving programs ended" in out
