"""Ray Tune's PopulationBasedTraining, with hpt's identities and its lineage journaled.

Tune's PBT copies the donor's whole config into the recipient; in hpt a config also names the
training job, so the recipient keeps its own name and number and only its hyperparameters
change. Each exploit is handed to `on_exploit` (the journal: who copied whom, at which step,
with which values).
"""

from __future__ import annotations

from typing import Any, Callable

from ray.tune.schedulers import PopulationBasedTraining

from hpt.core.schema import Key
from hpt.core.trial import OBJECTIVE_STEP

# What names a trial, never copied from a donor.
IDENTITY = (Key.TRIAL_NUMBER, Key.TRAINING_JOB_NAME, "suggested_at")


class LineagePBT(PopulationBasedTraining):
    def __init__(self, *args, bounds: dict[str, tuple[float, float]] | None = None, **kwargs):
        """`bounds`: each mutated range's (min, max): Tune's ×0.8/×1.2 perturbation does not
        stay inside a range (momentum 0.95 × 1.2 = 1.14 diverges), so a value is clipped."""
        super().__init__(*args, **kwargs)
        self.bounds = dict(bounds or {})
        # (recipient config, donor config, donor's step) -> None; set by the tuner.
        self.on_exploit: Callable[[dict[str, Any], dict[str, Any], int], None] | None = None

    def on_trial_add(self, tune_controller, trial):
        # Tune's PBT refuses a search algorithm, which results of mutated configs would
        # mislead. hpt's searcher only names and proposes the population (its strategy is
        # random, as Ray's own PBT draws it) and keeps the tuning job's count: let it in.
        super().on_trial_add(_WithoutSearcher(tune_controller), trial)

    def _get_new_config(self, trial, trial_to_clone):
        new_config, operations = super()._get_new_config(trial, trial_to_clone)
        new_config.update({key: trial.config[key] for key in IDENTITY if key in trial.config})
        values = new_config.get("hyperparameters", {})
        for name, (low, high) in self.bounds.items():
            if name in values:
                clipped = min(max(values[name], low), high)
                values[name] = type(values[name])(clipped)
        return new_config, operations

    def _exploit(self, tune_controller, trial, trial_to_clone):
        donor_step = (self._trial_state[trial_to_clone].last_result or {}).get(OBJECTIVE_STEP)
        super()._exploit(tune_controller, trial, trial_to_clone)
        if self.on_exploit is not None:
            self.on_exploit(trial.config, trial_to_clone.config, donor_step)


class _WithoutSearcher:
    """The Tune controller as PBT's on_trial_add sees it: without the search algorithm."""

    search_alg = None

    def __init__(self, controller):
        self._controller = controller

    def __getattr__(self, name):
        return getattr(self._controller, name)
