"""Ray Tune's trial events -> hpt's recorder (hpt/controller/recorder.py)."""

from __future__ import annotations

from pathlib import Path

from ray import tune

from hpt.controller.recorder import TrialRecorder
from hpt.core.trial import (EARLY_STOPPED, RECORD, FailureCategory, FailureReason, TrialStatus,
                       job_ended)


class JournalCallback(tune.Callback):
    def __init__(self, recorder: TrialRecorder, control=None):
        self.recorder = recorder
        self.control = control
        self._started: set[str] = set()
        self._recovering: set[str] = set()

    def __getstate__(self):
        # Tune pickles its config into tuner.pkl for Tuner.restore, which hpt never uses (hpt
        # resumes from its own journal); open files and the terminal are not part of that state.
        return {}

    def on_trial_start(self, iteration, trials, trial, **info):
        # Tune starts a trial again after a lost actor (a retry: on_trial_recover came
        # first) or after it paused it (PBT's time-sharing or exploit): that one continues.
        continued = trial.trial_id in self._started and trial.trial_id not in self._recovering
        self._started.add(trial.trial_id)
        self._recovering.discard(trial.trial_id)
        self.recorder.trial_started(trial.config, continued=continued)

    def on_exploit(self, recipient: dict, donor: dict, step: int | None) -> None:
        """PBT: the recipient restarts from the donor's checkpoint with new values."""
        self.recorder.trial_exploited(recipient, donor, step)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.recorder.trial_progress(trial.config, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get(RECORD):
            self.recorder.trial_ended(last[RECORD])
            return
        # Tune stopped it: early stopping, or the end of the whole tuning job.
        ending = self.control.end_reason if self.control is not None else None
        reason = job_ended(ending) if ending else EARLY_STOPPED
        self.recorder.trial_ended(self.recorder.record_of(trial.config, last,
                                                          TrialStatus.STOPPED, reason))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._recovering.add(trial.trial_id)
        # Ray has just logged the lost actor's traceback: the recorder says what hpt does.
        self.recorder.trial_retried(trial.config, _last_error_line(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        # Its actor failed more often than the retries allow: hpt's failure, not the script's.
        reason = FailureReason(FailureCategory.INTERNAL_SERVER_ERROR, _last_error_line(trial))
        self.recorder.trial_ended(self.recorder.record_of(trial.config, trial.last_result or {},
                                                          TrialStatus.FAILED, reason))


def _last_error_line(trial) -> str:
    """The exception that ended a trial's actor, from Tune's error file (its last line)."""
    try:
        text = Path(trial.error_file).read_text(errors="replace").strip() if trial.error_file \
            else ""
    except OSError:
        text = ""
    return text.splitlines()[-1] if text else "the trial's Ray actor failed"
