"""One best-so-far rule: the recorder, the live view, the Ray metrics (hpt_best_objective) and
the report name the same training job, constraints and the multi-objective tie-break
included, before and after a resume (each seeded from the journal's kept rows)."""

import io

from hpt.controller.recorder import TrialRecorder
from hpt.core.trial import TrainingJobRecord, TrialStatus
from hpt.experiment.best import BestSoFar
from hpt.experiment.resume import plan_resume
from hpt.experiment.store import ExperimentStore, read_journal
from hpt.experiment.table import trial_rows
from hpt.live.view import LaunchView
from hpt.report.summary import best_trial
from hpt.spacefile import load_spec

ACC, SIZE, LATENCY = "validation:accuracy", "model:size_mb", "latency:ms"


def space():
    return {
        "name": "best-rule",
        "trainer": {"source_dir": ".", "entry_point": "train.py"},
        "hyperparameters": {"width": {"type": "integer", "min": 1, "max": 10}},
        "objectives": [{"metric": ACC, "type": "maximize"}, {"metric": SIZE, "type": "minimize"}],
        "constraints": [{"metric": LATENCY, "max": 6}],
        "metric_definitions": [{"name": ACC, "regex": "acc=([0-9.]+)"},
                               {"name": SIZE, "regex": "size=([0-9.]+)"},
                               {"name": LATENCY, "regex": "latency=([0-9.]+)"}],
        "limits": {"max_trials": 8, "max_parallel": 1},
    }


class PublishedGauge:
    """Where TuningJobMetrics publishes once connected (a Ray Gauge's `set`)."""

    def __init__(self):
        self.value = None

    def set(self, value, tags):
        self.value = value


def run_trial(recorder: TrialRecorder, number: int, acc: float, size: float, latency: float):
    name = f"best-rule-{number:03d}-aaaaaaaa"
    recorder.trial_started({"training_job_name": name, "trial_number": number,
                            "hyperparameters": {"width": number}})
    recorder.trial_ended(TrainingJobRecord(
        trial_number=number, training_job_name=name, hyperparameters={"width": number},
        status=TrialStatus.COMPLETED, failure=None, objective_value=acc,
        final_metrics={ACC: acc, SIZE: size, LATENCY: latency}, objective_steps=1,
        start_time=100.0, end_time=101.0, exit_code=0, log_path="", model_artifact=None
    ).to_json())


def start_run(store, spec, kept=()):
    """What hpt launch builds for one run: the view, then the recorder (its Ray metrics)."""
    view = LaunchView(spec.name, 8, BestSoFar.of(spec.to_frozen_dict()), stream=io.StringIO(),
                      kept=kept)
    recorder = TrialRecorder(store, spec, view, kept=kept)
    recorder.metrics._jobs, recorder.metrics._best = PublishedGauge(), PublishedGauge()
    return recorder


def bests(store, recorder):
    """The best job's name as each reader has it, and the gauge's published value."""
    view, metrics = recorder.view, recorder.metrics
    metrics._publish()
    return ({"recorder": recorder.best.name, "view": view.best.name,
             "ray metric": metrics.best.name,
             "report": (best_trial(store.root) or {}).get("TrainingJobName")},
            metrics._best.value)


def test_the_recorder_view_ray_metrics_and_report_agree_with_constraints_and_a_resume(
        write_space, tmp_path):
    (tmp_path / "train.py").write_text("")
    spec = load_spec(write_space(space()))
    store = ExperimentStore(tmp_path / "best-rule")
    store.create(spec.to_frozen_dict())
    first = start_run(store, spec)
    run_trial(first, 1, acc=0.99, size=1.0, latency=9.0)  # the best accuracy, infeasible
    run_trial(first, 2, acc=0.90, size=5.0, latency=3.0)
    assert bests(store, first) == (dict.fromkeys(
        ["recorder", "view", "ray metric", "report"], "best-rule-002-aaaaaaaa"), 0.90)

    # A resume: every reader starts from the rows the journal kept, not from nothing.
    plan = plan_resume(trial_rows(list(read_journal(store.journal_path))))
    resumed = start_run(store, spec, kept=plan.kept)
    assert bests(store, resumed) == (dict.fromkeys(
        ["recorder", "view", "ray metric", "report"], "best-rule-002-aaaaaaaa"), 0.90)
    assert resumed.metrics.counts[TrialStatus.COMPLETED] == 2

    run_trial(resumed, 3, acc=0.90, size=1.0, latency=3.0)  # ties 2, smaller: the new best
    run_trial(resumed, 4, acc=0.995, size=0.5, latency=7.0)  # better still, infeasible
    run_trial(resumed, 5, acc=0.90, size=1.0, latency=2.0)  # ties 3 on both: 3 came first
    assert bests(store, resumed) == (dict.fromkeys(
        ["recorder", "view", "ray metric", "report"], "best-rule-003-aaaaaaaa"), 0.90)
    assert "best 0.9 (best-rule-003-aaaaaaaa)" in " ".join(str(part) for part in
                                                          resumed.view._status().renderables)
