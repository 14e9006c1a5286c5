"""The CNN trainer in its three distributed modes, as real processes on 127.0.0.1, with the
environment hpt's plan gives them: the same loss curve as one process, in every mode."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from hpt.runtime.host import free_ports
from hpt.runtime.distribution_plan import HostAddress, plan_trial
from hpt.core.sagemaker_names import distribution_hyperparameters
from helpers import TRAIN_PY, prepare_data

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke

EPOCH = re.compile(r"^epoch=(\d+) loss=([0-9.eE+-]+) val_acc=([0-9.]+)$", re.M)
# Dropout draws and BatchNorm statistics are per worker: off, the curves must match exactly.
EXACT = ["--epochs", "3", "--batch_size", "64", "--dropout", "0", "--batch_norm", "false",
         "--lr", "0.05", "--optimizer", "adam", "--conv_channels", "8", "--dist_timeout", "20"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    prepare_data.prepare(out, "plain", seed=0)
    return out


def run_job(mode, tmp_path, data, args, hosts=1, per_host=1, kill_rank=None):
    """Starts every process of one trial as hpt would; returns [(plan, completed process)]."""
    addresses = [HostAddress(f"algo-{h + 1}", "127.0.0.1", free_ports(per_host + 1))
                 for h in range(hosts)]
    argv = (sys.executable, str(TRAIN_PY), *args)
    plans = plan_trial(mode, addresses, argv, processes_per_host=per_host,
                       master_port=free_ports(1)[0])
    framework = json.dumps(distribution_hyperparameters(mode, per_host))
    procs = []
    for plan in plans:
        for p in plan.processes:
            base = tmp_path / mode / p.log_name
            env = {**os.environ, **p.env, "SM_CHANNEL_TRAIN": str(data / "train"),
                   "SM_CHANNEL_TEST": str(data / "test"), "SM_MODEL_DIR": str(base / "model"),
                   "SM_OUTPUT_DIR": str(base / "output"), "SM_NUM_CPUS": "1",
                   "SM_FRAMEWORK_PARAMS": framework}
            procs.append((p, subprocess.Popen(list(p.argv), env=env, cwd=TRAIN_PY.parent,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True)))
    if kill_rank is not None:
        time.sleep(4)
        next(pr for p, pr in procs if p.rank == kill_rank).send_signal(signal.SIGKILL)
    done = []
    for p, proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append((p, proc.returncode, out, err, tmp_path / mode / p.log_name))
    return done


def curve(out):
    return [(int(e), float(l), float(a)) for e, l, a in EPOCH.findall(out)]


def single_curve(tmp_path, data):
    ((_, code, out, err, _),) = run_job("none", tmp_path, data, EXACT)
    assert code == 0, err
    return curve(out)


def test_data_parallel_two_workers_follow_the_single_process_curve(tmp_path, data):
    single = single_curve(tmp_path, data)
    done = run_job("data_parallel", tmp_path, data, EXACT, per_host=2)
    assert [code for _, code, *_ in done] == [0, 0], [err for *_, err, _ in done]
    chief = curve(done[0][2])
    assert len(chief) == 3 and curve(done[1][2]) == []  # only the chief reports
    for (e1, l1, a1), (e2, l2, a2) in zip(single, chief):
        assert e1 == e2 and l1 == pytest.approx(l2, rel=1e-4) and a1 == pytest.approx(a2, abs=0.003)
    assert (done[0][4] / "model" / "model.pth").is_file()
    assert not (done[1][4] / "model").exists()


def test_parameter_servers_synchronous_follow_the_single_process_curve(tmp_path, data):
    single = single_curve(tmp_path, data)
    done = run_job("parameter_server", tmp_path, data, EXACT, hosts=2)
    assert sorted(p.role for p, *_ in done) == ["ps", "ps", "worker", "worker"]
    assert all(code == 0 for _, code, *_ in done), [err[-2000:] for *_, err, _ in done]
    chief = curve(next(out for p, _, out, *_ in done if p.rank == 0))
    for (e1, l1, a1), (e2, l2, a2) in zip(single, chief):
        assert e1 == e2 and l1 == pytest.approx(l2, rel=1e-4) and a1 == pytest.approx(a2, abs=0.003)


def test_parameter_servers_asynchronous_and_torchrun_train_well(tmp_path, data):
    args = ["--epochs", "4", "--batch_size", "64", "--lr", "0.01", "--optimizer", "adam",
            "--conv_channels", "8", "--dist_timeout", "20"]
    done = run_job("parameter_server", tmp_path, data, [*args, "--ps_async", "true"], hosts=2)
    assert all(code == 0 for _, code, *_ in done), [err[-2000:] for *_, err, _ in done]
    assert curve(next(out for p, _, out, *_ in done if p.rank == 0))[-1][2] >= 0.9
    ((_, code, out, err, _), second) = run_job("torchrun", tmp_path, data, args, hosts=2)
    assert code == 0 and second[1] == 0, err
    epochs = curve(out + second[2])
    assert [e for e, *_ in epochs] == [1, 2, 3, 4] and epochs[-1][2] >= 0.9


def test_a_killed_worker_makes_its_peer_fail_with_a_reason_not_hang(tmp_path, data):
    args = ["--epochs", "200", "--batch_size", "16", "--conv_channels", "8",
            "--dist_timeout", "5"]
    started = time.time()
    done = run_job("data_parallel", tmp_path, data, args, per_host=2, kill_rank=1)
    survivor = next(d for d in done if d[0].rank == 0)
    assert survivor[1] == 1, survivor[3][-2000:]
    assert (survivor[4] / "output" / "failure").read_text().strip()
    assert time.time() - started < 60
