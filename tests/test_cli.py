"""The `hpt` command as a user runs it: real subprocesses, exit codes, messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_tuning_job import faulty_space

REPO = Path(__file__).resolve().parent.parent


def hpt(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "hpt.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_validate_accepts_the_bundled_spaces_once_data_exists(tmp_path):
    for space in sorted((REPO / "search_spaces").glob("*.yaml")):
        done = hpt("validate", space)
        if done.returncode == 2 and "channels." in done.stderr:
            continue  # data not prepared in this checkout; launch prepares it
        assert done.returncode == 0, done.stderr
        assert "OK" in done.stdout


def test_validate_reports_every_problem_with_exit_2_and_no_traceback(write_space):
    space = faulty_space()
    space["trainer"]["entry_pont"] = "train.py"
    space["hyperparameters"]["lr"] = {"type": "continuous", "min": 0, "max": 1, "scaling": "log"}
    path = write_space(space)
    done = hpt("validate", path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert any("trainer.entry_pont" in l and "entry_point" in l for l in lines)
    assert any("hyperparameters.lr.min" in l for l in lines)
    assert all(l.startswith(str(path)) for l in lines)


def test_missing_file_is_exit_2():
    done = hpt("validate", "no/such/space.yaml")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no/such/space.yaml" in done.stderr


def test_launch_status_report_best_through_the_cli(ray_session, write_space, tmp_path):
    """`hpt launch` joins the test session's Ray with --address, as on a cluster."""
    address = ray_session.get_runtime_context().gcs_address
    space = write_space(faulty_space(
        name="cli-job", hyperparameters={"x": {"type": "continuous", "min": 0.1, "max": 0.9}},
        static_hyperparameters={"epochs": 2}, strategy="random", limits={"max_trials": 3, "max_parallel": 2}))
    exp = tmp_path / "exp"
    done = hpt("launch", space, "--experiments-dir", exp, "--address", address)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Best training job: cli-job-" in done.stdout
    assert str(exp / "cli-job" / "table.parquet") in done.stdout
    assert done.stdout.count("Completed") >= 3  # one line per finished trial
    # Each training job ran exactly once (an actor Tune set up but did not use runs nothing).
    assert not list(exp.glob("cli-job/*/attempt-*"))

    again = hpt("launch", space, "--experiments-dir", exp, "--address", address)
    assert again.returncode == 2 and "already exists" in again.stderr

    status = hpt("status", "cli-job", "--experiments-dir", exp)
    assert status.returncode == 0 and "3 Completed" in status.stdout
    assert "MaxNumberOfTrainingJobsReached" in status.stdout
    assert "hpt overhead:" in status.stdout and "ms per trial" in status.stdout

    for fmt in ("csv", "json", "markdown"):
        report = hpt("report", "cli-job", "--format", fmt, "--experiments-dir", exp)
        assert report.returncode == 0 and "cli-job-001-" in report.stdout, fmt
    everything = hpt("report", "cli-job", "--all-columns", "--experiments-dir", exp)
    assert everything.returncode == 0 and "cli-job-001-" in everything.stdout
    rows = json.loads(hpt("report", "cli-job", "--format", "json", "--experiments-dir", exp).stdout)
    assert [r["TrainingJobStatus"] for r in rows] == ["Completed"] * 3

    best = json.loads(hpt("best", "cli-job", "--experiments-dir", exp).stdout)
    assert best["FinalObjectiveValue"] == max(r["FinalObjectiveValue"] for r in rows)
    assert Path(best["ModelArtifact"]).is_file()

    listing = json.loads(hpt("ls", "--format", "json", "--experiments-dir", exp).stdout)
    assert [(j["TuningJobName"], j["Status"], j["TrainingJobs"]) for j in listing] == [
        ("cli-job", "Completed", 3)]
    assert listing[0]["BestObjective"] == best["FinalObjectiveValue"]

    import hpt as api
    curves = api.load_metrics("cli-job", exp)
    objective = curves[curves["metric"] == "validation:accuracy"]
    assert len(objective) == 3 * 2  # every epoch of every job (epochs: 2)
    assert sorted(objective["step"].unique()) == [1, 2]
    last = objective.sort_values("step").groupby("TrainingJobName")["value"].last()
    assert sorted(last) == pytest.approx(sorted(r["FinalObjectiveValue"] for r in rows))


def test_launch_with_no_completed_trial_exits_1(ray_session, write_space, tmp_path):
    space = write_space(faulty_space(
        name="all-fail", hyperparameters={"mode": {"type": "categorical", "values": ["fail"]}}))
    address = ray_session.get_runtime_context().gcs_address
    done = hpt("launch", space, "--experiments-dir", tmp_path / "exp", "--address", address)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "No training job completed" in done.stdout
    # The tuning job itself is not "Completed" when none of its training jobs did.
    assert "Tuning job all-fail: Failed: no training job completed (1 Failed)" in done.stdout
    status = hpt("status", "all-fail", "--experiments-dir", tmp_path / "exp")
    assert status.stdout.startswith("all-fail: Failed: no training job completed (1 Failed)")
    listing = json.loads(hpt("ls", "--format", "json", "--experiments-dir",
                             tmp_path / "exp").stdout)
    assert listing[0]["Status"] == "Failed"


def test_unknown_experiment_is_exit_2(tmp_path):
    done = hpt("status", "nope", "--experiments-dir", tmp_path)
    assert done.returncode == 2 and "no tuning job 'nope'" in done.stderr


def test_features_of_later_versions_are_refused_with_exit_2_before_anything_runs(
        write_space, tmp_path):
    exp = tmp_path / "exp"
    done = hpt("launch", write_space(faulty_space(name="later")), "--runtime", "sagemaker",
               "--experiments-dir", exp)
    assert done.returncode == 2 and "runtime: sagemaker" in done.stderr
    assert not exp.exists()  # nothing half-created


def test_runtime_docker_needs_an_image_and_a_single_host(write_space, tmp_path):
    space = faulty_space(name="boxed")
    space["trainer"].update(instance_count=2, distribution="data_parallel")
    done = hpt("launch", write_space(space), "--runtime", "docker",
               "--experiments-dir", tmp_path / "exp")
    assert done.returncode == 2
    assert "trainer.image: is required for runtime: docker" in done.stderr
    assert "runtime: docker runs single-host trials" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "exp").exists()


def test_rerun_runs_one_training_job_again_with_the_same_contract(ray_session, write_space,
                                                                   tmp_path):
    space = write_space(faulty_space(
        name="again", hyperparameters={"x": {"type": "continuous", "min": 0.1, "max": 0.9}},
        static_hyperparameters={"epochs": 2}, strategy="random",
        limits={"max_trials": 2, "max_parallel": 2}))
    exp = tmp_path / "exp"
    address = ray_session.get_runtime_context().gcs_address
    assert hpt("launch", space, "--experiments-dir", exp, "--address", address).returncode == 0
    import hpt as api
    row = api.load_experiment("again", exp).iloc[1]
    done = hpt("rerun", "again", str(row["TrialNumber"]), "--experiments-dir", exp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{row['TrainingJobName']} (rerun): Completed" in done.stdout
    rerun_dir = exp / "again" / "reruns" / f"{row['TrainingJobName']}-1"
    original = Path(row["LogPath"]).parent
    hps = "algo-1/input/config/hyperparameters.json"
    same = [{k: v for k, v in json.loads((d / hps).read_text()).items()
             if k != "sagemaker_submit_directory"} for d in (rerun_dir, original)]  # a path
    assert same[0] == same[1] and "x" in same[0]
    assert (rerun_dir / "algo-1.log").read_text() == (original / "algo-1.log").read_text()
    assert hpt("rerun", "again", "nope", "--experiments-dir", exp).returncode == 2


def test_runtime_sagemaker_needs_s3_data_an_output_an_image_and_a_role(write_space, tmp_path):
    space = faulty_space(name="onsm", runtime="sagemaker")
    space["trainer"]["instance_type"] = "ml.m5.xlarge"
    space["channels"] = {"train": str(tmp_path)}
    done = hpt("launch", write_space(space), "--experiments-dir", tmp_path / "exp")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    for needed in ("trainer.image: is required for runtime: sagemaker",
                   "output: must be an s3:// URI for runtime: sagemaker",
                   "channels.train: must be an s3:// URI for runtime: sagemaker"):
        assert needed in done.stderr, done.stderr
    space.update(output="s3://out/x", channels={"train": "s3://data/train"})
    space["trainer"]["image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hpt:latest"
    env_role = {k: v for k, v in os.environ.items() if k != "HPT_SAGEMAKER_ROLE"}
    done = subprocess.run([sys.executable, "-m", "hpt", "launch", str(write_space(space)),
                           "--experiments-dir", str(tmp_path / "exp")], capture_output=True,
                          text=True, env=env_role, timeout=60)
    assert done.returncode == 2 and "pass --role arn:aws:iam::ACCOUNT:role/NAME" in done.stderr
    assert not (tmp_path / "exp").exists()


def test_a_prepare_command_that_creates_nothing_is_named_as_the_cause(write_space, tmp_path):
    space = faulty_space(name="prep", channels={"train": str(tmp_path / "never-made")},
                         prepare=["python", "-c", "pass"])
    done = hpt("launch", write_space(space), "--experiments-dir", tmp_path / "exp")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Preparing data:" in done.stdout  # it ran
    (line,) = done.stderr.strip().splitlines()
    assert "channels.train: path not found" in line
    assert "prepare: python -c pass ran and did not create it" in line
    assert "run `hpt launch`" not in line  # the user just did
    # validate runs nothing: a channel prepare will make is not an error yet, but it says so
    # (on a fresh clone the README's tour starts with validate, before any data exists).
    check = hpt("validate", write_space(space))
    assert check.returncode == 0, check.stderr
    assert "note: channels train do not exist yet; `hpt launch` runs prepare: python -c " \
           "pass first" in check.stdout
    del space["prepare"]  # without a prepare command a missing channel is an error at once
    check = hpt("validate", write_space(space))
    assert check.returncode == 2 and "channels.train: path not found" in check.stderr
    assert "create it, or fix the path" in check.stderr


def test_the_report_table_is_readable_best_first_and_fits_the_terminal():
    import pandas as pd

    from hpt.report import readable_table

    spec = {"objective": {"metric": "validation:accuracy", "type": "maximize"},
            "hyperparameters": {"lr": {}, "optimizer": {}}}
    df = pd.DataFrame({
        "lr": [0.01, 0.123456789, 0.5], "optimizer": ["sgd", "adam", "sgd"],
        "TrainingJobName": [f"job-00{i}-abcdef12" for i in (1, 2, 3)],
        "TrainingJobStatus": ["Completed", "Failed", "Completed"],
        "FinalObjectiveValue": [0.5, None, 0.9], "TrialNumber": [1, 2, 3],
        "TrainingElapsedTimeSeconds": [3.25, 1.0, 4.0],
        "TrainingStartTime": pd.to_datetime([1.7e9] * 3, unit="s", utc=True),
        "FailureReason": [None, "AlgorithmError: exit code 1; stderr tail:\n" + "x" * 400, None],
        "GpuIds": [None] * 3, "S3ModelArtifact": [None] * 3})
    for width in (80, 120):
        lines = readable_table(df, spec, width).splitlines()
        assert all(len(line) <= width for line in lines), lines
        assert lines[0].split() == ["#", "status", "validation:accuracy", "lr", "optimizer",
                                    "seconds", "reason"]
        assert [line.split()[0] for line in lines[2:]] == ["3", "1", "2"]  # best first
        assert "AlgorithmError" in lines[-1] and lines[-1].endswith("…")
        assert "0.1235" in lines[-1]  # floats shortened
        assert "GpuIds" not in lines[0] and "TrainingStartTime" not in lines[0]
