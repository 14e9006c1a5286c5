"""GPU packing is exact: ⌊1/f⌋ hosts per device for a fraction f, each pinned to one device;
whole GPUs are never shared. The rules (controller/slots.py), then real launches on fake
GPUs (Ray hands out ids of devices that do not exist) on both controllers."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from hpt.controller.slots import Machine, SlotPool, choose_devices
from hpt.core.gpu_share import hosts_per_gpu, ray_gpu_request

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("fraction, per_gpu", [(0.15, 6), (0.5, 2), (0.34, 2), (1 / 3, 3),
                                               (0.25, 4), (0.9, 1), (1, 1), (2, 1)])
def test_hosts_per_gpu_is_the_floor_of_one_over_the_fraction(fraction, per_gpu):
    assert hosts_per_gpu(fraction) == per_gpu


@pytest.mark.parametrize("fraction", [0.15, 0.3, 1 / 3, 0.26, 0.07])
def test_the_ray_request_fits_exactly_floor_one_over_f_per_device(fraction):
    request = ray_gpu_request(fraction)
    k = hosts_per_gpu(fraction)
    units = round(request * 10_000)  # Ray's fixed-point resource units
    assert k * units <= 10_000 < (k + 1) * units


def test_8_gpus_at_0_15_hold_48_hosts_none_straddling_and_6_per_device():
    pool = SlotPool(Machine(cpus=100, gpu_ids=tuple(str(i) for i in range(8))))
    grants = []
    while (grant := pool.acquire(1, 0.15)) is not None:
        grants.append(grant)
    assert len(grants) == 48  # not 8 / 0.15 = 53
    assert all(len(g.gpu_ids) == 1 for g in grants)
    per_device = {d: sum(g.gpu_ids == (d,) for g in grants) for d in "01234567"}
    assert set(per_device.values()) == {6}
    pool.release(grants[0])
    again = pool.acquire(1, 0.15)
    assert again.gpu_ids == grants[0].gpu_ids  # the freed share, on the same device


def test_whole_gpus_are_never_shared_and_hosts_spread():
    pool = SlotPool(Machine(cpus=8, gpu_ids=("0", "1", "2", "3")))
    ones = [pool.acquire(1, 1) for _ in range(4)]
    assert sorted(g.gpu_ids for g in ones) == [("0",), ("1",), ("2",), ("3",)]
    assert pool.acquire(1, 1) is None and pool.acquire(1, 0.5) is None
    for g in ones:
        pool.release(g)
    pairs = [pool.acquire(1, 2), pool.acquire(1, 2)]
    assert {d for g in pairs for d in g.gpu_ids} == {"0", "1", "2", "3"}
    assert pool.acquire(1, 1) is None
    # A fraction goes to the least-loaded device: two halves on two devices, not one.
    spread = SlotPool(Machine(cpus=8, gpu_ids=("0", "1")))
    assert [spread.acquire(1, 0.5).gpu_ids for _ in range(2)] == [("0",), ("1",)]
    assert choose_devices({"0": Fraction(1, 2), "1": Fraction(0)}, 0.5) == ("1",)


def test_cpus_bound_the_hosts_and_a_host_too_big_for_the_machine_is_said():
    pool = SlotPool(Machine(cpus=2, gpu_ids=()))
    assert [pool.acquire(1, 0) is not None for _ in range(3)] == [True, True, False]
    assert pool.fits_at_all(2, 0) and not pool.fits_at_all(3, 0)
    assert not pool.fits_at_all(1, 1)  # a GPU host on a machine without GPUs


# A launch on fake GPUs in a Ray of its own (the session's Ray has 4): every trial records
# its CUDA_VISIBLE_DEVICES and the times it ran; the test replays who overlapped where.
PROBE = """#!/bin/sh
echo "{\\"gpus\\": \\"$CUDA_VISIBLE_DEVICES\\", \\"start\\": $(date +%s.%N)}" > "$SM_MODEL_DIR/probe.json"
sleep {seconds}
echo "end=$(date +%s.%N)" >> "$SM_MODEL_DIR/probe.json"
echo "val_acc=1.0"
"""
RUNNER = """
import json, sys
import ray
sys.path.insert(0, {repo!r})
ray.init(num_cpus={cpus}, num_gpus={gpus}, include_dashboard=False, log_to_driver=False,
         logging_level="ERROR")
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec
result = launch(load_spec({space!r}), {exp!r}, dashboard=False, stream=open("/dev/null", "w"))
print(json.dumps({{"controller": result.controller, "counts": result.counts}}))
"""


def _launch_on_fake_gpus(tmp_path, write_space, gpus, fraction, trials, seconds, controller):
    code = tmp_path / "code"
    code.mkdir()
    (code / "probe.sh").write_text(PROBE.replace("{seconds}", str(seconds)))
    space = write_space({
        "name": "gpus", "trainer": {"source_dir": str(code), "entry_point": "probe.sh",
                                    "cpus_per_host": 0.5, "gpus_per_host": fraction},
        "hyperparameters": {"x": {"type": "continuous", "min": 0, "max": 1}},
        "objective": {"metric": "acc", "type": "maximize"},
        "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "random", "limits": {"max_trials": trials, "max_parallel": trials}})
    exp = tmp_path / "exp"
    done = subprocess.run(
        [sys.executable, "-c", RUNNER.format(repo=str(REPO), cpus=trials, gpus=gpus,
                                             space=str(space), exp=str(exp))],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "HPT_CONTROLLER": controller})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["controller"] == controller and result["counts"] == {"Completed": trials}
    import hpt

    df = hpt.load_experiment("gpus", exp)
    probes = []
    for model in exp.glob("gpus/*/algo-1/model"):
        lines = (model / "probe.json").read_text().splitlines()
        probe = json.loads(lines[0])
        probe["end"] = float(lines[1].split("=")[1])
        probes.append(probe)
    return df, probes


def _most_at_once(probes, key=lambda p: True):
    moments = sorted([(p["start"], 1) for p in probes if key(p)] +
                     [(p["end"], -1) for p in probes if key(p)])
    most = now = 0
    for _, step in moments:
        now += step
        most = max(most, now)
    return most


def test_local_controller_packs_48_hosts_on_8_fake_gpus_at_0_15(tmp_path, write_space):
    df, probes = _launch_on_fake_gpus(tmp_path, write_space, gpus=8, fraction=0.15,
                                      trials=54, seconds=4, controller="local")
    assert all(p["gpus"] in list("01234567") for p in probes)  # one device each
    assert _most_at_once(probes) == 48
    for device in "01234567":
        assert _most_at_once(probes, lambda p: p["gpus"] == device) == 6
    assert sorted(df["GpuIds"].unique()) == list("01234567")  # the table says where


@pytest.mark.smoke  # Ray Tune's controller on fake GPUs: ~29 s
def test_tune_controller_packs_whole_and_fractional_gpus_the_same_way(tmp_path, write_space):
    _, probes = _launch_on_fake_gpus(tmp_path, write_space, gpus=2, fraction=0.3,
                                     trials=7, seconds=6, controller="tune")
    assert all(p["gpus"] in ("0", "1") for p in probes)
    assert _most_at_once(probes) == 6  # 3 per device, not 2 / 0.3 = 6.67 -> 6 by luck only
    for device in "01":
        assert _most_at_once(probes, lambda p: p["gpus"] == device) == 3


def test_whole_gpus_are_disjoint_on_the_local_controller(tmp_path, write_space):
    df, probes = _launch_on_fake_gpus(tmp_path, write_space, gpus=4, fraction=1,
                                      trials=6, seconds=2, controller="local")
    assert _most_at_once(probes) == 4
    for device in "0123":
        assert _most_at_once(probes, lambda p: p["gpus"] == device) == 1
    status = subprocess.run([sys.executable, "-m", "hpt", "status", "gpus", "--experiments-dir",
                             str(tmp_path / "exp")], capture_output=True, text=True)
    assert "GPU 0:" in status.stdout and "GPU 3:" in status.stdout, status.stdout
