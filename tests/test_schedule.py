"""Early stopping (SageMaker's median rule, ASHA) and completion criteria: by hand, then real."""

from pathlib import Path

import optuna
import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.schedule.completion import CompletionCriteria
from hpt.schedule.median import should_stop
from hpt.spacefile import load_spec

CURVES = Path(__file__).parent / "trainers" / "curves"


def test_median_rule_by_hand():
    # Running averages at step 2 of three other jobs: (0.5+0.7)/2=0.6, (0.3+0.5)/2=0.4,
    # (0.8+0.8)/2=0.8 -> median 0.6. A job whose average is 0.55 is worse: stopped when
    # maximizing, kept when minimizing; 0.6 itself is not worse than the median.
    others = [0.6, 0.4, 0.8]
    assert should_stop(0.55, others, maximize=True, min_samples=3)
    assert not should_stop(0.6, others, maximize=True, min_samples=3)
    assert not should_stop(0.55, others, maximize=False, min_samples=3)
    assert should_stop(0.65, others, maximize=False, min_samples=3)
    assert not should_stop(0.1, others[:2], maximize=True, min_samples=3)  # too few peers
    assert should_stop(0.45, [0.4, 0.5, 0.6, 0.9], maximize=True, min_samples=3)  # median 0.55


def test_each_controller_gets_the_rule_in_its_own_terms(write_space, tmp_path):
    """The local controller gets hpt's protocol (Ray Tune's ASHA adapted), Ray Tune's
    controller Tune's (hpt's median rule adapted); both decide the same on the same curves."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers import TrialScheduler as TuneTrialScheduler

    from hpt.schedule.median import MedianStoppingRule
    from hpt.schedule.scheduler_protocol import Decision, TrialScheduler
    from hpt.schedule.scheduler import local_scheduler, make_scheduler
    from hpt.schedule.tune_adapter import ForTune, FromTune, TuneTrial

    def spec_of(**extra):
        (tmp_path / "train.py").write_text("")
        space = curves_space("rules", ["0.9:0"], **extra)
        space["trainer"]["source_dir"] = str(tmp_path)
        return load_spec(write_space(space))

    def point(value, step):
        return {"objective_value": value, "objective_step": step}

    asha = local_scheduler(spec_of(early_stopping="asha", strategy_config={
        "min_resource": 1, "max_resource": 3, "reduction_factor": 2}))
    assert isinstance(asha, FromTune) and isinstance(asha.tune, ASHAScheduler)
    for trial in "ab":
        asha.trial_added(trial, {"trial_number": trial})
    assert asha.on_result("a", point(0.9, 1)) is Decision.CONTINUE
    assert asha.on_result("b", point(0.1, 1)) is Decision.STOP  # below rung 1's top half
    asha.trial_completed("b", point(0.1, 1))
    asha.trial_failed("a")
    assert asha.trials == {}

    median = local_scheduler(spec_of(early_stopping="auto"))
    assert isinstance(median, MedianStoppingRule) and isinstance(median, TrialScheduler)
    for_tune = make_scheduler(spec_of(early_stopping="auto"))
    assert isinstance(for_tune, ForTune) and isinstance(for_tune, TuneTrialScheduler)
    tune_trials = {t: TuneTrial(t, {}) for t in "abcd"}
    for trial, value in zip("abcd", (0.9, 0.8, 0.7, 0.3)):
        for_tune.on_trial_add(None, tune_trials[trial])
        median.trial_added(trial, {})
        said = for_tune.on_trial_result(None, tune_trials[trial], point(value, 1))
        decided = median.on_result(trial, point(value, 1))
        assert said == (TuneTrialScheduler.STOP if trial == "d" else TuneTrialScheduler.CONTINUE)
        assert decided is (Decision.STOP if trial == "d" else Decision.CONTINUE)


def test_completion_criteria_by_hand():
    target = CompletionCriteria(maximize=True, target=0.9)
    assert [target.observe(v) for v in (0.5, 0.89, 0.9)] == [
        None, None, "TargetObjectiveMetricValueReached"]
    low = CompletionCriteria(maximize=False, target=0.1)
    assert low.observe(0.2) is None and low.observe(0.1) == "TargetObjectiveMetricValueReached"
    stale = CompletionCriteria(maximize=True, not_improving=2)
    assert [stale.observe(v) for v in (0.5, 0.6, 0.6, 0.55)] == [
        None, None, None, "BestObjectiveNotImproving"]
    conv = CompletionCriteria(maximize=True, convergence=True, max_trials=20)  # window 5
    values = [0.5, 0.7, 0.8, 0.9, 0.96, 0.9605, 0.9606, 0.9, 0.9, 0.9]
    reasons = [conv.observe(v) for v in values]
    # After 10 jobs: best 0.9606 vs 0.96 after job 5: +0.06% < 0.1%.
    assert reasons == [None] * 9 + ["ConvergenceDetected"]
    moving = CompletionCriteria(maximize=True, convergence=True, max_trials=20)
    assert all(moving.observe(0.5 + i / 100) is None for i in range(10))


def curves_space(name, profiles, **extra):
    space = {
        "name": name,
        "trainer": {"source_dir": str(CURVES), "entry_point": "train.py", "cpus_per_host": 1,
                    "max_runtime_seconds": 60},
        "static_hyperparameters": {"epochs": 3},
        "hyperparameters": {"profile": {"type": "categorical", "values": profiles}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "grid",
        "limits": {"max_parallel": 1},
    }
    space.update(extra)
    return space


def by_profile(name, exp):
    return {r["profile"]: r for _, r in hpt.load_experiment(name, exp).iterrows()}


def test_median_rule_stops_exactly_the_jobs_the_hand_computation_says(
        ray_session, write_space, tmp_path):
    # Sequential jobs; quality orders every running average. Jobs 1-3 have fewer than 3
    # peers at every step and run to the end; jobs 4-6 are below the median of
    # {0.9, 0.8, 0.7} x t/3 at step 1 and stop there; job 7 (0.85) is above it and completes.
    profiles = ["0.9:0", "0.8:0", "0.7:0", "0.3:0", "0.2:0", "0.1:0", "0.85:0"]
    spec = load_spec(write_space(curves_space("median", profiles, early_stopping="auto")))
    launch(spec, tmp_path / "exp", dashboard=False)
    rows = by_profile("median", tmp_path / "exp")
    for p in ("0.9:0", "0.8:0", "0.7:0", "0.85:0"):
        assert rows[p]["TrainingJobStatus"] == "Completed" and rows[p]["ObjectiveSteps"] == 3
    for p in ("0.3:0", "0.2:0", "0.1:0"):
        assert rows[p]["TrainingJobStatus"] == "Stopped", rows[p]["FailureReason"]
        assert rows[p]["ObjectiveSteps"] == 1 and rows[p]["FailureReason"] == \
            "Stopped by early stopping"
        assert rows[p]["FinalObjectiveValue"] == pytest.approx(float(p.split(":")[0]) / 3,
                                                               abs=1e-6)
    study = optuna.load_study(study_name="median", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "exp/median/optuna.journal"))))
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 4 + ["PRUNED"] * 3


def test_asha_stops_bad_curves(ray_session, write_space, tmp_path):
    profiles = ["0.9:0", "0.3:0", "0.2:0", "0.1:0"]
    spec = load_spec(write_space(curves_space(
        "asha", profiles, early_stopping="asha",
        strategy_config={"min_resource": 1, "max_resource": 3, "reduction_factor": 2})))
    launch(spec, tmp_path / "exp", dashboard=False)
    rows = by_profile("asha", tmp_path / "exp")
    assert rows["0.9:0"]["TrainingJobStatus"] == "Completed"
    assert all(rows[p]["TrainingJobStatus"] == "Stopped" and rows[p]["ObjectiveSteps"] < 3
               for p in profiles[1:])


def test_target_objective_ends_the_job_and_stops_the_running_trials(
        ray_session, write_space, tmp_path):
    # Two at a time: the slow job is still running when the fast one reaches the target (the
    # fast one takes 3 s, so the second actor has started even on a loaded machine).
    profiles = ["0.95:1", "0.5:5", "0.6:0", "0.7:0"]
    spec = load_spec(write_space(curves_space(
        "target", profiles, completion={"target_objective": 0.9},
        limits={"max_parallel": 2})))
    result = launch(spec, tmp_path / "exp", dashboard=False)
    assert result.end_reason == "TargetObjectiveMetricValueReached"
    rows = by_profile("target", tmp_path / "exp")
    assert set(rows) == {"0.95:1", "0.5:5"}  # nothing new started after the target
    assert rows["0.95:1"]["TrainingJobStatus"] == "Completed"
    slow = rows["0.5:5"]
    assert slow["TrainingJobStatus"] == "Stopped"
    assert slow["FailureReason"] == "Stopped: the tuning job ended (TargetObjectiveMetricValueReached)"
    assert slow["TrainingElapsedTimeSeconds"] < 10
    assert hpt.job_status("target", tmp_path / "exp")["EndReason"] == \
        "TargetObjectiveMetricValueReached"


def test_not_improving_ends_the_job(ray_session, write_space, tmp_path):
    profiles = ["0.9:0", "0.5:0", "0.6:0", "0.7:0", "0.8:0"]
    spec = load_spec(write_space(curves_space(
        "stale", profiles, completion={"max_trials_not_improving": 2})))
    result = launch(spec, tmp_path / "exp", dashboard=False)
    assert result.end_reason == "BestObjectiveNotImproving"
    assert len(hpt.load_experiment("stale", tmp_path / "exp")) == 3


def test_the_tuning_jobs_max_runtime_ends_it_and_says_so(ray_session, write_space, tmp_path):
    profiles = ["0.5:1", "0.6:1", "0.7:1", "0.8:1", "0.9:1"]  # 3 s each, one at a time
    spec = load_spec(write_space(curves_space(
        "deadline", profiles, limits={"max_parallel": 1, "max_runtime_seconds": 5})))
    result = launch(spec, tmp_path / "exp", dashboard=False)
    assert result.end_reason == "MaxRuntimeExceeded"
    df = hpt.load_experiment("deadline", tmp_path / "exp")
    assert 1 <= len(df) < 5
    assert hpt.job_status("deadline", tmp_path / "exp")["EndReason"] == "MaxRuntimeExceeded"
