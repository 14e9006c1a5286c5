"""Multi-host trials through real Ray placement groups, real processes, real gloo and rpc."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import hpt
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec
from helpers import DIST, live_processes_of



def dist_space(name, distribution, hyperparameters, **trainer):
    return {
        "name": name,
        "trainer": {"source_dir": str(DIST), "entry_point": "train.py", "instance_count": 2,
                    "cpus_per_host": 1, "distribution": distribution,
                    "max_runtime_seconds": 60, **trainer},
        "hyperparameters": hyperparameters,
        "objective": {"metric": "ok", "type": "maximize"},
        "metric_definitions": [{"name": "ok", "regex": "val_acc=([0-9.]+)"}],
        "strategy": "grid",
        "limits": {"max_parallel": 1},
    }


def seen_files(row) -> list[dict]:
    trial = Path(row["LogPath"]).parent
    return [json.loads(p.read_text()) for p in sorted(trial.glob("algo-*/model/seen-*.json"))]


def test_two_host_data_parallel_trial_all_reduces_over_gloo(ray_session, write_space, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(5):
        (shards / f"part-{i}.npz").write_bytes(b"x")
    space = dist_space(
        "ddp", "data_parallel", {"action": {"type": "categorical", "values": ["allreduce"]}},
        processes_per_host=2, cpus_per_host=2)
    space["channels"] = {"train": {"uri": str(shards), "distribution": "ShardedByS3Key"},
                         "test": str(shards)}
    spec = load_spec(write_space(space))
    launch(spec, tmp_path / "exp", dashboard=False)
    (row,) = [r for _, r in hpt.load_experiment("ddp", tmp_path / "exp").iterrows()]
    assert row["TrainingJobStatus"] == "Completed", row["FailureReason"]
    assert row["FinalObjectiveValue"] == 1.0
    assert row["Hosts"] == "algo-1,algo-2"
    seen = seen_files(row)
    assert sorted(int(s["RANK"]) for s in seen) == [0, 1, 2, 3]
    assert all(s["allreduce"] == 10.0 and s["WORLD_SIZE"] == "4" for s in seen)
    assert {s["SM_CURRENT_HOST"] for s in seen} == {"algo-1", "algo-2"}
    assert all(json.loads(s["SM_FRAMEWORK_PARAMS"])["sagemaker_mpi_enabled"] for s in seen)
    assert len({s["MASTER_PORT"] for s in seen}) == 1 and seen[0]["MASTER_PORT"] != "7777"
    assert all(s["OMP_NUM_THREADS"] == "1" for s in seen)  # 2 CPUs shared by 2 processes
    # ShardedByS3Key: each host a disjoint share of the files; FullyReplicated: all of them.
    shares = {s["SM_CURRENT_HOST"]: s["channel_files"] for s in seen}
    assert shares == {"algo-1": ["part-0.npz", "part-2.npz", "part-4.npz"],
                      "algo-2": ["part-1.npz", "part-3.npz"]}
    test_channel = Path(row["LogPath"]).parent / "algo-2" / "input" / "data" / "test"
    assert len(list(test_channel.iterdir())) == 5
    trial = Path(row["LogPath"]).parent
    assert {p.name for p in trial.glob("*.log")} == {
        "algo-1.log", "algo-1.rank1.log", "algo-2.log", "algo-2.rank3.log"}


def test_parameter_server_trial_finds_roles_in_tf_config(ray_session, write_space, tmp_path):
    spec = load_spec(write_space(dist_space(
        "ps", "parameter_server", {"action": {"type": "categorical", "values": ["ps"]}})))
    launch(spec, tmp_path / "exp", dashboard=False)
    (row,) = [r for _, r in hpt.load_experiment("ps", tmp_path / "exp").iterrows()]
    assert row["TrainingJobStatus"] == "Completed", row["FailureReason"]
    seen = seen_files(row)
    assert sorted(s["role"] for s in seen) == ["master", "ps", "ps", "worker"]
    chief = next(s for s in seen if s["role"] == "master")
    assert chief["ps_totals"] == [1, 1]  # workers 0 and 1 each added their rank on both servers
    assert all(json.loads(s["SM_FRAMEWORK_PARAMS"]) == {"sagemaker_parameter_server_enabled": True}
               for s in seen)


def test_a_host_killed_mid_trial_fails_the_trial_naming_it_and_leaves_no_process(
        ray_session, write_space, tmp_path):
    space = dist_space("kill", "data_parallel",
                       {"action": {"type": "categorical", "values": ["wait_kill", "allreduce"]}})
    space["limits"] = {"max_parallel": 2}
    spec = load_spec(write_space(space))
    exp = tmp_path / "exp"
    killed = []

    def kill_algo_2():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for pid_file in exp.glob("kill/*/algo-2/output/pid"):
                time.sleep(0.5)  # mid-trial: let it settle
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                killed.append(pid_file)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_algo_2, daemon=True)
    killer.start()
    launch(spec, exp, dashboard=False)
    killer.join(timeout=5)
    assert killed
    df = hpt.load_experiment("kill", exp)
    by_action = {r["action"]: r for _, r in df.iterrows()}
    victim = by_action["wait_kill"]
    assert victim["TrainingJobStatus"] == "Failed"
    assert victim["FailureReason"].startswith("algo-2 (algo-2.log): AlgorithmError: killed by "
                                              "signal SIGKILL"), victim["FailureReason"]
    assert victim["TrainingElapsedTimeSeconds"] < 30  # stopped at once, not at max runtime
    assert by_action["allreduce"]["TrainingJobStatus"] == "Completed"
    time.sleep(0.5)
    assert live_processes_of(df["TrainingJobName"]) == []


def test_fake_gpus_are_never_shared_and_ports_never_reused_by_concurrent_trials(
        ray_session, write_space, tmp_path):
    space = dist_space("gpus", "data_parallel",
                       {"seconds": {"type": "continuous", "min": 0.3, "max": 1.0}},
                       gpus_per_host=1)
    space["hyperparameters"]["action"] = {"type": "categorical", "values": ["sleep"]}
    space.update(strategy="random", limits={"max_trials": 8, "max_parallel": 2})
    spec = load_spec(write_space(space))
    launch(spec, tmp_path / "exp", dashboard=False)
    df = hpt.load_experiment("gpus", tmp_path / "exp")
    assert (df["TrainingJobStatus"] == "Completed").all(), df["FailureReason"].tolist()
    runs = []  # (trial, host, gpus, port, start, end)
    for _, row in df.iterrows():
        for s in seen_files(row):
            gpus = s["CUDA_VISIBLE_DEVICES"].split(",")
            assert s["SM_NUM_GPUS"] == str(len(gpus)) == "1"
            assert set(gpus) <= {"0", "1", "2", "3"}
            runs.append((row["TrainingJobName"], s["SM_CURRENT_HOST"], set(gpus),
                         s["MASTER_PORT"], s["started"], s["ended"]))
        assert len(row["GpuIds"].split(",")) == 2 and row["GpuIds"].startswith("algo-1:")
    assert len(runs) == 16
    overlapping = 0
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a[0] == b[0]:
                assert not a[2] & b[2]  # the two hosts of one trial hold different GPUs
                assert a[3] == b[3]  # and share one rendezvous
            elif a[4] < b[5] and b[4] < a[5]:  # different trials, running at the same time
                overlapping += 1
                assert not a[2] & b[2], (a, b)
                assert a[3] != b[3], (a, b)
    assert overlapping > 0  # the job did run trials side by side


def test_torchrun_trial_runs_one_launcher_per_host(ray_session, write_space, tmp_path):
    spec = load_spec(write_space(dist_space(
        "torchrun", "torchrun", {"action": {"type": "categorical", "values": ["allreduce"]}})))
    launch(spec, tmp_path / "exp", dashboard=False)
    (row,) = [r for _, r in hpt.load_experiment("torchrun", tmp_path / "exp").iterrows()]
    assert row["TrainingJobStatus"] == "Completed", row["FailureReason"]
    seen = seen_files(row)
    assert sorted(s["RANK"] for s in seen) == ["0", "1"]  # set by torchrun, not by hpt
    assert all(s["allreduce"] == 3.0 for s in seen)
    assert all(json.loads(s["SM_FRAMEWORK_PARAMS"]) == {"sagemaker_torch_distributed_enabled": True}
               for s in seen)


def test_a_multi_host_trial_past_its_max_runtime_is_stopped_on_every_host(
        ray_session, write_space, tmp_path):
    spec = load_spec(write_space(dist_space(
        "timeout", "parameter_server", {"action": {"type": "categorical", "values": ["hang"]}},
        max_runtime_seconds=3)))
    launch(spec, tmp_path / "exp", dashboard=False)
    (row,) = [r for _, r in hpt.load_experiment("timeout", tmp_path / "exp").iterrows()]
    assert row["TrainingJobStatus"] == "Failed"
    assert row["FailureReason"].startswith("MaxRuntimeExceeded")
    time.sleep(0.5)
    assert live_processes_of([row["TrainingJobName"]]) == []
