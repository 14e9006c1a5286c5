"""A distributed test trainer: one real collective per run, and a record of what it saw.

--action allreduce : torch.distributed gloo all-reduce of (rank + 1) over WORLD_SIZE ranks
--action ps        : torch.distributed.rpc: every worker adds its rank to a counter held by
                     each parameter server (role from TF_CONFIG); the chief reads the totals
--action sleep     : sleep --seconds (then until the file --gate exists, if given), print
                     the objective
--action lose_actor_once : first attempt waits for its Ray actor to be killed; a retry succeeds
--action hang      : sleep on every host (max_runtime_seconds tests)
--action wait_kill : the last host writes its pid to output/pid and sleeps (to be SIGKILLed)

The chief (rank 0, or the only process) prints `val_acc=1.0` when the collective gave the
expected result. Every process writes what it saw to $SM_MODEL_DIR/seen-<role><rank>.json.
"""

import argparse
import json
import os
import socket
import sys
import time
from datetime import timedelta

parser = argparse.ArgumentParser()
parser.add_argument("--action", default="allreduce")
parser.add_argument("--seconds", type=float, default=0.5)
parser.add_argument("--gate", default="")  # sleep: then wait for this file to exist
args, _ = parser.parse_known_args()

started = time.time()
env = os.environ
rank = int(env.get("RANK", "0"))
world = int(env.get("WORLD_SIZE", "1"))
tf_config = json.loads(env["TF_CONFIG"]) if "TF_CONFIG" in env else None
role = tf_config["task"]["type"] if tf_config else "worker"
seen = {k: env.get(k) for k in (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
    "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "SM_NUM_GPUS", "SM_NUM_CPUS", "SM_CURRENT_HOST",
    "SM_HOSTS", "SM_FRAMEWORK_PARAMS", "TF_CONFIG", "OMP_NUM_THREADS", "TRAINING_JOB_NAME",
    "RAY_RAYLET_PID")}  # the raylet of the node the host runs on (Ray cluster tests)
seen["role"] = role
seen["pid"] = os.getpid()
seen["hostname"] = socket.gethostname()  # which node (a container node has its own)
seen["channel_files"] = sorted(os.listdir(env["SM_CHANNEL_TRAIN"])) if env.get(
    "SM_CHANNEL_TRAIN") else None
ok = True


def _add(value):  # runs on a parameter server (rpc target)
    global total
    with lock:
        total += value
        return total


def _read():
    with lock:
        return total


if args.action == "allreduce":
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=30))
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    ok = t.item() == world * (world + 1) / 2
    seen["allreduce"] = t.item()
    dist.destroy_process_group()
elif args.action == "ps":
    import threading

    import torch.distributed.rpc as rpc

    lock, total = threading.Lock(), 0
    servers = len(tf_config["cluster"]["ps"])
    workers = world - servers
    name = f"ps{tf_config['task']['index']}" if role == "ps" else f"worker{rank}"
    rpc.init_rpc(name, rank=rank, world_size=world,
                 rpc_backend_options=rpc.TensorPipeRpcBackendOptions(rpc_timeout=30))
    if role != "ps":
        for i in range(servers):
            rpc.rpc_sync(f"ps{i}", _add, args=(rank,))
    if rank == 0:  # every worker's adds arrive: poll the servers until they add up
        expected, deadline = [sum(range(workers))] * servers, time.time() + 20
        totals = []
        while totals != expected and time.time() < deadline:
            totals = [rpc.rpc_sync(f"ps{i}", _read) for i in range(servers)]
            time.sleep(0.05)
        seen["ps_totals"] = totals
        ok = totals == expected
    rpc.shutdown()  # graceful: waits for every process's outstanding work
elif args.action == "sleep":
    time.sleep(args.seconds)
    while args.gate and not os.path.exists(args.gate):  # the test opens the gate
        time.sleep(0.1)
elif args.action == "lose_actor_once":
    # First attempt: wait to have the Ray actor above us killed (the test does it); a retry
    # finds the first attempt's files moved to attempt-1/ and succeeds.
    trial_dir = os.path.dirname(env["SAGEMAKER_BASE_DIR"])
    if not os.path.isdir(os.path.join(trial_dir, "attempt-1")):
        with open(os.path.join(env["SM_OUTPUT_DIR"], "pid"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(3600)
elif args.action == "crash":
    sys.exit(3)
elif args.action == "hang":
    time.sleep(3600)
elif args.action == "wait_kill":
    if env["SM_CURRENT_HOST"] == json.loads(env["SM_HOSTS"])[-1]:
        with open(os.path.join(env["SM_OUTPUT_DIR"], "pid"), "w") as f:
            f.write(str(os.getpid()))
    time.sleep(3600)

seen["started"], seen["ended"] = started, time.time()
with open(os.path.join(env["SM_MODEL_DIR"], f"seen-{role}{rank}.json"), "w") as f:
    json.dump(seen, f)
if rank == 0:
    print(f"epoch=1 val_acc={1.0 if ok else 0.0}", flush=True)
sys.exit(0 if ok else 1)
