"""An Optuna study as the proposer of training jobs (ask/tell), in the shape of Ray Tune's
Searcher interface: `suggest(trial_id)`, `on_trial_result`, `on_trial_complete`. Both controllers
drive it (hpt/controller/local_controller.py directly, Ray Tune through
hpt/controller/tune/tune_searcher.py); it imports no Ray.

hpt's own searcher instead of `ray.tune.search.optuna.OptunaSearch`, because it needs:
exact SageMaker distributions (inclusive integer bounds, reverse_log), a durable journal
storage that `optuna-dashboard` can open, grid enumeration exactly once, and the script's
failure told to Optuna as FAIL (never as a value) and early stops as PRUNED.
"""

from __future__ import annotations

import json
import time
import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpt.core.schema import Key
from hpt.experiment.store import training_job_name
from hpt.search.journal import IndexedJournalStorage, SingleWriterJournalBackend
from hpt.core.objectives import objective_values, violations
from hpt.search.space import (build_distributions, decode_params, encode_params, grid_points,
                              draw_conditional)
from hpt.search.strategies import STRATEGIES
from hpt.search.conditions import existing
from hpt.core.trial import OBJECTIVE, OBJECTIVE_STEP, STATUS, TrialStatus, final_metrics

optuna.logging.set_verbosity(optuna.logging.WARNING)
logger = logging.getLogger(__name__)



def make_sampler(spec, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The strategy's sampler, seeded from the spec's seed and the number of trials the
    study already has: a resumed job goes on with new random draws instead of repeating
    the first run's (which a random search would propose again, point for point)."""
    return STRATEGIES[spec.strategy].sampler(spec, (spec.seed + trials_so_far) % 2**32)


def open_study(spec, study_path: Path) -> optuna.Study:
    storage = IndexedJournalStorage(SingleWriterJournalBackend(str(study_path)))
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec),
        directions=[o.type for o in spec.all_objectives],
        load_if_exists=True,
    )
    so_far = len(study.get_trials(deepcopy=False))
    if so_far:
        study.sampler = make_sampler(spec, so_far)
    return study


# Optuna's system attribute of a trial's constraint value: this prefix and the constraint's
# name (what `Trial.set_constraint` writes), for the trials hpt adds itself (warm start).
CONSTRAINT_KEY_PREFIX = "constraints:"

# What `suggest` returns once the tuning job has every training job it may run (Ray Tune's
# Searcher.FINISHED has the same value).
FINISHED = "FINISHED"

# Optuna user attribute marking trials copied from a warm-start parent (never run here).
PARENT_ATTR = "hpt_warm_start_parent"


class OptunaSearcher:
    """Suggests one SageMaker training job configuration per Tune trial.

    On a resumed job, `done` trials already count toward max_trials and `replay` holds the
    training jobs that were lost (running when the launcher died): they run again first,
    under their own names and numbers. New training jobs are numbered from `next_number`.
    """

    def __init__(self, spec, study: optuna.Study, max_trials: int, *, done: int = 0,
                 replay: tuple[dict[str, Any], ...] = (), next_number: int = 1,
                 seen: tuple[dict[str, Any], ...] = ()):
        self.spec = spec
        self.study = study
        self.max_trials = max_trials
        self.ranges = spec.hyperparameters
        self.distributions = build_distributions(self.ranges)
        self.objectives = [o.model_dump() for o in spec.all_objectives]
        self.constraints = [c.model_dump() for c in spec.constraints]
        self._grid = self._grid_points(seen) if STRATEGIES[spec.strategy].enumerates else None
        self._live: dict[str, optuna.trial.Trial] = {}
        self._suggested = done
        self._replay = list(replay)
        self._next_number = next_number
        self.exhausted = False  # a grid has offered every point: the search is over
        self._reported: dict[str, set[int]] = {}  # the steps each live trial reported

    def _grid_points(self, seen):
        """The grid's cross-product, without the points of training jobs the tuning job's
        journal already has (resume; the lost ones among them are replayed, not re-offered)."""
        asked = {tuple(sorted(encode_params(h, self.ranges).items())) for h in seen}
        for point in grid_points(self.ranges):
            params = encode_params(point, self.ranges)
            if tuple(sorted(params.items())) not in asked:
                yield params

    def _ask(self) -> tuple[optuna.trial.Trial, dict[str, Any]]:
        """A new trial and its hyperparameter values (an enqueued point's, if one waits). A
        conditional space is drawn define-by-run, only the ranges that exist for the trial."""
        if self.spec.conditional:
            trial = self.study.ask()
            return trial, draw_conditional(trial, self.ranges)
        trial = self.study.ask(self.distributions)
        return trial, decode_params(trial.params, self.ranges)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._replay:  # lost training jobs first, with the values they had
            config = self._replay.pop(0)
            self.study.enqueue_trial(encode_params(config["hyperparameters"], self.ranges))
            self._live[trial_id], _ = self._ask()
            self._suggested += 1
            return dict(config, suggested_at=time.time())
        if self._suggested >= self.max_trials:
            return FINISHED
        if self._grid is not None:
            params = next(self._grid, None)
            if params is None:
                self.exhausted = True
                return FINISHED
            self.study.enqueue_trial(params)
        trial, values = self._ask()
        self._live[trial_id] = trial
        self._suggested += 1
        number = self._next_number  # SageMaker numbers training jobs from 1
        self._next_number += 1
        return {
            Key.TRIAL_NUMBER: number,
            Key.TRAINING_JOB_NAME: training_job_name(self.spec.name, number, values,
                                                     self.spec.seed),
            "hyperparameters": values,
            "suggested_at": time.time(),  # the trial's queue wait starts here
        }

    def save(self, checkpoint_path: str) -> None:
        # Tune's periodic experiment checkpoint. The trials themselves are durable in the
        # study's journal (hpt resumes from it, not from this file).
        Path(checkpoint_path).write_text(json.dumps(
            {"suggested": self._suggested, "next_number": self._next_number}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self._suggested, self._next_number = state["suggested"], state["next_number"]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self._live.get(trial_id)
        # Optuna keeps intermediate values of single-objective studies only, one per step: a
        # step seen again (a PBT recipient restarting from its donor's step) keeps the first,
        # as Optuna would, without its warning.
        if trial is not None and OBJECTIVE in result and result.get(OBJECTIVE_STEP) and \
                not self.spec.multi_objective:
            step = int(result[OBJECTIVE_STEP])
            reported = self._reported.setdefault(trial_id, set())
            if step not in reported:
                reported.add(step)
                trial.report(float(result[OBJECTIVE]), step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trial = self._live.pop(trial_id, None)
        self._reported.pop(trial_id, None)
        if trial is None:
            return
        result = result or {}
        status = result.get(STATUS)
        metrics = final_metrics(result)
        if self.constraints:
            self._judge(trial, metrics)
        if status == TrialStatus.COMPLETED and self.spec.multi_objective:
            values = objective_values(metrics, self.objectives)
            self.study.tell(trial, values, state=None if values else TrialState.FAIL)
        elif status == TrialStatus.COMPLETED:
            self.study.tell(trial, float(result[OBJECTIVE]))
        elif status == TrialStatus.STOPPED or (status is None and not error and OBJECTIVE in result):
            # Early-stopped by the scheduler: its intermediate values stay visible to TPE.
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)


    def _judge(self, trial: optuna.trial.Trial, metrics: dict[str, float]) -> None:
        """The trial's constraint values (<= 0: met), one per constrained metric, where
        Optuna's samplers and optuna-dashboard read them."""
        for c, value in zip(self.constraints, violations(metrics, self.constraints)):
            trial.set_constraint(c["metric"], value)


def fail_orphans(study: optuna.Study) -> int:
    """Trials asked by a launcher that died stay RUNNING forever: end them as FAIL."""
    orphans = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in orphans:
        study.tell(number, state=TrialState.FAIL)
    return len(orphans)


def seed_from_parents(study: optuna.Study, spec, parents: dict[str, list[dict[str, Any]]]) -> int:
    """Warm start: the parents' completed training jobs become finished trials of this study.

    `parents` maps a parent tuning job to its completed rows (hyperparameters, objective).
    identical_data_and_algorithm: every value is reused as is (a value outside this space's
    ranges is an error). transfer_learning: only the hyperparameters both spaces have, and
    only values inside this space's ranges, are used, as SageMaker documents.
    """
    distributions = build_distributions(spec.hyperparameters)
    identical = spec.warm_start.type == "identical_data_and_algorithm"
    objectives = [o.model_dump() for o in spec.all_objectives]
    constraints = [c.model_dump() for c in spec.constraints]
    added = 0
    for parent, rows in parents.items():
        for row in rows:
            values = {k: v for k, v in row[Key.HYPERPARAMETERS].items() if k in spec.hyperparameters}
            expected = existing(spec.hyperparameters, values)
            if identical and values != expected:
                continue
            params, used = {}, {}
            for name, value in values.items():
                encoded = encode_params({name: value}, {name: spec.hyperparameters[name]})
                for key, param in encoded.items():
                    if _inside(distributions[key], param):
                        params[key], used[key] = param, distributions[key]
            if not params or (identical and len(params) != len(expected)):
                continue
            metrics = {**(row.get(Key.FINAL_METRICS) or {}),
                       spec.objective.metric: row[Key.OBJECTIVE_VALUE]}
            scores = objective_values(metrics, objectives)
            if scores is None:
                continue
            system = {CONSTRAINT_KEY_PREFIX + c["metric"]: value
                      for c, value in zip(constraints, violations(metrics, constraints))}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=used, values=scores,
                user_attrs={PARENT_ATTR: f"{parent}/{row[Key.TRAINING_JOB_NAME]}"},
                system_attrs=system))
            added += 1
    return added


def _inside(distribution, value) -> bool:
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except (ValueError, TypeError):
        return False
