"""Promotion-based ASHA (hpt/schedule/promotion.py): trials pause at rungs and the best go on
from their checkpoint, as the same training job; its rules, its spec checks, and real jobs of
the reference CNN (paused, promoted, resumed after a kill -9 of the launcher)."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import hpt
from hpt.controller import choose_controller
from hpt.core.errors import UserError
from hpt.runtime.runtimes import RUNTIMES
from hpt.schedule.promotion import PromotionLedger, rung_levels
from hpt.spacefile import SpecError, load_spec
from helpers import cnn_space, events, wait_for

LEVELS = (1, 3, 9)


def promotion_space(name, channels, max_trials=6, **config):
    space = cnn_space(name, channels, epochs=LEVELS[-1], max_trials=max_trials)
    space["early_stopping"] = "asha"
    space["strategy_config"] = {"mode": "promotion", "min_resource": LEVELS[0],
                                "max_resource": LEVELS[-1], "reduction_factor": 3, **config}
    return space


# -- the rule --------------------------------------------------------------------------------

def test_rungs_grow_by_the_reduction_factor_and_end_at_max_resource():
    assert rung_levels(1, 9, 3) == (1, 3, 9)
    assert rung_levels(2, 15, 3) == (2, 6, 15)
    assert rung_levels(1, 10, 3) == (1, 3, 9, 10)
    assert rung_levels(1, 4, 1.5) == (1, 2, 3, 4)  # rounded levels that repeat are dropped
    assert rung_levels(5, 5, 3) == (5,)


def test_the_top_third_of_a_rung_is_promoted_highest_rung_first():
    ledger = PromotionLedger(LEVELS, 3, maximize=True)
    for trial, value in (("a", 0.5), ("b", 0.9)):
        ledger.record(trial, 1, value)
    assert ledger.next_promotion() is None  # two at rung 1: a third of them is no one
    ledger.record("c", 1, 0.7)
    assert ledger.next_promotion() == ("b", 3)
    ledger.mark_promoted("b", 1)
    assert ledger.next_promotion() is None
    for trial, value in (("d", 0.1), ("e", 0.2), ("f", 0.95)):
        ledger.record(trial, 1, value)
    assert ledger.next_promotion() == ("f", 3)  # six at rung 1: the best two
    ledger.mark_promoted("f", 1)
    for trial in "bf":
        ledger.record(trial, 3, 0.99 if trial == "b" else 0.98)
    ledger.record("c", 3, 0.5)  # (as if promoted before)
    assert ledger.next_promotion() == ("b", 9)  # the higher rung goes first
    assert ledger.next_promotion(eligible={"a", "c"}) is None  # b is not paused


def test_minimize_ranks_the_lowest_first_and_a_trial_without_a_value_last():
    ledger = PromotionLedger(LEVELS, 3, maximize=False)
    for trial, value in (("a", 0.2), ("b", None), ("c", 0.1)):
        ledger.record(trial, 1, value)
    assert ledger.next_promotion() == ("c", 3)


def test_a_job_too_small_for_its_rungs_still_trains_one_trial_to_the_full_budget():
    ledger = PromotionLedger(LEVELS, 3, maximize=True)
    for trial, value in (("a", 0.5), ("b", 0.9)):
        ledger.record(trial, 1, value)
    assert ledger.next_promotion() is None
    assert ledger.next_promotion(exhausted=True) == ("b", 3)
    ledger.mark_promoted("b", 1)
    ledger.record("b", 3, 0.95)
    assert ledger.next_promotion(exhausted=True) == ("b", 9)
    ledger.mark_promoted("b", 3)
    ledger.record("b", 9, 0.97)
    assert ledger.next_promotion(exhausted=True) is None  # one reached max_resource


# -- the spec --------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field, says", [
    (lambda s: s["strategy_config"].pop("max_resource"), "strategy_config.max_resource",
     "required for mode: promotion"),
    (lambda s: s["strategy_config"].update(min_resource=9), "strategy_config.min_resource",
     "no rung to pause at"),
    (lambda s: s["hyperparameters"].update(epochs={"type": "integer", "min": 1, "max": 9}),
     "hyperparameters.epochs", "the budget promotion mode sets"),
    (lambda s: s["static_hyperparameters"].update(epochs=4), "static_hyperparameters.epochs",
     "set them equal"),
    (lambda s: s.update(early_stopping="auto"), "strategy_config.mode",
     "early_stopping: asha's"),
    (lambda s: s["strategy_config"].update(mode="pause"), "strategy_config.mode",
     "must be one of stop, promotion"),
])
def test_bad_promotion_settings_name_the_field_and_the_fix(write_space, digits_channels,
                                                           change, field, says):
    space = promotion_space("bad", digits_channels)
    change(space)
    with pytest.raises(SpecError) as caught:
        load_spec(write_space(space))
    assert field in str(caught.value) and says in str(caught.value)


def test_promotion_runs_on_the_local_controller_and_says_so_when_asked_for_tune(
        write_space, digits_channels, monkeypatch):
    spec = load_spec(write_space(promotion_space("ctl", digits_channels)))
    runtime = RUNTIMES[spec.runtime]
    monkeypatch.setenv("HPT_CONTROLLER", "tune")  # the suite's forced controller yields
    assert choose_controller(spec, runtime, None) == "local"
    assert choose_controller(spec, runtime, "auto", "local") == "local"
    for address, requested in ((None, "tune"), ("auto", None)):
        with pytest.raises(UserError, match="--controller local"):
            choose_controller(spec, runtime, address, requested)


def test_export_sagemaker_refuses_promotion_mode(write_space, digits_channels):
    path = write_space(promotion_space("export", digits_channels))
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "export-sagemaker", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "mode: promotion" in done.stderr
    assert "never pauses" in done.stderr and "Traceback" not in done.stderr


# -- real jobs -------------------------------------------------------------------------------

def _objective_steps(trial_dir: Path) -> list[int]:
    points = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
    return [p["step"] for p in points if p["metric"] == "validation:accuracy"]


def _check_job(exp: Path, name: str, trials: int, relaunched: bool = False) -> None:
    """`relaunched`: the launcher was killed; the jobs it ran run again (counted in Retries,
    with an attempt more) from the checkpoints they had."""
    df = hpt.load_experiment(name, exp)
    assert len(df) == trials and df["TrainingJobName"].is_unique  # one row per training job
    assert (df["Retries"] <= (1 if relaunched else 0)).all()
    completed = df[df["TrainingJobStatus"] == "Completed"]
    assert len(completed) >= 1 and (completed["ObjectiveSteps"] >= LEVELS[-1] - 1).all()
    assert (df.loc[df["TrainingJobStatus"] == "Stopped", "FailureReason"]
            == "Stopped by early stopping").all()  # not promoted: stopped at the job's end
    assert df["ObjectiveSteps"].sum() < trials * LEVELS[-1]  # the budget saved
    for _, row in df.iterrows():
        trial_dir = Path(row["LogPath"]).parent
        steps = _objective_steps(trial_dir)
        assert steps == list(range(1, row["ObjectiveSteps"] + 1))  # continued, never repeated
        if relaunched:
            continue
        # A paused trial trained its rung's epochs only; one attempt folder per rung it ran to.
        promotions = LEVELS.index(row["ObjectiveSteps"])
        assert len(list(trial_dir.glob("attempt-*"))) == promotions
        if promotions:
            assert row["ResumedFromStep"] == LEVELS[promotions - 1]
            log = (trial_dir / "algo-1.log").read_text()
            assert f"resumed from checkpoint-{row['ResumedFromStep']}.pt" in log
            assert re.search(r"^epoch=(\d+) ", log, re.M).group(1) == \
                str(row["ResumedFromStep"] + 1)  # the script itself continued
    evs = events(exp, name)
    promoted = [e for e in evs if e["event"] == "trial_started" and "promoted_from" in e]
    assert promoted and all(e["budget"]["epochs"] in LEVELS[1:] for e in promoted)


def test_a_promotion_job_pauses_promotes_and_resumes_trials_from_their_checkpoints(
        write_space, digits_channels, tmp_path):
    spec = load_spec(write_space(promotion_space("promo", digits_channels)))
    from hpt.launcher.launch import launch

    launch(spec, tmp_path / "exp", dashboard=False)
    _check_job(tmp_path / "exp", "promo", trials=6)


@pytest.mark.smoke
def test_kill_9_of_the_launcher_with_paused_trials_then_resume_loses_and_repeats_nothing(
        write_space, digits_channels, tmp_path):
    space = promotion_space("promokill", digits_channels, max_trials=7)
    space["static_hyperparameters"]["batch_size"] = 32  # slower epochs: the kill lands mid-job
    path = write_space(space)
    exp = tmp_path / "exp"
    command = [sys.executable, "-m", "hpt.cli.main", "launch", str(path), "--experiments-dir",
               str(exp), "--no-dashboard"]
    env = {**os.environ, "HPT_CONTROLLER": "local"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: sum(e["event"] == "trial_paused" for e in events(exp, "promokill"))
                 >= 3, timeout=240, what="three trials paused")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = hpt.load_experiment("promokill", exp)
    assert (before["FailureReason"].str.startswith("Paused", na=False)).sum() >= 1
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _check_job(exp, "promokill", trials=7, relaunched=True)
    # The trials paused before the kill were promoted or ended by the resumed launcher.
    paused_before = set(before.loc[before["FailureReason"].str.startswith("Paused", na=False),
                                   "TrainingJobName"])
    after = hpt.load_experiment("promokill", exp).set_index("TrainingJobName")
    assert not after.loc[list(paused_before), "FailureReason"].str.startswith(
        "Paused", na=False).any()
