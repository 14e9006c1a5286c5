"""The distribution plan is pure: exact processes, argv and environment per host and mode."""

import json

import pytest

from hpt.core.sagemaker_names import distribution_hyperparameters
from hpt.runtime.distribution_plan import (HostAddress, plan_trial,
                              processes_on_host)

ARGV = ("python3", "train.py", "--lr", "0.1")
HOSTS = (HostAddress("algo-1", "10.0.0.1", (5001, 5002, 5003)),
         HostAddress("algo-2", "10.0.0.2", (6001, 6002, 6003)))


def test_no_distribution_runs_the_script_once_per_host_with_a_rendezvous_when_several():
    single = plan_trial("none", HOSTS[:1], ARGV, master_port=7000)
    assert len(single) == 1 and single[0].processes[0].env == {}
    assert single[0].processes[0].argv == ARGV
    plans = plan_trial("none", HOSTS, ARGV, master_port=7000)
    assert [p.host for p in plans] == ["algo-1", "algo-2"]
    for plan in plans:
        (proc,) = plan.processes
        assert proc.env == {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "7000"}
        assert proc.log_name == f"{plan.host}.log"


def test_data_parallel_ranks_every_process_of_every_host():
    plans = plan_trial("data_parallel", HOSTS, ARGV, processes_per_host=2, master_port=7000)
    envs = [(p.host, p.env, p.log_name) for plan in plans for p in plan.processes]
    common = {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "7000", "WORLD_SIZE": "4",
              "LOCAL_WORLD_SIZE": "2"}
    assert envs == [
        ("algo-1", {**common, "RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0"}, "algo-1.log"),
        ("algo-1", {**common, "RANK": "1", "LOCAL_RANK": "1", "NODE_RANK": "0"},
         "algo-1.rank1.log"),
        ("algo-2", {**common, "RANK": "2", "LOCAL_RANK": "0", "NODE_RANK": "1"}, "algo-2.log"),
        ("algo-2", {**common, "RANK": "3", "LOCAL_RANK": "1", "NODE_RANK": "1"},
         "algo-2.rank3.log"),
    ]
    assert all(p.argv == ARGV and p.role == "worker" for plan in plans for p in plan.processes)
    assert distribution_hyperparameters("data_parallel", 2) == {
        "sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}


def test_parameter_server_runs_workers_and_one_server_per_host_with_tf_config():
    plans = plan_trial("parameter_server", HOSTS, ARGV, processes_per_host=1, master_port=7000)
    procs = [p for plan in plans for p in plan.processes]
    assert [(p.host, p.role, p.rank, p.log_name) for p in procs] == [
        ("algo-1", "worker", 0, "algo-1.log"), ("algo-1", "ps", 2, "algo-1.ps.log"),
        ("algo-2", "worker", 1, "algo-2.log"), ("algo-2", "ps", 3, "algo-2.ps.log")]
    cluster = {"master": ["10.0.0.1:5001"], "worker": ["10.0.0.2:6001"],
               "ps": ["10.0.0.1:5002", "10.0.0.2:6002"]}
    tasks = [json.loads(p.env["TF_CONFIG"]) for p in procs]
    assert all(t["cluster"] == cluster and t["environment"] == "cloud" for t in tasks)
    assert [t["task"] for t in tasks] == [{"type": "master", "index": 0}, {"type": "ps", "index": 0},
                                          {"type": "worker", "index": 0}, {"type": "ps", "index": 1}]
    assert all(p.env["WORLD_SIZE"] == "4" and p.env["MASTER_ADDR"] == "10.0.0.1" for p in procs)
    assert [p.env["RANK"] for p in procs] == ["0", "2", "1", "3"]
    assert processes_on_host("parameter_server", 1) == 2
    assert distribution_hyperparameters("parameter_server", 1) == {
        "sagemaker_parameter_server_enabled": True}


def test_torchrun_runs_one_launcher_per_host_with_a_static_rendezvous():
    plans = plan_trial("torchrun", HOSTS, ARGV, processes_per_host=4, master_port=7000)
    assert [p.processes[0].argv for p in plans] == [
        ("python3", "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
         "--nproc_per_node", "4", "--master_addr", "10.0.0.1", "--master_port", "7000",
         "train.py", "--lr", "0.1") for node in (0, 1)]
    assert processes_on_host("torchrun", 4) == 1
    with pytest.raises(ValueError, match="Python entry point"):
        plan_trial("torchrun", HOSTS, ("/bin/sh", "-c", "run.sh"), master_port=7000)


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="unknown distribution"):
        plan_trial("mpi", HOSTS, ARGV, master_port=1)
    with pytest.raises(ValueError, match="ports needed"):
        plan_trial("parameter_server", (HostAddress("algo-1", "1.2.3.4", (1,)),), ARGV,
                   master_port=2)
