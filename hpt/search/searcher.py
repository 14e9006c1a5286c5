"""An Optuna study driven through Ray Tune's Searcher interface (ask/tell).

hpt's own searcher instead of `ray.tune.search.optuna.OptunaSearch`, because it needs:
exact SageMaker distributions (inclusive integer bounds, reverse_log), a durable journal
storage that `optuna-dashboard` can open, grid enumeration exactly once, and the script's
failure told to Optuna as FAIL (never as a value) and early stops as PRUNED.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import Searcher

from hpt.experiment.store import training_job_name
from hpt.search.space import build_distributions, decode_params, encode_params, grid_points

optuna.logging.set_verbosity(optuna.logging.WARNING)
logger = logging.getLogger(__name__)

# Keys of the result dicts the trainable reports to Tune.
OBJECTIVE = "objective"
STATUS = "hpt_status"


def make_sampler(spec) -> optuna.samplers.BaseSampler:
    parallel = spec.limits.max_parallel > 1
    strategy = spec.strategy
    config = dict(spec.strategy_config)
    if strategy in ("bayesian", "hyperband"):
        if config.get("sampler") == "gp":
            return optuna.samplers.GPSampler(seed=spec.seed)
        # constant_liar: running trials count as bad guesses, so parallel TPE spreads out.
        return optuna.samplers.TPESampler(seed=spec.seed, constant_liar=parallel,
                                          multivariate=True)
    if strategy == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=spec.seed, independent_sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    # random; grid enumerates its own points (see OptunaSearcher) and only needs a sampler
    # for the bookkeeping.
    return optuna.samplers.RandomSampler(seed=spec.seed)


def open_study(spec, study_path: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(study_path)))
    return optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec),
        direction="maximize" if spec.objective.type == "maximize" else "minimize",
        load_if_exists=True,
    )


class OptunaSearcher(Searcher):
    """Suggests one SageMaker training job configuration per Tune trial."""

    def __init__(self, spec, study: optuna.Study, max_trials: int):
        super().__init__(metric=OBJECTIVE, mode="max" if spec.objective.type == "maximize" else "min")
        self.spec = spec
        self.study = study
        self.max_trials = max_trials
        self.ranges = spec.hyperparameters
        self.distributions = build_distributions(self.ranges)
        self._grid = (iter(itertools.product(*grid_points(self.ranges).values()))
                      if spec.strategy == "grid" else None)
        self._live: dict[str, optuna.trial.Trial] = {}
        self._suggested = 0

    def __getstate__(self):
        # Tune pickles the searcher into tuner.pkl (for Tuner.restore, unused by hpt): the
        # study lives in its journal file, and the live grid iterator and trials hold locks.
        return {k: v for k, v in self.__dict__.items() if k not in ("study", "_grid", "_live")}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._suggested >= self.max_trials:
            return Searcher.FINISHED
        if self._grid is not None:
            point = next(self._grid, None)
            if point is None:
                return Searcher.FINISHED
            self.study.enqueue_trial(encode_params(dict(zip(self.ranges, point)), self.ranges))
        trial = self.study.ask(self.distributions)
        self._live[trial_id] = trial
        self._suggested += 1
        values = decode_params(trial.params, self.ranges)
        number = trial.number + 1  # SageMaker numbers training jobs from 1
        return {
            "trial_number": number,
            "training_job_name": training_job_name(self.spec.name, number, values, self.spec.seed),
            "hyperparameters": values,
        }

    def save(self, checkpoint_path: str) -> None:
        # Tune's periodic experiment checkpoint. The trials themselves are durable in the
        # study's journal; only the count of suggestions is searcher state.
        Path(checkpoint_path).write_text(json.dumps({"suggested": self._suggested}))

    def restore(self, checkpoint_path: str) -> None:
        self._suggested = json.loads(Path(checkpoint_path).read_text())["suggested"]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self._live.get(trial_id)
        if trial is not None and OBJECTIVE in result and result.get("objective_step"):
            trial.report(float(result[OBJECTIVE]), int(result["objective_step"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trial = self._live.pop(trial_id, None)
        if trial is None:
            return
        result = result or {}
        status = result.get(STATUS)
        if status == "Completed":
            self.study.tell(trial, float(result[OBJECTIVE]))
        elif status == "Stopped" or (status is None and not error and OBJECTIVE in result):
            # Early-stopped by the scheduler: its intermediate values stay visible to TPE.
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
