"""MLflow tracking against a real `mlflow server` (sqlite, on 127.0.0.1, started here): a tuning
job is one parent run and a child run per training job whose params, metric histories and
statuses equal the experiment table; a resumed job continues the same runs; a server that goes
down never fails the job, and what it missed is written once it is back."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import hpt
from hpt.experiment.data_points import read_points
from hpt.experiment.store import attempts
from hpt.report.summary import state_of
from hpt.spacefile import load_spec
from hpt.tracking.mlflow_plan import RUN_STATUS, mlflow_target
from helpers import events, load_script, wait_for

CURVES = Path(__file__).parent / "trainers" / "curves"
pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("mlflow") is None, reason="needs mlflow (dev extra)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = load_script("mlflow_server").MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield running
    running.stop()


def curves_space(name, uri, profiles, seconds=0.2, epochs=5, **extra):
    """`profiles`: QUALITY values (a run of `epochs` epochs of `seconds`), "oops" fails."""
    return {
        "name": name,
        "trainer": {"source_dir": str(CURVES), "entry_point": "train.py", "cpus_per_host": 1,
                    "max_runtime_seconds": 60},
        "static_hyperparameters": {"epochs": epochs},
        "hyperparameters": {"profile": {"type": "categorical", "values": [
            p if p == "oops" else f"{p}:{seconds}" for p in profiles]}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"},
                               {"name": "epoch", "regex": "epoch=([0-9]+)"}],
        "strategy": "grid",
        "limits": {"max_parallel": 2},
        "tracking": {"mlflow": {"uri": uri}},
        **extra,
    }


def launch_command(path, exp, *extra):
    return [sys.executable, "-m", "hpt.cli.main", "launch", str(path), "--experiments-dir", str(exp),
            "--no-dashboard", *extra]


def runs_of(uri, experiment):
    """The experiment's parent run and its child runs by training job name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["TrainingJobName"]: r for r in runs
                if "mlflow.parentRunId" in r.data.tags}
    return client, parents, children


def assert_mirrors_the_table(uri, name, exp):
    """One parent; a child per row with the row's params, status and every data point the
    job's attempts wrote (each once); the parent ended as the tuning job did."""
    client, parents, children = runs_of(uri, name)
    assert len(parents) == 1
    parent = parents[0]
    df = hpt.load_experiment(name, exp).set_index("TrainingJobName")
    assert sorted(children) == sorted(df.index)
    for job, run in children.items():
        row = df.loc[job]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params == {"profile": row["profile"]}
        assert run.data.tags["TrainingJobStatus"] == row["TrainingJobStatus"]
        assert run.info.status == RUN_STATUS[row["TrainingJobStatus"]]
        if row["TrainingJobStatus"] == "Failed":
            assert run.data.tags["FailureReason"] == row["FailureReason"]
        trial_dir = exp / name / job
        for metric in ("acc", "epoch"):
            wrote = {(p["step"], p["value"], round(p["timestamp"] * 1000))
                     for folder in (*attempts(trial_dir), trial_dir)
                     for p in read_points(folder / "metrics.jsonl") if p["metric"] == metric}
            history = [(m.step, m.value, m.timestamp)
                       for m in client.get_metric_history(run.info.run_id, metric)]
            assert len(history) == len(set(history)), f"{job} {metric}: a point sent twice"
            assert set(history) == wrote, f"{job} {metric}"
        if row["TrainingJobStatus"] == "Completed":
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["model.tar.gz"]
    state = state_of(exp / name)
    assert parent.data.tags["HyperParameterTuningJobStatus"] == state.status
    assert parent.info.status == RUN_STATUS[state.status]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == \
        {"report.html", "spec.json"}
    return parent


def test_the_uri_comes_from_the_command_the_space_or_mlflows_variable(write_space):
    from hpt.core.errors import UserError

    named = load_spec(write_space(curves_space("t", "http://s:3", ["0.9"])))
    unnamed = load_spec(write_space(curves_space("t", None, ["0.9"])))
    untracked = load_spec(write_space(curves_space("t", None, ["0.9"], tracking={})))
    env = {"MLFLOW_TRACKING_URI": "http://h:1"}
    assert mlflow_target(named, None, env).uri == "http://s:3"
    assert mlflow_target(named, "http://c:2", env).uri == "http://c:2"
    assert mlflow_target(unnamed, None, env).uri == "http://h:1"
    assert mlflow_target(unnamed, None, env).experiment == "t"
    assert mlflow_target(untracked, None, env) is None  # the variable alone turns nothing on
    assert mlflow_target(untracked, "http://c:2", {}).uri == "http://c:2"
    with pytest.raises(UserError, match="tracking.mlflow.uri: no tracking server named"):
        mlflow_target(unnamed, None, {})


def test_a_tracked_job_killed_and_resumed_continues_the_same_runs(server, write_space,
                                                                   tmp_path):
    """kill -9 of the launcher after two training jobs ended, then --resume: one parent run
    (the same), one child per training job, every point of every attempt once."""
    space = curves_space("mlrun", server.uri, ["0.9", "0.5", "oops", "0.7", "0.6"],
                         seconds=0.4)
    path, exp = write_space(space), tmp_path / "exp"
    first = subprocess.Popen(launch_command(path, exp), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: sum(e["event"] == "trial_ended" for e in events(exp, "mlrun")) >= 2
                 and any(e["event"] == "tracking_started" for e in events(exp, "mlrun")),
                 timeout=120, what="two ended training jobs, tracked")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = {e["parent_run_id"] for e in events(exp, "mlrun") if e["event"] == "tracking_started"}
    done = subprocess.run(launch_command(path, exp, "--resume"), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "MLflow: 5 training job runs in" in done.stdout
    parent = assert_mirrors_the_table(server.uri, "mlrun", exp)
    assert {parent.info.run_id} == before  # the resumed job went on in the same parent run
    ended = [e for e in events(exp, "mlrun") if e["event"] == "tracking_ended"]
    assert ended[-1]["complete"] and not ended[-1]["unsent_points"]


def test_a_server_killed_mid_job_never_fails_it_and_gets_what_it_missed(server, write_space,
                                                                         tmp_path):
    """The server is killed while training jobs run and started again a while later: the
    job completes (on time), and the runs end up whole."""
    space = curves_space("mldown", server.uri, ["0.9", "0.5", "0.7", "0.8", "0.6"],
                         seconds=0.5, epochs=8)
    # The first training job takes 24 s: the job outlives the server's restart (~10 s).
    space["hyperparameters"]["profile"]["values"].insert(0, "0.95:3")
    path, exp = write_space(space), tmp_path / "exp"
    job = subprocess.Popen(launch_command(path, exp), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(e["event"] == "tracking_started" for e in events(exp, "mldown")),
                 timeout=60, what="tracking to start")
        server.stop()
        wait_for(lambda: any(e["event"] == "tracking_unavailable"
                             for e in events(exp, "mldown")), timeout=30, what="noticed")
        server.start()
        assert job.poll() is None, "the job ended before the server was back"
        out, _ = job.communicate(timeout=180)
    finally:
        job.kill()
        if not server.answers():
            server.start()
    assert job.returncode == 0, out[-3000:]
    kinds = [e["event"] for e in events(exp, "mldown") if e["event"].startswith("tracking_")]
    assert "tracking_recovered" in kinds, out[-3000:]
    assert "does not answer" in out and "answers again" in out
    assert_mirrors_the_table(server.uri, "mldown", exp)


def test_a_server_down_to_the_end_is_reported_and_hpt_track_writes_it_later(
        server, write_space, tmp_path):
    """Nothing answers at the job's tracking URI: the job completes, the end says what was
    not written, and `hpt track` sends it all once a server answers."""
    closed = f"http://127.0.0.1:{load_script('mlflow_server').free_port()}"
    space = curves_space("mlnever", closed, ["0.9", "oops", "0.7"], seconds=0.1)
    path, exp = write_space(space), tmp_path / "exp"
    done = subprocess.run(launch_command(path, exp), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"MLflow: not written to {closed}" in done.stdout
    assert "`hpt track mlnever` sends them" in done.stdout
    ended = [e for e in events(exp, "mlnever") if e["event"] == "tracking_ended"][-1]
    assert not ended["complete"] and ended["unsent_points"] == 2 * 5 * 2  # 2 jobs, 5 epochs
    track = [sys.executable, "-m", "hpt.cli.main", "track", "mlnever", "--experiments-dir",
             str(exp), "--mlflow-uri", server.uri]
    for said in ("MLflow: 3 training job runs in", "MLflow: nothing to send"):
        # A second track finds nothing missing, sends nothing twice, and says so (it said
        # `6 training job runs and 0 data points sent`).
        done = subprocess.run(track, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert said in done.stdout, done.stdout
        assert_mirrors_the_table(server.uri, "mlnever", exp)


def test_what_a_training_job_and_its_points_become_in_mlflow():
    from hpt.tracking.mlflow_plan import ended_metrics, ended_tags, metric_key, point_key

    assert metric_key("validation:accuracy") == "validation:accuracy"
    assert metric_key("loss(%)") == "loss___" and metric_key("/a/../b//c") == "a/b/c"
    # A point carried into a new attempt (same metric, step, value, time) is the same point.
    point = {"metric": "acc", "step": 3, "value": 0.5, "timestamp": 1700000000.1234}
    assert point_key(point) == point_key(dict(point)) == ("acc", 3, 0.5, 1700000000123)
    row = {"status": "Failed", "failure_reason": "AlgorithmError: boom", "start_time": 10.0,
           "end_time": 12.5, "retries": 1, "queue_wait_seconds": 0.25, "launch_seconds": None,
           "hyperparameters": {"lr": 0.1}}
    assert ended_metrics(row) == {"TrainingElapsedTimeSeconds": 2.5, "Retries": 1.0,
                                  "ExploitCount": 0.0, "QueueWaitSeconds": 0.25}
    assert ended_tags(row) == {"TrainingJobStatus": "Failed",
                               "FailureReason": "AlgorithmError: boom",
                               "Hyperparameters": '{"lr": 0.1}'}


def test_the_follower_reads_a_metrics_file_to_its_end_after_a_new_attempt_moved_it(tmp_path):
    import json

    from hpt.experiment.store import archive_attempt
    from hpt.tracking.mlflow_sync import PointsFollower

    trial = tmp_path / "job"
    trial.mkdir()
    line = lambda step: json.dumps({"metric": "acc", "step": step, "value": step / 10,  # noqa: E731
                                    "timestamp": 100.0 + step}) + "\n"
    with open(trial / "metrics.jsonl", "w") as f:
        f.write(line(1))
        f.flush()
        follower = PointsFollower(trial / "metrics.jsonl")
        assert [p["step"] for p in follower.read()] == [1]
        f.write(line(2) + '{"metric": "acc", "st')  # a line still being written
        f.flush()
        assert [p["step"] for p in follower.read()] == [2]
        f.write('ep": 3, "value": 0.3, "timestamp": 103.0}\n')
    archive_attempt(trial)  # a retry: the file moves to attempt-1/, a new one starts
    (trial / "metrics.jsonl").write_text(line(1) + line(2) + line(3) + line(4))
    assert [p["step"] for p in follower.read()] == [3, 1, 2, 3, 4]


@pytest.mark.smoke
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_nothing_of_the_mlflow_server_script_outlives_it(how, tmp_path):
    """scripts/mlflow_server.py on SIGTERM exited and left `mlflow server`, uvicorn and 7 huey
    consumers serving."""
    from helpers import free_port, processes_in

    folder = tmp_path / "mlflow"
    port = free_port()
    script = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent.parent /
                                                   "scripts" / "mlflow_server.py"),
                               str(folder), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "MLflow at" in script.stdout.readline()
        assert len(processes_in(folder)) >= 2  # the server and its workers
        script.send_signal(how)
        script.wait(timeout=30)
    finally:
        script.kill()
    wait_for(lambda: processes_in(folder) == [], timeout=30, what="the server's processes")
