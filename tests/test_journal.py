"""The study journal: Optuna's file format, one writer, durable where trials end."""

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpt.search.journal import SingleWriterJournalBackend, ends_something


def _study(path, backend):
    return optuna.create_study(study_name="s", storage=JournalStorage(backend(str(path))),
                               direction="maximize", load_if_exists=True)


def test_optuna_reads_what_hpt_writes_and_the_other_way(tmp_path):
    path = tmp_path / "optuna.journal"
    ours = _study(path, SingleWriterJournalBackend)
    for i in range(5):
        trial = ours.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        ours.tell(trial, float(i))
    theirs = _study(path, JournalFileBackend)
    assert [t.value for t in theirs.trials] == [0.0, 1.0, 2.0, 3.0, 4.0]
    theirs.tell(theirs.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 9.0)
    again = _study(path, SingleWriterJournalBackend)  # a resumed launcher
    assert [t.value for t in again.trials] == [0.0, 1.0, 2.0, 3.0, 4.0, 9.0]
    assert again.best_value == 9.0


def test_a_torn_last_line_is_cut_off_and_appending_goes_on(tmp_path):
    path = tmp_path / "optuna.journal"
    study = _study(path, SingleWriterJournalBackend)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 1.0)
    del study
    with open(path, "ab") as f:
        f.write(b'{"op_code":4,"study_id":0,"datet')  # the launcher died mid-write
    resumed = _study(path, SingleWriterJournalBackend)
    resumed.tell(resumed.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 2.0)
    assert [t.value for t in _study(path, JournalFileBackend).trials] == [1.0, 2.0]
    assert path.read_bytes().endswith(b"\n")


@pytest.mark.parametrize("log, durable", [
    ({"op_code": 0, "study_name": "s"}, True),
    ({"op_code": 4, "study_id": 0}, False),
    ({"op_code": 5, "trial_id": 0}, False),
    ({"op_code": 6, "trial_id": 0, "state": int(optuna.trial.TrialState.RUNNING)}, False),
    ({"op_code": 6, "trial_id": 0, "state": int(optuna.trial.TrialState.COMPLETE)}, True),
    ({"op_code": 6, "trial_id": 0, "state": int(optuna.trial.TrialState.PRUNED)}, True),
    ({"op_code": 6, "trial_id": 0, "state": int(optuna.trial.TrialState.FAIL)}, True),
])
def test_fsync_happens_where_a_trial_ends_or_the_study_changes(log, durable):
    assert ends_something(log) is durable
