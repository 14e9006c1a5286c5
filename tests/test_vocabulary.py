"""hpt/core/trial.py is the one place for a training job's status, result keys and reasons: a
reason's text, its truncation and its parsing back from the journal; no other module spells
a status or a result key."""

import re
from pathlib import Path

import pytest

from hpt.core.trial import (MAX_REASON_CHARS, FailureCategory, FailureReason, TrainingJobRecord,
                       TrialStatus, job_ended)

HPT = Path(__file__).resolve().parent.parent / "hpt"
VOCABULARY = HPT / "core" / "trial.py"
STATUS_LITERALS = [f'"{s.value}"' for s in TrialStatus]
KEY_LITERALS = ['"hpt_status"', '"hpt_record"', '"hpt_placement"', '"objective_step"']


def test_no_module_but_the_vocabulary_spells_a_status_or_a_result_key():
    stray = []
    for path in sorted(HPT.rglob("*.py")):
        if path == VOCABULARY:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for literal in STATUS_LITERALS + KEY_LITERALS:
                if literal in code:
                    stray.append(f"{path.relative_to(HPT)}:{number}: {literal}")
    assert stray == []


@pytest.mark.parametrize("reason", [
    FailureReason(FailureCategory.ALGORITHM_ERROR, "exit code 1; stderr tail:", "boom\nValueError"),
    FailureReason(FailureCategory.MAX_RUNTIME_EXCEEDED, "ran longer than 4 s"),
    FailureReason(FailureCategory.CLIENT_ERROR, "could not start 'x'", host="algo-2",
                  log="algo-2.log"),
    FailureReason(FailureCategory.OBJECTIVE_METRIC_NEVER_MATCHED, "never matched; last log lines:",
                  "a\nb"),
    job_ended("MaxRuntimeExceeded"),
    FailureReason(FailureCategory.EARLY_STOPPED, ""),
])
def test_a_reason_reads_back_from_its_text(reason):
    again = FailureReason.parse(reason.text())
    assert again.category is reason.category and again.text() == reason.text()


def test_the_scripts_own_words_stay_as_written_and_every_reason_fits_sagemakers_limit():
    own = FailureReason(FailureCategory.ALGORITHM_ERROR, "ValueError: bad lr", verbatim=True)
    assert own.text() == "ValueError: bad lr"
    assert FailureReason.parse("ValueError: bad lr").category is FailureCategory.ALGORITHM_ERROR
    long = FailureReason(FailureCategory.ALGORITHM_ERROR, "exit code 1; stderr tail:",
                         "x" * 5000 + "\nTheRealError: here")
    text = long.text()
    assert len(text) == MAX_REASON_CHARS
    assert text.startswith("AlgorithmError: exit code 1; stderr tail:\n...")
    assert text.endswith("TheRealError: here")  # the end of a tail holds the error
    assert len(FailureReason(FailureCategory.CLIENT_ERROR, "y" * 5000).text()) == MAX_REASON_CHARS


def test_only_a_lost_host_is_retried_and_it_reads_as_an_internal_error():
    lost = FailureReason(FailureCategory.LOST, "the Ray actor running algo-2 was lost")
    assert lost.retryable and lost.text().startswith("InternalServerError: ")
    assert not any(FailureReason(c, "m").retryable for c in FailureCategory
                   if c is not FailureCategory.LOST)


def test_a_record_in_the_journal_has_the_keys_it_always_had():
    record = TrainingJobRecord.ended(
        trial_number=3, training_job_name="job-003-aaaaaaaa", hyperparameters={"lr": 0.1},
        status=TrialStatus.STOPPED, failure=job_ended("Stopped"), objective_value=0.5,
        objective_metric="acc", objective_steps=2, start_time=1.0, end_time=2.0,
        log_path="/x/algo-1.log", hosts=["algo-1"])
    data = record.to_json()
    assert data["status"] == "Stopped" and type(data["status"]) is str
    assert data["failure_reason"] == "Stopped: the tuning job ended (Stopped)"
    assert data["final_metrics"] == {"acc": 0.5} and data["objective_value"] == 0.5
    assert data["infrastructure_failure"] is False and "failure" not in data
    assert set(data) >= {"trial_number", "training_job_name", "hyperparameters",
                         "objective_steps", "start_time", "end_time", "exit_code", "log_path",
                         "model_artifact", "hosts", "gpu_ids", "queue_wait_seconds",
                         "launch_seconds", "teardown_seconds"}


def test_a_status_is_its_name_as_a_string():
    assert f"{TrialStatus.COMPLETED}" == "Completed" == str(TrialStatus.COMPLETED)
    assert {"Completed": 1}[TrialStatus.COMPLETED] == 1
    assert hash(TrialStatus.FAILED) == hash("Failed")
    assert re.fullmatch(r"[A-Za-z]+", TrialStatus.IN_PROGRESS)
