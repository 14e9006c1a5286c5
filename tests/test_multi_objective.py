"""Several objectives, constraints and conditional hyperparameters: the pure rules (front,
feasibility, picks, conditions) against brute force, and real tuning jobs (Ray, Optuna,
subprocess trainers) whose scripts record what they were given."""

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import hpt
from hpt.core.errors import UserError
from hpt.report.front import choose, front_of
from hpt.launcher.launch import launch
from hpt.core.objectives import is_feasible, pareto_optimal, unmet, violations
from hpt.search.space import draw_conditional
from hpt.serving.serve import plan_for
from hpt.spacefile import load_spec
from hpt.search.conditions import draw_order, existing, grid
from hpt.spacefile.ranges import Range
from helpers import counts, events, start_launcher, wait_for

PARETO = Path(__file__).resolve().parent / "trainers" / "pareto"
ACCURACY, SIZE, LATENCY = "validation:accuracy", "model:size_mb", "latency:ms"


def brute_force_front(points, maximize):
    """Pareto-optimal by the definition: no other candidate is >= on all and > on one."""
    def signed(p):
        return [x if up else -x for x, up in zip(p, maximize)]

    out = []
    for i, p in enumerate(points):
        if p is None:
            out.append(False)
            continue
        out.append(not any(
            q is not None and j != i and all(a >= b for a, b in zip(signed(q), signed(p)))
            and any(a > b for a, b in zip(signed(q), signed(p)))
            for j, q in enumerate(points)))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_the_front_is_exactly_the_undominated_candidates(seed):
    rng = random.Random(seed)
    dims = rng.choice([2, 3, 4])
    maximize = [rng.random() < 0.5 for _ in range(dims)]
    # Few distinct values: ties and duplicate points are common, as with real accuracies.
    points = [None if rng.random() < 0.15 else [rng.randint(0, 5) / 5 for _ in range(dims)]
              for _ in range(rng.randint(0, 40))]
    assert pareto_optimal(points, maximize) == brute_force_front(points, maximize)


def test_constraints_are_judged_on_final_values_and_a_missing_metric_fails_them():
    rules = [{"metric": "lat", "min": None, "max": 20.0}, {"metric": "acc", "min": 0.9,
                                                          "max": None}]
    assert violations({"lat": 15.0, "acc": 0.95}, rules) == [-5.0, pytest.approx(-0.05)]
    assert is_feasible({"lat": 20.0, "acc": 0.9}, rules)  # bounds are inclusive
    assert not is_feasible({"lat": 25.0, "acc": 0.95}, rules)
    assert not is_feasible({"acc": 0.95}, rules)  # never printed: not met
    assert unmet({"lat": 25.0}, rules) == ["lat=25 > 20", "acc never printed"]


def frozen(objectives, constraints=()):
    return {"objective": objectives[0], "objectives": list(objectives),
            "constraints": list(constraints), "hyperparameters": {},
            "metric_definitions": [{"name": o["metric"]} for o in objectives]}


def table(rows):
    import pandas as pd

    return pd.DataFrame([{"TrialNumber": i + 1, "TrainingJobName": f"job-{i + 1}",
                          "TrainingJobStatus": "Completed", "ParetoOptimal": True, **r}
                         for i, r in enumerate(rows)])


def test_a_pick_filters_the_front_then_takes_the_best_objective_it_does_not_name():
    spec = frozen([{"metric": "acc", "type": "maximize"}, {"metric": "size", "type": "minimize"}])
    front = front_of(table([{"acc": 0.99, "size": 5.0}, {"acc": 0.97, "size": 1.0},
                            {"acc": 0.95, "size": 0.1}]), spec)
    assert list(front["TrainingJobName"]) == ["job-1", "job-2", "job-3"]  # best acc first
    assert choose(front, spec, "size<=2")["TrainingJobName"] == "job-2"  # most accurate <= 2
    assert choose(front, spec, "acc>=0.96")["TrainingJobName"] == "job-2"  # smallest >= .96
    assert choose(front, spec, "acc>0.999") is None
    assert choose(front, spec, weights="size=1")["TrainingJobName"] == "job-3"
    assert choose(front, spec, weights="acc=1,size=1")["TrainingJobName"] == "job-2"
    for bad, phrase in [("size 2", "is not METRIC<=VALUE"), ("speed<=1", "not a metric of"),
                        ("size<=big", "not a finite number")]:
        with pytest.raises(UserError, match=phrase):
            choose(front, spec, bad)
    with pytest.raises(UserError, match="must be OBJECTIVE=WEIGHT"):
        choose(front, spec, weights="speed=1")
    with pytest.raises(UserError, match="sum to 0"):
        choose(front, spec, weights="acc=0")


def conditional_ranges():
    def r(**kw):
        from pydantic import TypeAdapter

        return TypeAdapter(Range).validate_python(kw)

    return {"momentum": r(type="continuous", min=0.5, max=0.9, when={"optimizer": ["sgd"]}),
            "optimizer": r(type="categorical", values=["sgd", "adam"]),
            "beta2": r(type="categorical", values=[0.99, 0.999], when={"optimizer": ["adam"]}),
            "nesterov": r(type="categorical", values=[True, False],
                          when={"optimizer": ["sgd"]}),
            "width": r(type="categorical", values=[1, 2])}


def test_conditions_order_parents_first_and_drop_ranges_that_do_not_exist():
    ranges = conditional_ranges()
    assert draw_order(ranges).index("optimizer") < draw_order(ranges).index("momentum")
    assert existing(ranges, {"optimizer": "adam", "momentum": 0.7, "beta2": 0.99}) == \
        {"optimizer": "adam", "beta2": 0.99}
    points = grid({k: v for k, v in ranges.items() if k != "momentum"})
    # sgd x nesterov x width + adam x beta2 x width: each distinct point once.
    assert len(points) == 2 * 2 + 2 * 2
    assert {tuple(sorted(p)) for p in points} == {("nesterov", "optimizer", "width"),
                                                  ("beta2", "optimizer", "width")}


def test_a_conditional_space_is_drawn_define_by_run_and_optuna_records_only_what_exists():
    ranges = conditional_ranges()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(
        seed=1, multivariate=True, group=True, n_startup_trials=4))
    for _ in range(12):
        trial = study.ask()
        values = draw_conditional(trial, ranges)
        study.tell(trial, values.get("momentum", 0.5) + values["width"])
        if values["optimizer"] == "adam":
            assert "momentum" not in values and "1-momentum" not in trial.params
            assert "beta2" in values and "nesterov" not in values
        else:
            assert 0.5 <= values["momentum"] <= 0.9 and "beta2" not in trial.params
    assert {"sgd", "adam"} == {t.params["optimizer"] for t in study.trials}


def pareto_space(name, max_trials=10, strategy="bayesian", seconds=0.0, **extra):
    space = {
        "name": name,
        "trainer": {"source_dir": str(PARETO), "entry_point": "train.py", "cpus_per_host": 1,
                    "max_runtime_seconds": 60},
        "static_hyperparameters": {"seconds": seconds},
        "hyperparameters": {
            "width": {"type": "integer", "min": 1, "max": 10},
            "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
            "momentum": {"type": "continuous", "min": 0.5, "max": 0.99,
                         "when": {"optimizer": ["sgd"]}},
            "beta2": {"type": "categorical", "values": [0.99, 0.999],
                      "when": {"optimizer": "adam"}}},
        "objectives": [{"metric": ACCURACY, "type": "maximize"},
                       {"metric": SIZE, "type": "minimize"}],
        "constraints": [{"metric": LATENCY, "max": 6}],
        "metric_definitions": [{"name": ACCURACY, "regex": "val_acc=([0-9.]+)"},
                               {"name": SIZE, "regex": "size_mb=([0-9.]+)"},
                               {"name": LATENCY, "regex": "latency_ms=([0-9.]+)"}],
        "strategy": strategy,
        "limits": {"max_trials": max_trials, "max_parallel": 2},
        "seed": 3,
    }
    space.update(extra)
    return space


def study_of(exp, name):
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(Path(exp) / name / "optuna.journal"))))


def assert_front_is_right(df):
    """ParetoOptimal is brute-force dominance over the feasible Completed jobs."""
    done = (df["TrainingJobStatus"] == "Completed") & df["Feasible"]
    points = [[a, s] if ok else None for a, s, ok in zip(df[ACCURACY], df[SIZE], done)]
    assert list(df["ParetoOptimal"]) == brute_force_front(points, [True, False])
    assert not (df["ParetoOptimal"] & ~df["Feasible"]).any()
    assert df["Feasible"].tolist() == (df[LATENCY] <= 6).tolist()


@pytest.mark.parametrize("strategy", ["bayesian", "nsga2"])
def test_a_conditional_multi_objective_job_gives_each_script_only_its_hyperparameters(
        ray_session, write_space, tmp_path, strategy):
    exp = tmp_path / "exp"
    name = f"mo-{strategy}"
    result = launch(load_spec(write_space(pareto_space(name, max_trials=12, strategy=strategy,
                                                       strategy_config={"population_size": 4}
                                                       if strategy == "nsga2" else {}))),
                    exp, dashboard=False)
    df = hpt.load_experiment(name, exp)
    assert len(df) == 12 and (df["TrainingJobStatus"] == "Completed").all(), df
    assert set(df["optimizer"]) == {"sgd", "adam"}
    for row in df.itertuples():
        seen = _seen_from_artifact(row.ModelArtifact)
        argv, file_hps = seen["argv"], seen["hyperparameters.json"]
        if row.optimizer == "adam":
            assert "--momentum" not in argv and "momentum" not in file_hps
            assert "momentum" not in seen["SM_HPS"] and "SM_HP_MOMENTUM" not in seen["SM_HP"]
            assert "--beta2" in argv and "beta2" in seen["SM_HPS"]
        else:
            assert "--momentum" in argv and "SM_HP_MOMENTUM" in seen["SM_HP"]
            assert "--beta2" not in argv and "beta2" not in file_hps
    study = study_of(exp, name)
    assert len(study.directions) == 2
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 12
    assert sorted(tuple(t.values) for t in study.trials) == sorted(zip(df[ACCURACY], df[SIZE]))
    for t in study.trials:  # Optuna's own record: the conditional parameters only where they exist
        assert ("1-momentum" in t.params or "momentum" in t.params) == (
            t.params["optimizer"] == "sgd")
        assert ("beta2" in t.params) == (t.params["optimizer"] == "adam")
        # What the samplers and the dashboard read: <= 0 exactly when the job met it.
        assert set(t.constraints) == {LATENCY}
        assert (t.constraints[LATENCY] <= 0) == (t.params["width"] <= 6)
    assert_front_is_right(df)
    front = hpt.pareto_front(name, exp)
    assert len(front) >= 2 and front["ParetoOptimal"].all()
    assert not result.best or result.best["TrainingJobName"] in set(df["TrainingJobName"])

    # hpt best: the front as JSON; with a rule, one job of it.
    cli = [sys.executable, "-m", "hpt.cli.main"]
    shown = subprocess.run([*cli, "best", name, "--experiments-dir", str(exp)],
                           capture_output=True, text=True, timeout=60)
    listed = json.loads(shown.stdout)
    assert [t["TrainingJobName"] for t in listed] == list(front["TrainingJobName"])
    small = subprocess.run([*cli, "best", name, "--experiments-dir", str(exp), "--pick",
                            f"{SIZE}<={front[SIZE].median()}"], capture_output=True, text=True,
                           timeout=60)
    picked = json.loads(small.stdout)
    under = front[front[SIZE] <= front[SIZE].median()]
    assert picked["TrainingJobName"] == under.sort_values(
        [ACCURACY, "TrialNumber"], ascending=[False, True])["TrainingJobName"].iloc[0]
    assert "momentum" not in picked["HyperParameters"] or picked["HyperParameters"][
        "optimizer"] == "sgd"
    status = subprocess.run([*cli, "status", name, "--experiments-dir", str(exp)],
                            capture_output=True, text=True, timeout=60)
    assert f"Pareto front: {len(front)} training jobs" in status.stdout
    refused = subprocess.run([*cli, "serve", name, "--experiments-dir", str(exp), "--port", "0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "no single best model" in refused.stderr
    assert front["TrainingJobName"].iloc[0] in refused.stderr
    # hpt serve --pick serves the job hpt best --pick names.
    _, plan, _, served = plan_for(name, exp, pick=f"{SIZE}<={front[SIZE].median()}",
                                  weights=None)
    assert served == picked["TrainingJobName"]
    assert list(plan.variants) == [served]


def _seen_from_artifact(artifact):
    import tarfile

    with tarfile.open(artifact) as tar:
        return json.load(tar.extractfile("seen.json"))


def test_kill_9_then_resume_and_extend_a_multi_objective_job_loses_and_repeats_nothing(
        ray_session, write_space, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    name = "mo-crash"
    space = write_space(pareto_space(name, max_trials=6, strategy="random", seconds=1.0))
    exp = tmp_path / "exp"
    launcher = start_launcher(space, exp, address)
    try:
        wait_for(lambda: counts(events(exp, name), "trial_ended") >= 2
                 and counts(events(exp, name), "trial_started")
                 > counts(events(exp, name), "trial_ended"), what="a job in mid-flight")
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
    finally:
        launcher.kill()
    cli = [sys.executable, "-m", "hpt.cli.main", "launch", str(space), "--resume",
           "--experiments-dir", str(exp), "--address", address]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pareto front:" in done.stdout
    df = hpt.load_experiment(name, exp)
    assert sorted(df["TrialNumber"]) == list(range(1, 7)) and df["TrainingJobName"].is_unique
    assert (df["TrainingJobStatus"] == "Completed").all()
    done = subprocess.run([*cli, "--max-trials", "9"], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    df = hpt.load_experiment(name, exp)
    assert sorted(df["TrialNumber"]) == list(range(1, 10)) and df["TrainingJobName"].is_unique
    ended = [e["training_job_name"] for e in events(exp, name) if e["event"] == "trial_ended"]
    assert sorted(set(ended)) == sorted(df["TrainingJobName"])
    states = [t.state.name for t in study_of(exp, name).trials]
    assert states.count("COMPLETE") == 9 and "RUNNING" not in states
    assert all(len(t.values) == 2 for t in study_of(exp, name).trials if t.values)
    assert_front_is_right(df)


def test_a_job_that_never_prints_a_second_objective_fails_naming_it(
        ray_session, write_space, tmp_path):
    space = pareto_space("mo-silent", max_trials=2, strategy="random")
    space["metric_definitions"][1]["regex"] = "never_printed=([0-9.]+)"
    launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    df = hpt.load_experiment("mo-silent", tmp_path / "exp")
    assert (df["TrainingJobStatus"] == "Failed").all()
    assert df["FailureReason"].str.contains(
        f"ObjectiveMetricNeverMatched: the objective metric '{SIZE}' never matched").all()
    assert not df["ParetoOptimal"].any()


def test_export_refuses_what_sagemaker_cannot_express_and_primary_exports_one_objective(
        write_space, tmp_path):
    space = write_space(pareto_space("mo-export"))
    cli = [sys.executable, "-m", "hpt.cli.main", "export-sagemaker", str(space)]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert any("objectives: SageMaker tunes one objective metric" in line for line in lines)
    assert any("constraints: SageMaker has no constraints" in line for line in lines)
    assert any("hyperparameters.momentum.when:" in line for line in lines)
    done = subprocess.run([*cli, "--primary", SIZE, "--flatten"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": SIZE}
    assert f"exported the single objective '{SIZE}'" in done.stderr
    assert "without the when: conditions" in done.stderr
    wrong = subprocess.run([*cli, "--primary", "train:loss", "--flatten"], capture_output=True,
                           text=True, timeout=60)
    assert wrong.returncode == 2 and "not an objective of this space" in wrong.stderr


@pytest.mark.parametrize("space", sorted((Path(__file__).resolve().parent.parent /
                                          "search_spaces").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_the_export_of_every_single_objective_space_is_byte_identical_to_before(space):
    """Byte for byte what the release before multi-objective tuning wrote, but the local paths
    in the hpt: tags, absolute since (their repository's folder is `<repo>` in the files)."""
    golden = Path(__file__).resolve().parent / "fixtures" / "export-golden" / f"{space.name}.json"
    if not golden.is_file():
        pytest.skip("a space added with or after multi-objective tuning: no earlier export")
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "export-sagemaker", str(space)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    repo = str(Path(__file__).resolve().parent.parent)
    assert done.stdout.replace(repo, "<repo>") == golden.read_text()


def test_the_default_pareto_space_is_valid_and_multi_objective():
    spec = load_spec(Path(__file__).resolve().parent.parent / "search_spaces" /
                     "digits-cnn-pareto.yaml", check_disk=False)
    assert spec.multi_objective and spec.conditional and spec.constraints
    assert [o.metric for o in spec.all_objectives] == [ACCURACY, SIZE]
    assert spec.objective.metric == ACCURACY  # the first one: early stopping acts on it
    order = draw_order(spec.hyperparameters)
    assert order.index("optimizer") < order.index("momentum")


def test_warm_start_and_early_stopping_work_with_several_objectives(
        ray_session, write_space, tmp_path):
    exp = tmp_path / "exp"
    launch(load_spec(write_space(pareto_space("mo-parent", max_trials=4, strategy="random"),
                                 "parent.yaml")), exp, dashboard=False)
    parent = hpt.load_experiment("mo-parent", exp)
    child = pareto_space("mo-child", max_trials=2, early_stopping="auto",
                         warm_start={"parents": ["mo-parent"],
                                     "type": "identical_data_and_algorithm"})
    launch(load_spec(write_space(child, "child.yaml")), exp, dashboard=False)
    assert len(hpt.load_experiment("mo-child", exp)) == 2
    seeded = [t for t in study_of(exp, "mo-child").trials
              if "hpt_warm_start_parent" in t.user_attrs]
    # Every completed parent job, with both objective values and its constraint value.
    assert sorted(tuple(t.values) for t in seeded) == sorted(zip(parent[ACCURACY], parent[SIZE]))
    assert all(set(t.constraints) == {LATENCY} for t in seeded)


# In the slow set (pytest --slow), for CI's 25 minutes: the jobs above check the same rules
# with a test trainer, and test_cnn_trainer checks the CNN's size and latency line.
@pytest.mark.slow
def test_the_default_pareto_job_trains_the_cnn_and_its_front_is_right(
        ray_session, write_space, tmp_path, digits_channels):
    """search_spaces/digits-cnn-pareto.yaml, shortened (6 trials of 3 epochs): real CNNs of
    different sizes, the front by brute force, infeasible jobs off it, momentum only for sgd."""
    import yaml

    repo = Path(__file__).resolve().parent.parent
    space = yaml.safe_load((repo / "search_spaces" / "digits-cnn-pareto.yaml").read_text())
    space["trainer"]["source_dir"] = str(repo / "trainers" / "cnn")
    space["channels"] = {name: str(digits_channels / name) for name in ("train", "test")}
    space.pop("prepare")
    space["static_hyperparameters"]["epochs"] = 3
    space["limits"]["max_trials"] = 6
    exp = tmp_path / "exp"
    launch(load_spec(write_space(space)), exp, dashboard=False)
    df = hpt.load_experiment("digits-cnn-pareto", exp)
    assert (df["TrainingJobStatus"] == "Completed").all(), df["FailureReason"]
    assert df["model:size_mb"].nunique() > 1 and df["latency:p99_ms"].notna().all()
    done = df["Feasible"]
    points = [[a, s] if ok else None for a, s, ok in
              zip(df["validation:accuracy"], df["model:size_mb"], done)]
    assert list(df["ParetoOptimal"]) == brute_force_front(points, [True, False])
    assert list(df["Feasible"]) == list((df["validation:accuracy"] >= 0.96)
                                        & (df["latency:p99_ms"] <= 50))
    assert df["ParetoOptimal"].any()
    assert df.loc[df["optimizer"] == "adam", "momentum"].isna().all()
    assert df.loc[df["optimizer"] == "sgd", "momentum"].notna().all()


def test_completion_criteria_count_only_feasible_jobs():
    from hpt.schedule.completion import CompletionCriteria, CompletionStopper
    from hpt.core.trial import OBJECTIVE, RECORD, STATUS

    stopper = CompletionStopper(CompletionCriteria(True, target=0.9),
                                [{"metric": "lat", "min": None, "max": 20.0}])
    def result(acc, lat):  # as Tune hands it: flattened
        return {STATUS: "Completed", OBJECTIVE: acc, f"{RECORD}/final_metrics/acc": acc,
                f"{RECORD}/final_metrics/lat": lat}

    stopper("t1", result(0.95, 30.0))  # reaches the target, but infeasible
    assert not stopper.stop_all()
    stopper("t2", result(0.95, 10.0))
    assert stopper.stop_all()


def test_a_conditional_grid_offers_each_distinct_point_once(ray_session, write_space, tmp_path):
    space = pareto_space("mo-grid", strategy="grid")
    space["hyperparameters"] = {
        "width": {"type": "categorical", "values": [1, 8]},
        "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
        "beta2": {"type": "categorical", "values": [0.99, 0.999], "when": {"optimizer": "adam"}}}
    del space["limits"]["max_trials"]  # the grid's size: 2 x (1 sgd + 2 adam) = 6
    spec = load_spec(write_space(space))
    assert spec.limits.max_trials == 6
    launch(spec, tmp_path / "exp", dashboard=False)
    df = hpt.load_experiment("mo-grid", tmp_path / "exp")
    points = {(r.width, r.optimizer, None if r.optimizer == "sgd" else r.beta2)
              for r in df.itertuples()}
    assert len(df) == 6 and len(points) == 6
    assert df.loc[df["optimizer"] == "sgd", "beta2"].isna().all()
    assert_front_is_right(df)


def test_the_best_of_several_objectives_breaks_a_tie_by_the_next_so_it_is_on_the_front():
    from hpt.experiment.best import BestSoFar

    spec = frozen([{"metric": "acc", "type": "maximize"}, {"metric": "size", "type": "minimize"}])
    best = BestSoFar.of(spec)
    for number, acc, size in [(1, 0.99, 5.0), (2, 0.99, 1.0), (3, 0.99, 1.0), (4, 0.9, 0.1)]:
        best.offer({"status": "Completed", "trial_number": number, "objective_value": acc,
                    "final_metrics": {"acc": acc, "size": size}})
    assert best.record["trial_number"] == 2  # 1 is dominated by 2; 3 ties 2 and comes later
    front = front_of(table([{"acc": 0.99, "size": 1.0}, {"acc": 0.99, "size": 0.5}]), spec)
    assert list(front["TrainingJobName"]) == ["job-2", "job-1"]
    with pytest.raises(UserError, match="give at least one rule"):
        choose(front, spec, "")
    with pytest.raises(UserError, match="write the comparison as <= or >="):
        choose(front, spec, "size=<2")
