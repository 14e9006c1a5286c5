"""Metrics a script pushes to `/opt/ml/output/metrics/metrics.jsonl` instead of printing them:
the file's format by hand, then a real tuning job of a script that writes only that file,
with SageMaker's median early stopping."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.runtime.pushed_metrics import PushedMetricsTail, PushedValue, parse_pushed
from hpt.spacefile import SpecError, load_spec

REPO = Path(__file__).resolve().parent.parent
PUSHED = Path(__file__).parent / "trainers" / "pushed"


def test_a_pushed_line_is_a_value_or_says_why_not():
    assert parse_pushed('{"metric": "acc", "value": 0.5, "step": 3}', 7.0) == \
        PushedValue("acc", 0.5, 7.0)
    assert parse_pushed('{"metric": "acc", "value": 1, "timestamp": 5}', 7.0) == \
        PushedValue("acc", 1.0, 5.0)
    assert parse_pushed("acc=0.5", 0) == "not JSON"
    assert parse_pushed('{"value": 0.5}', 0) == 'no "metric" name'
    assert parse_pushed('{"metric": "acc", "value": NaN}', 0) == \
        "\"value\" of 'acc' is not a finite number"
    assert parse_pushed('{"metric": "acc", "value": true}', 0).startswith('"value"')


def test_the_tail_takes_whole_lines_once_and_counts_what_it_refused(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = PushedMetricsTail(path, frozenset({"acc"}))
    assert tail.read(1.0) == [] and "was never written" in tail.describe()
    with open(path, "a") as f:
        f.write('{"metric": "acc", "value": 0.1}\n{"metric": "acc", "val')  # half a line
    assert [v.value for v in tail.read(1.0)] == [0.1]
    with open(path, "a") as f:
        f.write('ue": 0.2}\n{"metric": "loss", "value": 3}\nnot json\n')
    assert [v.value for v in tail.read(2.0)] == [0.2]
    assert tail.read(3.0) == []
    assert tail.lines_read == 4 and tail.refused == 2
    assert tail.describe() == ("/opt/ml/output/metrics/metrics.jsonl had 4 line(s), 2 not taken "
                               "(first, line 3: 'loss' is not in metric_definitions)")


def pushed_space(name, source_dir, profiles, **extra):
    space = {
        "name": name,
        "trainer": {"source_dir": str(source_dir), "entry_point": "train.py",
                    "cpus_per_host": 1, "max_runtime_seconds": 60},
        "static_hyperparameters": {"epochs": 3},
        "hyperparameters": {"profile": {"type": "categorical", "values": profiles}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc"}],  # no regex: the metrics file only
        "strategy": "grid",
        "limits": {"max_parallel": 1},
    }
    space.update(extra)
    return space


@pytest.fixture
def pushed_source(tmp_path):
    """The test trainer with the helper beside it, as a user would copy it."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(PUSHED / "train.py", source / "train.py")
    shutil.copy(REPO / "trainers" / "cnn" / "metrics_file.py", source / "metrics_file.py")
    return source


def test_a_metric_without_regex_cannot_go_to_sagemaker(write_space, pushed_source):
    space = pushed_space("nosm", pushed_source, ["0.5:0"])
    with pytest.raises(SpecError) as caught:
        load_spec(write_space({**space, "runtime": "sagemaker"}))
    assert "metric_definitions[0].regex" in str(caught.value)
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "export-sagemaker",
                           str(write_space(space))], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "read from the metrics file only" in done.stderr


def test_a_script_that_only_writes_the_metrics_file_is_tuned_with_early_stopping(
        ray_session, write_space, tmp_path, pushed_source):
    # As test_schedule's median test, the curves pushed instead of printed: jobs 1-3 run to
    # the end, 4-6 are below the median at step 1 and stop there, the last one writes only a
    # malformed line and fails saying so. Some jobs push as they train (0.3 s an epoch), the
    # others all at once: both count a step per value.
    profiles = ["0.9:0.3", "0.8:0", "0.7:0.3", "0.3:0", "0.2:0.3", "0.1:0", "none:0"]
    spec = load_spec(write_space(pushed_space("pushed", pushed_source, profiles,
                                              early_stopping="auto")))
    launch(spec, tmp_path / "exp", dashboard=False)
    rows = {r["profile"]: r for _, r in hpt.load_experiment("pushed", tmp_path / "exp").iterrows()}
    for p in profiles[:3]:
        assert rows[p]["TrainingJobStatus"] == "Completed" and rows[p]["ObjectiveSteps"] == 3
        assert rows[p]["FinalObjectiveValue"] == pytest.approx(float(p.split(":")[0]))
    for p in profiles[3:6]:
        assert rows[p]["TrainingJobStatus"] == "Stopped", rows[p]["FailureReason"]
        assert rows[p]["ObjectiveSteps"] == 1
        assert rows[p]["FinalObjectiveValue"] == pytest.approx(float(p.split(":")[0]) / 3)
    failed = rows["none:0"]
    assert failed["TrainingJobStatus"] == "Failed"
    assert "has no regex and was never written to the metrics file" in failed["FailureReason"]
    assert "1 not taken (first, line 1: not JSON)" in failed["FailureReason"]
    # hpt's own data points (what a resume continues from) have the pushed values, numbered.
    best = Path(rows["0.9:0.3"]["LogPath"]).parent / "metrics.jsonl"
    points = [json.loads(line) for line in best.read_text().splitlines()]
    assert [(p["metric"], p["step"]) for p in points] == [("acc", 1), ("acc", 2), ("acc", 3)]
