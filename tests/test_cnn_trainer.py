"""The reference trainer (trainers/cnn/train.py) and its data (scripts/prepare_data.py), for real:
the data is built from scikit-learn's bundled digits and the script runs as a subprocess with
the SageMaker environment a trial would give it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import TRAIN_PY, prepare_data

VAL_ACC = re.compile(r"val_acc=([0-9.]+)")
LOSS = re.compile(r"loss=([0-9.eE+-]+)")
EPOCH_LINE = re.compile(r"^epoch=(\d+) loss=([0-9.eE+-]+) val_acc=([0-9.]+)$")


@pytest.fixture(scope="module")
def plain_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    assert prepare_data.prepare(out, "plain", seed=0) == out
    return out


def _sm_env(base: Path, data: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(SM_CHANNEL_TRAIN=str(data / "train"), SM_CHANNEL_TEST=str(data / "test"),
               SM_MODEL_DIR=str(base / "model"), SM_OUTPUT_DIR=str(base / "output"),
               SM_NUM_CPUS="1")
    env.update(extra)
    return env


def _run(args, env, cwd):
    return subprocess.run([sys.executable, str(TRAIN_PY), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_plain_prepare_writes_channels(plain_data):
    for channel, n in (("train", 1437), ("test", 360)):
        with np.load(plain_data / channel / "data.npz") as data:
            x, y = data["x"], data["y"]
        assert x.dtype == np.float32 and x.shape == (n, 1, 8, 8)
        assert y.dtype == np.int64 and y.shape == (n,)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))
    assert prepare_data.ensure_prepared(plain_data, "plain", 0) is False


def test_trainer_trains_and_saves_model(plain_data, tmp_path):
    # SageMaker's style of arguments: --key value, names as given, bools as True/False;
    # an unknown argument must not crash the script.
    args = ["--batch_size", "32", "--epochs", "2", "--lr", "0.01", "--optimizer", "adam",
            "--conv_channels", "16", "--batch_norm", "True", "--unknown_hp", "x"]
    done = _run(args, _sm_env(tmp_path, plain_data), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 2
    for epoch, line in enumerate(lines, start=1):
        match = EPOCH_LINE.match(line)
        assert match and int(match.group(1)) == epoch, line
        assert VAL_ACC.search(line) and LOSS.search(line)
    accuracies = [float(VAL_ACC.search(line).group(1)) for line in lines]
    assert accuracies[-1] > 0.5
    # The trade-offs a multi-objective job weighs: the saved weights' size, one-image latency.
    (model_line,) = [line for line in done.stdout.splitlines() if line.startswith("model ")]
    found = re.fullmatch(r"model params=(\d+) size_mb=([0-9.]+) latency_p99_ms=([0-9.]+)",
                         model_line)
    assert found, model_line

    model_dir = tmp_path / "model"
    assert (model_dir / "model.pth").stat().st_size > 0
    state = __import__("torch").load(model_dir / "model.pth")
    assert float(found.group(2)) == pytest.approx(
        sum(t.numel() * t.element_size() for t in state.values()) / 1e6, abs=1e-6)
    assert 0 < float(found.group(3)) < 1000
    assert (model_dir / "model_config.json").is_file()
    assert not (tmp_path / "output" / "failure").exists()


def test_trainer_missing_channel_writes_failure(plain_data, tmp_path):
    missing = tmp_path / "no-such-channel"
    env = _sm_env(tmp_path, plain_data, SM_CHANNEL_TRAIN=str(missing))
    done = _run(["--epochs", "1"], env, cwd=tmp_path)
    assert done.returncode == 1
    reason = (tmp_path / "output" / "failure").read_text()
    assert "FileNotFoundError" in reason and "train channel" in reason and str(missing) in reason
    assert "Traceback" in done.stderr
    assert not (tmp_path / "model" / "model.pth").exists()


def test_shifted_variant_is_28x28_and_deterministic(tmp_path):
    first = prepare_data.prepare(tmp_path / "a", "shifted", seed=0)
    assert prepare_data.ensure_prepared(tmp_path / "b", "shifted", seed=0) is True
    second = tmp_path / "b"
    sizes = {}
    for channel in ("train", "test"):
        with np.load(first / channel / "data.npz") as a, np.load(second / channel / "data.npz") as b:
            assert a["x"].dtype == np.float32 and a["x"].shape[1:] == (1, 28, 28)
            assert a["y"].dtype == np.int64 and len(a["y"]) == len(a["x"])
            assert 0.0 <= a["x"].min() and a["x"].max() <= 1.0
            np.testing.assert_array_equal(a["x"], b["x"])
            np.testing.assert_array_equal(a["y"], b["y"])
            sizes[channel] = len(a["y"])
    assert sizes["train"] >= 5000 and sizes["test"] >= 1000
