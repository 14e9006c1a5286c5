"""The pure parts of `hpt serve`: plans, weighted choice, canary steps, guardrails, metrics."""

import math
import random

import pytest

from hpt.core.errors import UserError
from hpt.serving.canary import Canary
from hpt.serving.plan import (CanaryPlan, Job, Thresholds, Window, canary_weights, choose,
                              judge, make_plan, parse_assignment, parse_steps)
from hpt.serving.stats import VariantStats, quantile, render_metrics

JOBS = [Job("t-001-aa", 1, "Completed", "/e/t-001-aa/model.tar.gz"),
        Job("t-002-bb", 2, "Completed", "/e/t-002-bb/model.tar.gz"),
        Job("t-003-cc", 3, "Failed", None),
        Job("t-007-dd", 7, "Completed", "/e/t-007-dd/model.tar.gz")]


def test_best_is_the_default_and_resolves_to_its_name():
    plan = make_plan(JOBS, "t-002-bb")
    assert plan.variants == {"t-002-bb": 1.0}
    assert plan.artifacts == {"t-002-bb": "/e/t-002-bb/model.tar.gz"}


def test_variants_by_best_name_and_trial_number():
    plan = make_plan(JOBS, "t-002-bb", variants=["best=0.9", "7=0.1"], shadow="1")
    assert plan.variants == {"t-002-bb": 0.9, "t-007-dd": 0.1}
    assert plan.shadow == "t-001-aa" and plan.models == ["t-002-bb", "t-007-dd", "t-001-aa"]
    assert make_plan(JOBS, None, trial="t-007-dd").variants == {"t-007-dd": 1.0}


@pytest.mark.parametrize("flags, words", [
    ({"variants": ["best=-1"]}, ["--variant best", ">= 0"]),
    ({"variants": ["best=nan"]}, ["--variant best", "finite"]),
    ({"variants": ["best=inf"]}, ["--variant best", "finite"]),
    ({"variants": ["best=abc"]}, ["--variant best"]),
    ({"variants": ["best"]}, ["SPEC=WEIGHT"]),
    ({"variants": ["best=0", "1=0"]}, ["sum to 0", "weight > 0"]),
    ({"variants": ["best=1", "2=1"]}, ["given twice"]),
    ({"variants": ["99=1"]}, ["--variant 99", "TrialNumber"]),
    ({"variants": ["3=1"]}, ["Failed", "Completed"]),
    ({"trial": "1", "variants": ["best=1"]}, ["--trial", "--variant"]),
    ({"shadow": "best"}, ["--shadow", "different"]),
    ({"canary": "1"}, ["--canary", "--max-error-rate", "--max-p99-ms"]),
    ({"canary": "best", "max_error_rate": 0.1}, ["--canary", "different"]),
    ({"canary": "1", "shadow": "1", "max_error_rate": 0.1}, ["--canary", "--shadow", "different"]),
    ({"canary": "1", "max_error_rate": 2.0}, ["--max-error-rate"]),
    ({"canary": "1", "max_error_rate": 0.1, "canary_steps": "50,10"}, ["--canary-steps"]),
    ({"canary": "1", "max_error_rate": 0.1, "canary_steps": "0,100"}, ["--canary-steps"]),
    ({"max_p99_ms": 100.0}, ["--canary"]),
])
def test_bad_flags_name_the_flag_and_the_fix(flags, words):
    with pytest.raises(UserError) as err:
        make_plan(JOBS, "t-002-bb", **flags)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_best_without_a_completed_job():
    with pytest.raises(UserError, match="best"):
        make_plan(JOBS, None)


def test_parse_assignment_and_steps():
    assert parse_assignment("t-002-bb=0.25", "--variant") == ("t-002-bb", 0.25)
    assert parse_steps("10, 50,100") == (10, 50, 100)


def test_choose_follows_the_random_source():
    weights = {"a": 1.0, "b": 0.0, "c": 3.0}
    assert choose(weights, lambda: 0.0) == "a"
    assert choose(weights, lambda: 0.249) == "a"
    assert choose(weights, lambda: 0.25) == "c"
    assert choose(weights, lambda: 0.9999999) == "c"
    rng = random.Random(0)
    picks = [choose({"a": 0.9, "b": 0.1}, rng.random) for _ in range(10_000)]
    assert abs(picks.count("b") - 1000) < 5 * math.sqrt(10_000 * 0.1 * 0.9)


def test_canary_weights_scale_blue():
    assert canary_weights({"a": 3.0, "b": 1.0}, "g", 10) == pytest.approx({"a": 0.675, "b": 0.225, "g": 0.1})


def test_guardrail_waits_for_enough_requests_then_judges():
    th = Thresholds(max_error_rate=0.05, max_p99_ms=500, min_requests=20)
    assert not judge(Window(19, 19, 9000), th).judged
    v = judge(Window(57, 24, 10), th)
    assert v.alarm and v.reason == "error rate 0.42 > 0.05 over 57 requests"
    v = judge(Window(100, 1, 800), th)
    assert v.alarm and "p99 800 ms > 500 ms" in v.reason
    assert not judge(Window(100, 5, 400), th).alarm  # 0.05 is not > 0.05
    assert not judge(Window(100, 50, 400), Thresholds(None, 500, 20)).alarm


def test_canary_rolls_back_at_once_and_is_promoted_after_every_step():
    plan = CanaryPlan("g", (10, 50, 100), 5.0, Thresholds(0.05, None, 10))
    bad = Canary(plan, {"blue": 1.0}, step_started=0.0)
    assert bad.weights() == pytest.approx({"blue": 0.9, "g": 0.1})
    assert bad.tick(1.0, Window(5, 5, 1)) is None  # too few to judge
    line = bad.tick(2.0, Window(57, 24, 1))
    assert line == "canary rolled back at step 10%: error rate 0.42 > 0.05 over 57 requests"
    assert bad.state == "RolledBack" and bad.weights() == {"blue": 1.0, "g": 0.0}
    assert bad.tick(3.0, Window(100, 0, 1)) is None  # final

    good = Canary(plan, {"blue": 1.0}, step_started=0.0)
    assert good.tick(4.0, Window(30, 0, 1)) is None  # bake time not over
    assert "now gets 50%" in good.tick(5.0, Window(30, 0, 1))
    assert good.step_started == 5.0 and good.weights()["g"] == 0.5
    assert good.tick(10.0, Window(3, 0, 1)) is None  # time over, traffic not: keep baking
    assert "now gets 100%" in good.tick(11.0, Window(30, 0, 1))
    assert "promoted" in good.tick(16.0, Window(30, 1, 1))
    assert good.state == "Promoted" and good.weights() == {"blue": 0.0, "g": 1.0}
    assert good.as_dict()["step_percent"] == 100


def test_quantiles_and_windows():
    assert quantile([], 0.5) is None
    values = [i / 100 for i in range(1, 101)]
    assert quantile(values, 0.5) == 0.5 and quantile(values, 0.99) == 0.99
    stats = VariantStats()
    for t in range(10):
        stats.record(float(t), 0.01 * (t + 1), 500 if t % 2 else 200)
    w = stats.window(5.0)
    assert (w.requests, w.errors) == (5, 3) and w.p99_ms == pytest.approx(100)


def test_metrics_are_valid_text_format_with_escaped_labels():
    parser = pytest.importorskip("prometheus_client.parser")
    stats = {'we"ird\\name\n': VariantStats(), "plain": VariantStats()}
    stats["plain"].record(0.0, 0.02, 200)
    stats["plain"].record(0.0, 0.04, 502)
    shadow = VariantStats()
    shadow.record(0.0, 0.5, 200)
    text = render_metrics(stats, {"plain": 1.0, 'we"ird\\name\n': 0.0}, {"ok": 1, "dropped": 2},
                          0.5, shadow,
                          {"green": "g", "state": "Baking", "step_percent": 10}, 0)
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["hpt_serving_requests"].type == "counter"
    samples = {(s.labels.get("variant"), s.labels.get("code")): s.value
               for s in families["hpt_serving_requests"].samples}
    assert samples == {("plain", "200"): 1, ("plain", "502"): 1}
    weights = {s.labels["variant"]: s.value for s in families["hpt_serving_variant_weight"].samples}
    assert weights == {"plain": 1.0, 'we"ird\\name\n': 0.0}  # escaped and read back whole
    assert families["hpt_serving_shadow_agreement_ratio"].samples[0].value == 0.5
    states = {s.labels["state"]: s.value for s in families["hpt_serving_canary_state"].samples}
    assert states == {"Baking": 1.0, "RolledBack": 0.0, "Promoted": 0.0}
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            assert line.split()[3] in ("counter", "gauge", "summary")
