"""The `hpt` command as a user runs it: real subprocesses, exit codes, messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import faulty_space

REPO = Path(__file__).resolve().parent.parent


def hpt(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "hpt.cli.main", *map(str, args)], cwd=cwd,
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
    import hpt as api
    table = api.load_experiment("cli-job", exp)
    assert [r["x"] for r in rows] == table["x"].tolist()  # exactly, not rounded

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


def test_runtime_docker_needs_an_image_and_whole_channels_across_hosts(write_space, tmp_path):
    (tmp_path / "data").mkdir()
    space = faulty_space(name="boxed", channels={"train": {
        "uri": str(tmp_path / "data"), "distribution": "ShardedByS3Key"}})
    space["trainer"].update(instance_count=2, distribution="data_parallel")
    done = hpt("launch", write_space(space), "--runtime", "docker",
               "--experiments-dir", tmp_path / "exp")
    assert done.returncode == 2
    assert "trainer.image: is required for runtime: docker" in done.stderr
    assert ("channels.train.distribution: ShardedByS3Key is not split across containers"
            in done.stderr)
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

    from hpt.report.summary import readable_table

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


def test_an_environment_variable_the_contract_sets_is_refused_at_validation(write_space):
    space = faulty_space(strategy="random", limits={"max_trials": 2},
                         static_hyperparameters={"epochs": 3},
                         hyperparameters={"x": {"type": "continuous", "min": 0.1, "max": 0.9}})
    for key, says in (("SM_HP_X", "is set by hpt from hyperparameter 'x'"),
                      ("SAGEMAKER_REGION", "is set by hpt from the training contract")):
        space["trainer"]["environment"] = {key: "3", "MY_OWN": "1"}
        done = hpt("validate", write_space(space))
        assert done.returncode == 2, done.stdout
        (line,) = done.stderr.strip().splitlines()
        assert f"trainer.environment.{key}: {says}" in line


def test_a_contract_the_space_cannot_have_fails_the_job_once_and_is_not_retried(tmp_path):
    """What validation misses must still end as the job's own failure (ClientError), never
    as a lost host that Tune retries."""
    from hpt.runtime.job_protocol import TrialAssignment
    from hpt.runtime.local_job import LocalTrainingJob
    from hpt.spacefile import Spec, load_spec
    from hpt.core.trial import FailureCategory, TrialStatus

    path = tmp_path / "space.yaml"
    import yaml
    path.write_text(yaml.safe_dump(faulty_space()))
    frozen = load_spec(path).to_frozen_dict()
    frozen["trainer"]["environment"] = {"SM_HP_MODE": "x"}  # as if validation let it through
    spec = Spec.from_frozen_dict(frozen)
    job = LocalTrainingJob(spec, TrialAssignment(1, "faults-001-aaaaaaaa", {"mode": "ok"}),
                           tmp_path / "trial")
    job.start()
    record = job.advance().record
    assert record.status == TrialStatus.FAILED
    assert record.failure.category is FailureCategory.CLIENT_ERROR
    assert "SM_HP_MODE" in record.failure_reason and not record.infrastructure_failure


def test_validate_finds_a_prepare_script_that_is_not_there(write_space, tmp_path):
    space = faulty_space(channels={"train": str(tmp_path / "later")},
                         prepare=["python", "../nowhere/prepare_data.py"])
    done = hpt("validate", write_space(space))
    assert done.returncode == 2
    assert "prepare: the script ../nowhere/prepare_data.py is not there" in done.stderr
    space["prepare"] = ["no-such-program-hpt", "x"]
    done = hpt("validate", write_space(space))
    assert "prepare: the program no-such-program-hpt is not on PATH" in done.stderr


def test_validate_counts_in_words_and_a_closed_pipe_is_no_traceback(write_space):
    path = write_space(faulty_space())
    done = hpt("validate", path)
    assert "1 hyperparameter," in done.stdout
    # `hpt ... | head -0`: the reader goes away before hpt writes.
    proc = subprocess.Popen([sys.executable, "-m", "hpt.cli.main", "validate", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err


def test_a_narrow_terminal_abbreviates_headers_before_it_cuts_a_value():
    import pandas as pd

    from hpt.report.summary import readable_table

    names = ["batch_size", "conv_channels", "dropout", "lr", "momentum", "optimizer"]
    spec = {"objective": {"metric": "validation:accuracy", "type": "maximize"},
            "hyperparameters": {n: {} for n in names}}
    df = pd.DataFrame({"batch_size": [23, 128], "conv_channels": [32, 16],
                       "dropout": [0.2343, 0.1], "lr": [0.00189, 0.0123], "momentum": [0.544, 0.9],
                       "optimizer": ["adam", "sgd"], "TrainingJobStatus": ["Completed"] * 2,
                       "FinalObjectiveValue": [0.9972, 0.95], "TrialNumber": [8, 14],
                       "TrainingElapsedTimeSeconds": [7.0, 6.9], "FailureReason": [None, None]})
    lines = readable_table(df, spec, 80).splitlines()
    assert max(map(len, lines)) <= 80
    first = lines[2].split()
    assert first == ["8", "Completed", "0.9972", "23", "32", "0.2343", "0.00189", "0.544", "adam",
                     "7.0"]  # every value whole; the headers gave up their room
    assert "…" in lines[0]


def test_every_command_of_the_parser_runs_something_and_the_choices_come_from_registries():
    from hpt.cli.main import COMMANDS
    from hpt.cli.parser import build_parser
    from hpt.runtime.runtimes import RUNTIMES

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    launch = sub.choices["launch"]
    runtime = next(a for a in launch._actions if a.dest == "runtime")
    assert list(runtime.choices) == list(RUNTIMES)


def test_a_tuning_job_hpt_api_failed_before_its_folder_existed_is_seen_and_explained(tmp_path):
    """`hpt ls` and `hpt status` said `no tuning job ...` of a job hpt api had failed before
    its launcher made the experiment folder."""
    import time

    from hpt.api.records import ApiStore
    from hpt.api.tuning import TuningRecord

    exp = tmp_path / "exp"
    why = "its launcher exited 3 times before the job ended; last output: hpt launch: ..."
    ApiStore(exp).save_tuning(TuningRecord({"HyperParameterTuningJobName": "never-ran"},
                                           time.time(), failure=why))
    listing = hpt("ls", "--experiments-dir", exp)
    assert listing.returncode == 0 and "never-ran" in listing.stdout, listing.stderr
    assert "Failed" in listing.stdout
    status = hpt("status", "never-ran", "--experiments-dir", exp)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"never-ran: Failed: {why}")
    assert "launcher.log" in status.stdout
    assert hpt("status", "no-such-job", "--experiments-dir", exp).returncode == 2
