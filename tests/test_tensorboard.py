"""`hpt report NAME --format tensorboard`: the event files hpt writes (without TensorFlow) are
read back by tensorboard's own EventAccumulator, one run per training job, every data point
with its step and time."""

import subprocess
import sys
from pathlib import Path

import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.report.tensorboard import _masked_crc32c
from hpt.spacefile import load_spec

CURVES = Path(__file__).parent / "trainers" / "curves"


def test_the_checksum_is_tfrecords_masked_crc32c():
    # CRC-32C of b"123456789" is 0xE3069283 (RFC 3720's check value), then TFRecord's mask.
    crc = 0xE3069283
    assert _masked_crc32c(b"123456789") == \
        (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_tensorboard_reads_every_training_jobs_series(ray_session, write_space, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    space = {
        "name": "tb",
        "trainer": {"source_dir": str(CURVES), "entry_point": "train.py", "cpus_per_host": 1,
                    "max_runtime_seconds": 60},
        "static_hyperparameters": {"epochs": 4},
        "hyperparameters": {"profile": {"type": "categorical", "values": ["0.9:0", "0.4:0"]}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"},
                               {"name": "epoch", "regex": "epoch=([0-9]+)"}],
        "strategy": "grid",
        "limits": {"max_parallel": 1},
    }
    exp = tmp_path / "exp"
    launch(load_spec(write_space(space)), exp, dashboard=False)
    for _ in range(2):  # a second export replaces the first (no run counted twice)
        done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "report", "tb", "--format",
                               "tensorboard", "--experiments-dir", str(exp)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    logdir = exp / "tb" / "tensorboard"
    assert f"tensorboard --logdir {logdir}" in done.stdout
    points = hpt.load_metrics("tb", exp)
    jobs = sorted(points["TrainingJobName"].unique())
    assert sorted(p.name for p in logdir.iterdir()) == jobs and len(jobs) == 2
    for job in jobs:
        (events,) = (logdir / job).iterdir()
        runs = EventAccumulator(str(logdir / job))
        runs.Reload()
        assert sorted(runs.Tags()["scalars"]) == ["acc", "epoch"]
        for metric in ("acc", "epoch"):
            want = points[(points["TrainingJobName"] == job) & (points["metric"] == metric)]
            got = runs.Scalars(metric)
            assert [e.step for e in got] == want["step"].tolist() == [1, 2, 3, 4]
            assert [e.value for e in got] == pytest.approx(want["value"].tolist(), rel=1e-6)
            assert [e.wall_time for e in got] == pytest.approx(
                [t.timestamp() for t in want["timestamp"]], abs=1e-3)
