"""Ray Tune's schedulers and hpt's scheduler protocol (schedule/scheduler_protocol.py), each behind
the other's interface.

- `FromTune`: a Ray Tune TrialScheduler (ASHA) as an hpt scheduler, for the local controller,
  which never calls Tune's API itself. Tune's schedulers key their state by a trial object
  (`trial_id`, `config`); the adapter keeps one per trial and passes no Tune controller
  (ASHA and median need none; PBT, which does, runs only on Tune's controller).
- `ForTune`: an hpt scheduler (the median rule) as a Ray Tune TrialScheduler, for Ray Tune's
  controller (hpt/controller/tune/).

Imports Ray Tune: loaded only where one of its schedulers is in play.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune.schedulers import FIFOScheduler
from ray.tune.schedulers import TrialScheduler as TuneTrialScheduler

from hpt.schedule.scheduler_protocol import Decision, TrialScheduler

# Tune's decisions (its NOOP: nothing to do now, the trial runs on).
_FROM_TUNE = {TuneTrialScheduler.CONTINUE: Decision.CONTINUE,
              TuneTrialScheduler.PAUSE: Decision.PAUSE,
              TuneTrialScheduler.STOP: Decision.STOP,
              TuneTrialScheduler.NOOP: Decision.CONTINUE}
_TO_TUNE = {Decision.CONTINUE: TuneTrialScheduler.CONTINUE,
            Decision.PAUSE: TuneTrialScheduler.PAUSE, Decision.STOP: TuneTrialScheduler.STOP}


@dataclass(eq=False)
class TuneTrial:
    """What Tune's schedulers read of a trial (hashed by identity, as Tune's Trial)."""

    trial_id: str
    config: dict[str, Any]


class FromTune(TrialScheduler):
    """A Ray Tune TrialScheduler behind hpt's protocol."""

    def __init__(self, tune_scheduler: TuneTrialScheduler):
        self.tune = tune_scheduler
        self.trials: dict[str, TuneTrial] = {}

    def trial_added(self, trial_id: str, config: dict[str, Any]) -> None:
        trial = self.trials[trial_id] = TuneTrial(trial_id, config)
        self.tune.on_trial_add(None, trial)

    def on_result(self, trial_id: str, result: dict[str, Any]) -> Decision:
        return _FROM_TUNE[self.tune.on_trial_result(None, self.trials[trial_id], result)]

    def trial_completed(self, trial_id: str, result: dict[str, Any]) -> None:
        self.tune.on_trial_complete(None, self.trials.pop(trial_id), result)

    def trial_failed(self, trial_id: str) -> None:
        self.tune.on_trial_error(None, self.trials.pop(trial_id))


class ForTune(FIFOScheduler):
    """An hpt scheduler as a Ray Tune TrialScheduler (trials are run first in, first out, as
    by Tune's default; the hpt scheduler decides on each result)."""

    def __init__(self, scheduler: TrialScheduler):
        super().__init__()
        self.scheduler = scheduler

    def on_trial_add(self, tune_controller, trial) -> None:
        self.scheduler.trial_added(trial.trial_id, trial.config)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return _TO_TUNE[self.scheduler.on_result(trial.trial_id, result)]

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self.scheduler.trial_completed(trial.trial_id, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        self.scheduler.trial_failed(trial.trial_id)

    def debug_string(self) -> str:
        inner = getattr(self.scheduler, "debug_string", None)
        return inner() if inner is not None else type(self.scheduler).__name__

