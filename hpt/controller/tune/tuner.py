"""The Tuner of one tuning job: the searcher proposes, the scheduler stops early, the job's
control ends it, the callback records; each trial reserves its runtime's Ray bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune

from hpt.controller.tune.tune_searcher import TuneSearcher
from hpt.controller.tune.trainable import TrainingJobTrainable
from hpt.runtime.job_protocol import Runtime
from hpt.schedule.scheduler import make_scheduler
from hpt.core.trial import MAX_RETRIES


class TuneStopper(tune.Stopper):
    """The job's control (schedule/control.py) as a Ray Tune Stopper."""

    def __init__(self, control):
        self.control = control

    def __getstate__(self):  # pickled into tuner.pkl, which hpt never restores from
        return {}

    def __call__(self, trial_id, result) -> bool:
        return self.control(trial_id, result)

    def stop_all(self) -> bool:
        return self.control.stop_all()


def build_tuner(spec, trial_spec, runtime: Runtime, settings: dict[str, Any], root: Path,
                searcher, control, callback, trials: int) -> tune.Tuner:
    """`trial_spec`: the spec the trials run with (staged inputs); `searcher`: hpt's Optuna
    searcher; `control`: the job's; `trials`: how many Tune trials this run asks for (at
    least 1: Tune needs one)."""
    trainable = tune.with_resources(
        tune.with_parameters(TrainingJobTrainable, spec_dict=trial_spec.to_frozen_dict(),
                             experiment_dir=str(root), settings=settings),
        tune.PlacementGroupFactory(runtime.bundles(spec.trainer),
                                   strategy=runtime.bundle_strategy))
    scheduler = make_scheduler(spec)
    if hasattr(scheduler, "on_exploit"):  # PBT: its lineage goes to the journal
        scheduler.on_exploit = callback.on_exploit
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=TuneSearcher(searcher), scheduler=scheduler, num_samples=max(1, trials),
            max_concurrent_trials=spec.limits.max_parallel, reuse_actors=True),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(root / ".tune"), verbose=0, stop=TuneStopper(control),
            callbacks=[callback],
            # A lost host or actor (never the script's own failure) is retried twice.
            failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
            # The model artifact is the training job's model.tar.gz, not a Tune checkpoint.
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
