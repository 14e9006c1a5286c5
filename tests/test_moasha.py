"""Multi-objective early stopping (MOASHA): the ranking rule by hand, the scheduler's
decisions, and real tuning jobs on both controllers whose stops follow the rule."""

import math

import pytest

import hpt
from hpt.core.objectives import best_first, crowding_distances, nondominated_ranks
from hpt.launcher.launch import launch
from hpt.schedule.moasha import MultiObjectiveASHA, goes_on, stop_rungs
from hpt.schedule.scheduler_protocol import Decision
from hpt.spacefile import load_spec
from test_schedule import curves_space

MAX_MIN = [True, False]  # accuracy up, size down


def test_fronts_and_crowding_by_hand():
    # (accuracy, size): d is dominated by a and b; e by d as well (a front of its own).
    points = [(0.9, 5.0), (0.8, 1.0), (0.95, 10.0), (0.7, 8.0), (0.6, 9.0), (0.85, 3.0)]
    assert nondominated_ranks(points, MAX_MIN) == [0, 0, 0, 1, 2, 0]
    front = [points[i] for i in (0, 1, 2, 5)]
    distances = crowding_distances(front)
    assert distances[1] == distances[2] == math.inf  # the front's two ends
    assert distances[0] == pytest.approx((0.95 - 0.85) / 0.15 + (10 - 3) / 9)
    assert distances[3] == pytest.approx((0.9 - 0.8) / 0.15 + (5 - 1) / 9)
    # the ends, then the less crowded middle one, then the more crowded one, then the fronts
    assert best_first(points, MAX_MIN) == [1, 2, 0, 5, 3, 4]


def test_a_rung_keeps_its_top_by_every_objective():
    reached = {"acc": [0.9, 10.0], "small": [0.5, 1.0], "worse": [0.4, 20.0]}
    # n=3, η=2: the top 2 go on: the two ends of the front; first-objective ASHA would keep
    # "worse" (0.4) over nothing, and stop "small" (0.5 < its cutoff) instead.
    assert goes_on("small", reached, MAX_MIN, 2) and goes_on("acc", reached, MAX_MIN, 2)
    assert not goes_on("worse", reached, MAX_MIN, 2)
    assert goes_on("alone", {"alone": [0.1, 99.0]}, MAX_MIN, 2)
    # An objective one of them has not printed yet is left out: the first decides.
    unknown = {"a": [0.9, None], "b": [0.5, 1.0]}
    assert goes_on("a", unknown, MAX_MIN, 2) and not goes_on("b", unknown, MAX_MIN, 2)


def test_the_scheduler_judges_each_rung_once_from_tune_flattened_results_too():
    assert stop_rungs(1, 9, 3) == [1, 3] and stop_rungs(1, 8, 2) == [1, 2, 4]
    moasha = MultiObjectiveASHA(stop_rungs(1, 9, 2), 2, [("acc", True), ("size", False)])

    def nested(acc, size, step):
        return {"objective_value": acc, "objective_step": step,
                "hpt_objectives": {"acc": acc, "size": size}}

    def flattened(acc, size, step):  # how Ray Tune's controller hands results on
        return {"objective_value": acc, "objective_step": step, "hpt_objectives/acc": acc,
                "hpt_objectives/size": size}

    assert moasha.on_result("a", nested(0.9, 10.0, 1)) is Decision.CONTINUE  # alone
    assert moasha.on_result("c", nested(0.4, 20.0, 1)) is Decision.STOP  # a dominates it
    # n=3, the top 2 go on: a and b, the front's two ends (by accuracy alone, c would)
    assert moasha.on_result("b", flattened(0.5, 1.0, 1)) is Decision.CONTINUE
    assert moasha.on_result("a", nested(0.95, 10.0, 1)) is Decision.CONTINUE  # judged once
    assert moasha.on_result("a", nested(0.95, 10.0, 3)) is Decision.CONTINUE  # rung 2
    assert set(moasha.reached[1]) == {"a", "b", "c"} and set(moasha.reached[2]) == {"a"}
    assert moasha.reached[4] == {}


@pytest.mark.smoke  # two tuning jobs of four short curves each: ~30 s
def test_a_two_objective_job_stops_the_dominated_curves_and_keeps_the_front(
        controller, ray_session, write_space, tmp_path):
    # Sequential jobs (max_parallel 1, in the grid's order), η=2, one rung at step 1 (a job
    # past max_resource 2 runs to its end). At the rung: 0.4 (size 20) is dominated by 0.9
    # (n=2: stopped); 0.5 (size 1, the smallest) is on the front with 0.9 (n=3: the top 2 go
    # on), where first-objective ASHA would stop it (0.5 is below 0.9 and 0.4's median);
    # 0.3 (size 30) is dominated by all (n=4).
    profiles = ["0.9:0:10", "0.4:0:20", "0.5:0:1", "0.3:0:30"]
    space = curves_space(
        f"moasha-{controller}", profiles, early_stopping="asha",
        strategy_config={"min_resource": 1, "max_resource": 2, "reduction_factor": 2})
    del space["objective"]
    space["objectives"] = [{"metric": "acc", "type": "maximize"},
                           {"metric": "size", "type": "minimize"}]
    space["metric_definitions"].append({"name": "size", "regex": "size_mb=([0-9.]+)"})
    launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    table = hpt.load_experiment(f"moasha-{controller}", tmp_path / "exp")
    ran = table.sort_values("TrainingStartTime")
    assert list(ran["profile"]) == profiles  # the grid's order
    outcome = {r["profile"]: (r["TrainingJobStatus"], r["ObjectiveSteps"])
               for _, r in ran.iterrows()}
    assert outcome == {"0.9:0:10": ("Completed", 3), "0.4:0:20": ("Stopped", 1),
                       "0.5:0:1": ("Completed", 3), "0.3:0:30": ("Stopped", 1)}
    stopped = ran[ran["TrainingJobStatus"] == "Stopped"]
    assert set(stopped["FailureReason"]) == {"Stopped by early stopping"}


def test_promotion_ranks_a_rung_by_every_objective_and_a_resumed_ledger_keeps_them():
    from hpt.schedule.promotion import PromotionLedger, seed_ledger

    objectives = (("acc", True), ("size", False))
    ledger = PromotionLedger((1, 3, 9), 3, True, objectives=objectives)
    for trial, acc, size in (("b", 0.5, 1.0), ("a", 0.9, 10.0), ("c", 0.4, 20.0)):
        ledger.record(trial, 1, acc, {"acc": acc, "size": size})
    # n=3, η=3: one promotable. b and a share the front (b came first); by accuracy alone
    # it would be a.
    assert ledger.next_promotion() == ("b", 3)
    alone = PromotionLedger((1, 3, 9), 3, True)
    for trial, acc in (("b", 0.5), ("a", 0.9), ("c", 0.4)):
        alone.record(trial, 1, acc)
    assert alone.next_promotion() == ("a", 3)

    resumed = PromotionLedger((1, 3, 9), 3, True, objectives=objectives)
    row = {"training_job_name": "job-001", "status": "Stopped", "rungs": {1: 0.5},
           "rung_metrics": {1: {"acc": 0.5, "size": 1.0}}}
    trial_id = seed_ledger(resumed, row)
    assert resumed.vectors[1] == {trial_id: [0.5, 1.0]}


@pytest.mark.smoke  # three short curves, one promoted: ~10 s
def test_promotion_with_two_objectives_promotes_the_front_member_accuracy_alone_would_not(
        write_space, tmp_path):
    # Sequential (the grid's order), rungs 1 and 3, η=3: at rung 1, 0.5 (size 1) and 0.9
    # (size 10) share the front, 0.5 first; the one promotable is 0.5, where accuracy alone
    # would promote 0.9. Each run's budget is `epochs` (the curve trainer's own).
    profiles = ["0.5:0:1", "0.9:0:10", "0.4:0:20"]
    space = curves_space("mo-promotion", profiles, early_stopping="asha", strategy_config={
        "mode": "promotion", "min_resource": 1, "max_resource": 3, "reduction_factor": 3})
    del space["objective"], space["static_hyperparameters"]
    space["objectives"] = [{"metric": "acc", "type": "maximize"},
                           {"metric": "size", "type": "minimize"}]
    space["metric_definitions"].append({"name": "size", "regex": "size_mb=([0-9.]+)"})
    launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False,
           controller="local")
    table = hpt.load_experiment("mo-promotion", tmp_path / "exp")
    outcome = {r["profile"]: (r["TrainingJobStatus"], r["ObjectiveSteps"])
               for _, r in table.iterrows()}
    assert outcome == {"0.5:0:1": ("Completed", 3), "0.9:0:10": ("Stopped", 1),
                       "0.4:0:20": ("Stopped", 1)}
