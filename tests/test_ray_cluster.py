"""A multi-host trial on a simulated Ray cluster (ray.cluster_utils.Cluster: a head and a
worker node on loopback, one CPU each), joined with --address: its two hosts must land on
the two nodes. Runs in its own process: the test session already holds a Ray."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hpt

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke

DIST = Path(__file__).parent / "trainers" / "dist"

SCRIPT = r'''
import json, sys
from pathlib import Path
import ray
from ray.cluster_utils import Cluster

out = Path(sys.argv[1])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
try:
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    from hpt.launcher.launch import launch
    from hpt.spacefile import load_spec
    result = launch(load_spec(out / "space.yaml"), out / "exp", address=cluster.address,
                    dashboard=False)
    raylets = {n["NodeManagerAddress"] + ":" + str(n["NodeManagerPort"]) for n in ray.nodes()}
    (out / "result.json").write_text(json.dumps({"cluster_nodes": len(raylets),
                                                 "exit_code": result.exit_code}))
finally:
    ray.shutdown()
    cluster.shutdown()
    Path("/tmp/ray/ray_current_cluster").unlink(missing_ok=True)  # no stale cluster to join
'''


def test_a_two_host_trial_spans_two_nodes_of_a_ray_cluster(write_space, tmp_path):
    space = {"name": "spread",
             "trainer": {"source_dir": str(DIST), "entry_point": "train.py",
                         "instance_count": 2, "cpus_per_host": 1,
                         "distribution": "data_parallel", "max_runtime_seconds": 120},
             "hyperparameters": {"action": {"type": "categorical", "values": ["allreduce"]}},
             "objective": {"metric": "ok", "type": "maximize"},
             "metric_definitions": [{"name": "ok", "regex": "val_acc=([0-9.]+)"}],
             "strategy": "grid", "limits": {"max_parallel": 1}}
    write_space(space)
    # The script starts its simulated cluster itself (ray.cluster_utils), not through hpt:
    # Ray's switch keeps those nodes on 127.0.0.1, as hpt keeps a Ray of its own.
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["cluster_nodes"] == 2 and result["exit_code"] == 0
    (row,) = [r for _, r in hpt.load_experiment(tmp_path / "exp" / "spread").iterrows()]
    assert row["TrainingJobStatus"] == "Completed", row["FailureReason"]
    assert row["Hosts"] == "algo-1,algo-2" and row["FinalObjectiveValue"] == 1.0  # all-reduced
    trial = Path(row["LogPath"]).parent
    seen = [json.loads(p.read_text()) for p in sorted(trial.glob("algo-*/model/seen-*.json"))]
    raylet_of = {s["SM_CURRENT_HOST"]: s["RAY_RAYLET_PID"] for s in seen}
    assert set(raylet_of) == {"algo-1", "algo-2"}
    assert raylet_of["algo-1"] != raylet_of["algo-2"]  # each host on its own node
