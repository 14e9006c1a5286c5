"""hpt's Optuna searcher (hpt/search/searcher.py) as a Ray Tune Searcher."""

from __future__ import annotations

from ray.tune.search import Searcher

from hpt.search.searcher import FINISHED, OptunaSearcher
from hpt.core.trial import OBJECTIVE

assert Searcher.FINISHED == FINISHED  # the searcher's own word reaches Tune unchanged


class TuneSearcher(Searcher):
    def __init__(self, searcher: OptunaSearcher):
        maximize = searcher.spec.objective.type == "maximize"
        super().__init__(metric=OBJECTIVE, mode="max" if maximize else "min")
        self.optuna = searcher  # not `searcher`: Tune takes an object with one for a wrapper

    def __getstate__(self):
        # Tune pickles the searcher into tuner.pkl (for Tuner.restore, which hpt never uses:
        # the study lives in its journal file, and hpt resumes from its own journal).
        return {k: v for k, v in self.__dict__.items() if k != "optuna"}

    def suggest(self, trial_id: str):
        return self.optuna.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.optuna.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        self.optuna.on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        self.optuna.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.optuna.restore(checkpoint_path)
