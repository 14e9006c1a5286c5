"""End to end through real Ray Tune + Optuna + subprocesses: statuses, reasons, the table."""

import json
import tarfile
from pathlib import Path

import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec
from helpers import faulty_space



def test_each_failure_mode_ends_with_its_status_and_reason_while_others_complete(
        ray_session, write_space, tmp_path):
    spec = load_spec(write_space(faulty_space()))
    result = launch(spec, tmp_path / "experiments", dashboard=False)

    df = hpt.load_experiment("faults", tmp_path / "experiments")
    assert len(df) == 4  # grid: every mode exactly once
    by_mode = {row["mode"]: row for _, row in df.iterrows()}
    assert sorted(by_mode) == ["fail", "hang", "ok", "silent"]

    ok = by_mode["ok"]
    assert ok["TrainingJobStatus"] == "Completed"
    assert ok["FinalObjectiveValue"] == pytest.approx(0.9)
    assert ok["train:loss"] == pytest.approx(1 / 3, abs=1e-4)
    assert ok["ObjectiveSteps"] == 3
    with tarfile.open(ok["ModelArtifact"]) as tar:
        assert "seen.json" in tar.getnames()

    fail = by_mode["fail"]
    assert fail["TrainingJobStatus"] == "Failed"
    assert fail["FailureReason"] == "ValueError: deliberate failure for mode=fail"

    hang = by_mode["hang"]
    assert hang["TrainingJobStatus"] == "Failed"
    assert hang["FailureReason"].startswith("MaxRuntimeExceeded")
    assert 4 <= hang["TrainingElapsedTimeSeconds"] < 20

    silent = by_mode["silent"]
    assert silent["TrainingJobStatus"] == "Failed"
    assert "validation:accuracy" in silent["FailureReason"]
    assert "val_acc=([0-9.]+)" in silent["FailureReason"]
    assert "training without ever printing the objective" in silent["FailureReason"]

    # SageMaker's analytics columns come first (after the hyperparameters), names exact.
    assert list(df.columns[:7]) == ["mode", "TrainingJobName", "TrainingJobStatus",
                                    "FinalObjectiveValue", "TrainingStartTime",
                                    "TrainingEndTime", "TrainingElapsedTimeSeconds"]
    assert all(name.startswith("faults-") and len(name.split("-")[-1]) == 8
               for name in df["TrainingJobName"])
    # hpt's own cost around each script, per trial: measured, small, never negative.
    for column in ("QueueWaitSeconds", "LaunchSeconds", "TeardownSeconds"):
        assert df[column].notna().all(), column
        assert ((df[column] >= 0) & (df[column] < 15)).all(), df[column]
    assert (df["LaunchSeconds"] > 0).all()
    assert result.exit_code == 0
    assert result.best["TrainingJobName"] == ok["TrainingJobName"]
    assert (result.experiment_dir / "table.parquet").is_file()
    assert (result.experiment_dir / "table.csv").is_file()


def test_the_script_sees_the_contract_and_optuna_sees_failures(ray_session, write_space, tmp_path):
    space = faulty_space(
        name="contract",
        hyperparameters={"x": {"type": "continuous", "min": 0.1, "max": 0.9},
                         "mode": {"type": "categorical", "values": ["ok", "fail"]}},
        static_hyperparameters={"epochs": 2},
        strategy="random", limits={"max_trials": 6, "max_parallel": 2}, seed=3)
    spec = load_spec(write_space(space))
    result = launch(spec, tmp_path / "experiments", dashboard=False)
    df = hpt.load_experiment(result.experiment_dir)
    assert len(df) == 6
    completed = df[df["TrainingJobStatus"] == "Completed"]
    assert (df["TrainingJobStatus"] == "Failed").sum() == (df["mode"] == "fail").sum()
    row = completed.iloc[0]
    seen = json.loads((Path(row["LogPath"]).parent / "algo-1" / "model" / "seen.json").read_text())
    hps = json.loads(seen["env"]["SM_HPS"])
    assert hps == {"epochs": 2, "mode": "ok", "x": row["x"]}
    assert seen["env"]["SM_HP_X"] == json.dumps(row["x"])
    assert seen["argv"] == ["--epochs", "2", "--mode", "ok", "-x", str(row["x"])]
    # The value reached the script: its objective is x at the last epoch.
    assert completed["FinalObjectiveValue"].tolist() == pytest.approx(
        [round(x, 4) for x in completed["x"]], abs=1e-4)
    assert seen["cwd"].endswith("/algo-1/code")
    # The study in the journal storage: failures told as FAIL, never as values.
    import optuna
    study = optuna.load_study(study_name="contract", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(result.experiment_dir / "optuna.journal"))))
    states = sorted(t.state.name for t in study.trials)
    assert states.count("FAIL") == (df["mode"] == "fail").sum()
    assert states.count("COMPLETE") == len(completed)
