"""The journal is durable and crash-tolerant; the table is a fold of its events."""

import pandas as pd

from hpt.experiment.store import ExperimentStore, read_journal, training_job_name, unreadable_lines
from hpt.experiment.table import build_table


def test_training_job_names_are_sagemaker_style_and_reproducible():
    a = training_job_name("digits-cnn", 3, {"lr": 0.01}, seed=0)
    assert a == training_job_name("digits-cnn", 3, {"lr": 0.01}, seed=0)
    assert a != training_job_name("digits-cnn", 3, {"lr": 0.02}, seed=0)
    prefix, number, digest = a.rsplit("-", 2)
    assert (prefix, number, len(digest)) == ("digits-cnn", "003", 8)
    int(digest, 16)


def test_journal_survives_a_torn_last_line(tmp_path):
    store = ExperimentStore(tmp_path)
    store.create({"name": "x"})
    store.append("trial_started", trial_number=1, training_job_name="x-001-aaaaaaaa",
                 hyperparameters={"lr": 0.1})
    store.close()
    with open(store.journal_path, "ab") as f:
        f.write(b'{"event": "trial_ended", "trai')  # the launcher died mid-write
    events = list(read_journal(store.journal_path))
    assert [e["event"] for e in events] == ["trial_started"]
    assert unreadable_lines(store.journal_path) == [2]
    store.append("job_resumed")  # starts on a line of its own; the torn one stays, reported
    assert [e["event"] for e in read_journal(store.journal_path)] == ["trial_started",
                                                                      "job_resumed"]
    assert unreadable_lines(store.journal_path) == [2]


def test_table_folds_events_into_one_row_per_trial():
    t0 = 1_700_000_000.0
    events = [
        {"event": "trial_started", "time": t0, "trial_number": 2, "training_job_name": "j-002-b",
         "hyperparameters": {"lr": 0.2, "opt": "adam"}},
        {"event": "trial_started", "time": t0, "trial_number": 1, "training_job_name": "j-001-a",
         "hyperparameters": {"lr": 0.1, "opt": "sgd"}},
        {"event": "trial_progress", "time": t0 + 1, "training_job_name": "j-002-b", "value": 0.5, "step": 1},
        {"event": "trial_ended", "time": t0 + 5, "training_job_name": "j-001-a", "record": {
            "trial_number": 1, "training_job_name": "j-001-a", "hyperparameters": {"lr": 0.1, "opt": "sgd"},
            "status": "Completed", "failure_reason": None, "objective_value": 0.9,
            "final_metrics": {"acc": 0.9, "loss": 0.1}, "objective_steps": 3, "start_time": t0,
            "end_time": t0 + 5, "exit_code": 0, "log_path": "l", "model_artifact": "m",
            "hosts": ["algo-1"], "gpu_ids": []}},
    ]
    df = build_table(events, ["lr", "opt"], ["acc", "loss"])
    assert list(df["TrainingJobName"]) == ["j-001-a", "j-002-b"]
    assert list(df["TrainingJobStatus"]) == ["Completed", "InProgress"]
    assert list(df["FinalObjectiveValue"]) == [0.9, 0.5]
    assert df.loc[0, "TrainingElapsedTimeSeconds"] == 5
    assert df.loc[0, "TrainingStartTime"] == pd.Timestamp(t0, unit="s", tz="UTC")
    assert df.loc[0, "loss"] == 0.1 and pd.isna(df.loc[1, "loss"])
    assert list(df.columns[:8]) == ["lr", "opt", "TrainingJobName", "TrainingJobStatus",
                                    "FinalObjectiveValue", "TrainingStartTime",
                                    "TrainingEndTime", "TrainingElapsedTimeSeconds"]


def test_empty_journal_gives_an_empty_table_with_every_column():
    df = build_table([], ["lr"], ["acc"])
    assert df.empty and "TrainingJobStatus" in df.columns and "acc" in df.columns
