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


def _epochs(stdout: str) -> list[tuple[int, str, str]]:
    return [m.groups() for m in map(EPOCH_LINE.match, stdout.splitlines()) if m]


def test_a_run_killed_and_resumed_from_its_checkpoint_trains_the_epochs_it_would_have(
        plain_data, tmp_path):
    """SageMaker's /opt/ml/checkpoints: a run that finds a checkpoint there resumes from the
    newest one, and (model, optimizer, data order and random state restored) the epochs it
    trains are those the uninterrupted run trained, to the last printed digit."""
    import signal

    args = ["--epochs", "5", "--batch_size", "64", "--dropout", "0.3"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    done = _run(args, _sm_env(whole, plain_data, SAGEMAKER_BASE_DIR=str(whole)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (whole / "checkpoints").iterdir()) == \
        ["checkpoint-4.pt", "checkpoint-5.pt"]  # the newest two are kept
    env = _sm_env(parts, plain_data, SAGEMAKER_BASE_DIR=str(parts))
    killed = subprocess.Popen([sys.executable, str(TRAIN_PY), *args], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in killed.stdout:
        if line.startswith("epoch=2 "):
            killed.send_signal(signal.SIGKILL)
            break
    assert killed.wait(timeout=60) == -signal.SIGKILL
    rest = _run(args, env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    resumed_from = int(re.search(r"resumed from checkpoint-(\d+)\.pt", rest.stdout).group(1))
    assert resumed_from >= 2  # a kill during epoch 3 may land after its checkpoint
    assert _epochs(rest.stdout) == _epochs(done.stdout)[resumed_from:]


def test_resuming_keeps_the_epochs_and_takes_the_hyperparameters_given_now(plain_data, tmp_path):
    base = tmp_path / "job"
    env = _sm_env(base, plain_data, SAGEMAKER_BASE_DIR=str(base))
    whole = _run(["--epochs", "4", "--lr_schedule", "constant"], env, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    (base / "checkpoints" / "checkpoint-4.pt").unlink()  # as if killed during epoch 4
    again = _run(["--epochs", "4", "--lr_schedule", "constant"], env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _epochs(again.stdout) == _epochs(whole.stdout)[3:]  # the same epoch 4, exactly
    raised = _run(["--epochs", "6", "--lr_schedule", "constant"], env, cwd=tmp_path)
    assert raised.returncode == 0, raised.stderr  # a promotion: the budget raised
    assert "resumed from checkpoint-4.pt" in raised.stdout
    assert [e for e, _, _ in _epochs(raised.stdout)] == ["5", "6"]
    (base / "checkpoints" / "checkpoint-6.pt").unlink()
    exploited = _run(["--epochs", "6", "--lr_schedule", "constant", "--lr", "0.5"], env,
                     cwd=tmp_path)  # a tuner changed the learning rate: it takes effect
    assert exploited.returncode == 0, exploited.stderr
    (epoch, loss, _), = _epochs(exploited.stdout)
    assert epoch == "6" and loss != _epochs(raised.stdout)[1][1]


def test_no_checkpoint_outside_sagemakers_folders_and_none_when_asked(plain_data, tmp_path):
    done = _run(["--epochs", "1"], _sm_env(tmp_path, plain_data), cwd=tmp_path)
    assert done.returncode == 0 and "resumed" not in done.stdout
    base = tmp_path / "none"
    done = _run(["--epochs", "1", "--checkpoint_every", "0"],
                _sm_env(base, plain_data, SAGEMAKER_BASE_DIR=str(base)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (base / "checkpoints").exists()
