"""An experiment folder written by the release before this one (tests/fixtures/old-release:
grid over ok / fail / hang / silent, the tuning job's max_runtime_seconds stopping `hang`)
still loads, reports and resumes: the journal's format is a promise."""

import shutil
from pathlib import Path

import pytest
import yaml

import hpt
from hpt.experiment.resume import plan_resume
from hpt.experiment.store import read_journal
from hpt.experiment.table import trial_rows
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec

FIXTURE = Path(__file__).parent / "fixtures" / "old-release"
FAULTY = Path(__file__).parent / "trainers" / "faulty"


@pytest.fixture
def old_job(tmp_path):
    root = tmp_path / "exp" / "old-release"
    shutil.copytree(FIXTURE, root)
    return root


def test_an_old_folder_loads_with_its_statuses_reasons_and_curves(old_job):
    df = hpt.load_experiment(old_job).set_index("mode")
    assert dict(df["TrainingJobStatus"]) == {"ok": "Completed", "fail": "Failed",
                                             "hang": "Stopped", "silent": "Failed"}
    assert df.loc["fail", "FailureReason"] == "ValueError: deliberate failure for mode=fail"
    assert df.loc["silent", "FailureReason"].startswith("ObjectiveMetricNeverMatched:")
    assert df.loc["hang", "FailureReason"] == "Stopped: the tuning job ended (MaxRuntimeExceeded)"
    curves = hpt.load_metrics(old_job)  # found in the copied folder, not at the old paths
    assert len(curves[curves["TrainingJobName"] == df.loc["ok", "TrainingJobName"]]) >= 3
    status = hpt.job_status(old_job)
    assert status["Status"] == "Completed" and status["EndReason"] == "MaxRuntimeExceeded"
    assert hpt.best_trial(old_job)["HyperParameters"] == {"mode": "ok"}


def test_an_old_folder_resumes_and_runs_its_lost_job_again(ray_session, old_job, tmp_path):
    rows = trial_rows(list(read_journal(old_job / "journal.jsonl")))
    plan = plan_resume(rows)
    assert [r["hyperparameters"] for r in plan.replay] == [{"mode": "hang"}]  # the old text
    space = {
        "name": "old-release",
        "trainer": {"source_dir": str(FAULTY), "entry_point": "train.py", "cpus_per_host": 1,
                    "max_runtime_seconds": 2},  # not a search field: may change on resume
        "static_hyperparameters": {"epochs": 3, "x": 0.9},
        "hyperparameters": {"mode": {"type": "categorical",
                                     "values": ["ok", "fail", "hang", "silent"]}},
        "objective": {"metric": "validation:accuracy", "type": "maximize"},
        "metric_definitions": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"},
                               {"name": "train:loss", "regex": "loss=([0-9.eE+-]+)"}],
        "strategy": "grid",
        "limits": {"max_parallel": 2, "max_runtime_seconds": 8},
    }
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(space))
    launch(load_spec(path), old_job.parent, dashboard=False, resume=True)
    df = hpt.load_experiment(old_job).set_index("mode")
    assert len(df) == 4 and df.loc["hang", "Retries"] == 1
    assert df.loc["hang", "TrainingJobStatus"] == "Failed"
    assert df.loc["hang", "FailureReason"].startswith("MaxRuntimeExceeded")
    assert df.loc["ok", "TrainingJobStatus"] == "Completed"  # kept as it was
