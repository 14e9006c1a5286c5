"""The study's journal file, written by one process (the launcher) and durable per trial.

Same file format as Optuna's `JournalFileBackend` (one JSON operation per line), so
`optuna-dashboard` and Optuna itself read it. What differs is the cost: Optuna's backend takes a
file lock, reopens, rewrites and fsyncs the file for every operation and re-reads it before
every read. hpt's launcher is the only writer of its study, so this backend keeps the log in
memory, appends with one write() per batch (a killed launcher loses nothing: the bytes are in
the OS), and has it fsynced (within 50 ms, experiment/durability.py) only where a trial ends
or the study changes (a power cut can lose at most the operations of trials still running,
which a resume runs again anyway, and of those that ended in the last 50 ms).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Iterator

from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import TrialState

from hpt.experiment.durability import SYNCER

_CREATE_STUDY, _DELETE_STUDY, _SET_STUDY_USER_ATTR, _SET_STUDY_SYSTEM_ATTR = 0, 1, 2, 3
_SET_TRIAL_STATE_VALUES = 6
_STUDY_OPS = {_CREATE_STUDY, _DELETE_STUDY, _SET_STUDY_USER_ATTR, _SET_STUDY_SYSTEM_ATTR}


def ends_something(log: dict[str, Any]) -> bool:
    """An operation after which the file must be on disk: a study change or a finished trial."""
    op = log.get("op_code")
    if op in _STUDY_OPS:
        return True
    return op == _SET_TRIAL_STATE_VALUES and TrialState(log.get("state")).is_finished()


class SingleWriterJournalBackend(BaseJournalBackend):
    def __init__(self, file_path: str):
        self.file_path = file_path
        # Load what is there with Optuna's own reader (it skips a torn last line) ...
        reader = JournalFileBackend(file_path)
        self._logs: list[dict[str, Any]] = list(reader.read_logs(0))
        good_size = reader._log_number_offset.get(len(self._logs), 0)
        # ... and cut a torn last line off, so that appended lines start on a line boundary.
        if os.path.getsize(file_path) > good_size:
            os.truncate(file_path, good_size)
        self._fd = os.open(file_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        return iter(self._logs[log_number_from:])

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        view = memoryview(data.encode("utf-8"))
        while view:  # one write() for the batch; loop only on a short write
            view = view[os.write(self._fd, view):]
        self._logs.extend(logs)
        if any(ends_something(log) for log in logs):
            SYNCER.soon(self._fd)  # group commit (experiment/durability.py)

    def close(self) -> None:
        if self._fd >= 0:
            SYNCER.now(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


class IndexedJournalStorage(JournalStorage):
    """Optuna's JournalStorage with each study's waiting (enqueued) trials indexed. Study.ask
    looks for a waiting trial first, and the stock storage finds them by scanning every trial
    of the study: O(n) per ask, the one cost of a job that grew with its length. hpt enqueues
    only the points it must run first (grid, resumed jobs' lost ones)."""

    def __init__(self, backend: BaseJournalBackend):
        super().__init__(backend)
        self._waiting: dict[int, set[int]] = {}  # study id -> trial ids, once first asked

    def create_new_trial(self, study_id: int, template_trial=None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is not None and template_trial.state == TrialState.WAITING and \
                study_id in self._waiting:
            self._waiting[study_id].add(trial_id)
        return trial_id

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states=None):
        if states is None or tuple(states) != (TrialState.WAITING,):
            return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        if study_id not in self._waiting:  # the first ask: one scan
            self._waiting[study_id] = {t._trial_id for t in super().get_all_trials(
                study_id, deepcopy=False, states=states)}
        waiting = [t for t in (self.get_trial(i) for i in sorted(self._waiting[study_id]))
                   if t.state == TrialState.WAITING]
        self._waiting[study_id] = {t._trial_id for t in waiting}
        return copy.deepcopy(waiting) if deepcopy else waiting
