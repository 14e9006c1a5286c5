"""hpt's scheduler protocol: what a controller tells an early-stopping scheduler of a tuning
job's trials, and what the scheduler decides (as Optuna owns its pruner interface).

The local controller (hpt/controller/local_controller.py) speaks only this. hpt's own
schedulers implement it (schedule/median.py, schedule/promotion.py); Ray Tune's (ASHA)
plug in through schedule/tune_adapter.py, which also hands hpt's to Ray Tune's controller.

Events, in the order a controller sends them for one trial: `trial_added` once; `on_result`
for each objective data point (its answer: CONTINUE, or STOP to stop the job early); then
`trial_completed` (the job ended, or was stopped early, with its last result) or
`trial_failed` (hpt lost it, retries spent). A job the end of the tuning job stops is told
neither, as with Ray Tune.
"""

from __future__ import annotations

import enum
from typing import Any


class Decision(enum.Enum):
    """What a scheduler decides for a trial."""

    CONTINUE = "continue"  # it runs on
    PAUSE = "pause"  # it waits, its checkpoint kept, to be promoted (promotion mode)
    STOP = "stop"  # it ends now (early stopping): Stopped, its model kept


class TrialScheduler:
    """An early-stopping scheduler; every event has a default that lets the trial run on."""

    # Whether trials pause at rungs and are promoted (hpt/schedule/promotion.py).
    promotes = False

    def trial_added(self, trial_id: str, config: dict[str, Any]) -> None:
        """A new trial (its id, the config it runs with) starts."""

    def on_result(self, trial_id: str, result: dict[str, Any]) -> Decision:
        """An objective data point of a running trial (hpt.core.trial.point_result)."""
        return Decision.CONTINUE

    def trial_completed(self, trial_id: str, result: dict[str, Any]) -> None:
        """The trial ended, or was stopped early; `result`: its last (final_result)."""

    def trial_failed(self, trial_id: str) -> None:
        """hpt lost the trial (its retries spent): it ends Failed."""
