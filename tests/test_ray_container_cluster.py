"""A real two-node Ray cluster on one machine: the head started by `ray start --head` here, a
worker node started by `ray start --address` inside a container, with a network address of
its own. The container runs this machine's Python and packages, mounted read-only at the same
paths (what a node image with the same Python and Ray gives a real cluster), and the
experiments folder is mounted too, as shared storage (NFS, EFS) would be on a cluster.

A 2-host data-parallel trial whose two bundles only fit on different nodes: algo-1 runs on
the head, algo-2 in a Ray actor on the container node, each as local processes; they meet
over the network for a real gloo all-reduce."""

import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile

import pandas as pd
import pytest
import yaml

from hpt.processes.reaper_sidecar import kill_session
from helpers import DIST, REPO, engine_holding, wait_for

# A long end-to-end run: `pytest -m "not smoke"` leaves it out (CI runs it).
pytestmark = pytest.mark.smoke

BASE_IMAGE = "hpt-base:bookworm"  # scripts/build_images.py: Debian with python3's libraries
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def gateway_of(bridge: dict) -> str:
    """The host's address on a bridge network, from `network inspect`'s JSON. On a daemon's
    first boot (a fresh data root, as in a clean CI run) the default bridge's IPAM config has
    its Subnet but no Gateway (moby/moby#26799); the engine then gives the bridge the subnet's
    first host, which is what the Gateway field would have said."""
    config = (bridge.get("IPAM") or {}).get("Config") or [{}]
    ipv4 = [c for c in config if ":" not in c.get("Subnet", "")] or config
    if ipv4[0].get("Gateway"):
        return ipv4[0]["Gateway"]
    subnet = ipv4[0].get("Subnet")
    if not subnet:
        raise RuntimeError(f"the bridge network has neither a Gateway nor a Subnet: {config}")
    return str(next(ipaddress.ip_network(subnet).hosts()))


def bridge_gateway(engine: str) -> str:
    """The host's address on the engine's default bridge: where a container reaches the head."""
    out = subprocess.run([engine, "network", "inspect", "bridge"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return gateway_of(json.loads(out)[0])


def test_the_gateway_is_the_subnets_first_host_when_the_engine_leaves_it_out():
    first_boot = {"IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}}
    later = {"IPAM": {"Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.254"}]}}
    dual = {"IPAM": {"Config": [{"Subnet": "fd00::/64"}, {"Subnet": "172.18.0.0/16"}]}}
    assert gateway_of(first_boot) == "172.17.0.1"
    assert gateway_of(later) == "10.9.0.254"
    assert gateway_of(dual) == "172.18.0.1"


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def alive_nodes(address: str, env: dict) -> list[dict]:
    probe = ("import json, ray; ray.init(address=%r, log_to_driver=False, "
             "logging_level='ERROR'); print(json.dumps([{'ip': n['NodeManagerAddress'], "
             "'cpus': n['Resources'].get('CPU')} for n in ray.nodes() if n['Alive']]))"
             % address)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**env, "RAY_AUTH_MODE": "token"}, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    return json.loads(lines[-1]) if lines else []


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    engine = engine_holding(BASE_IMAGE)
    home, exp = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("shared-exp")
    (home / ".ray").mkdir()
    token = secrets.token_hex(32)
    (home / ".ray" / "auth_token").write_text(token)
    temp = tempfile.mkdtemp(prefix="hc", dir="/tmp")  # short: Ray's socket paths must fit
    ip = bridge_gateway(engine)
    port = free_port(ip)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    head = subprocess.Popen([RAY, "start", "--head", "--node-ip-address", ip, "--port",
                             str(port), "--num-cpus", "1", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", temp, "--block"], env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    worker = f"hpt-ray-node-{os.getpid()}"
    mounts = {sys.base_prefix: "ro", sys.prefix: "ro", str(REPO): "ro", str(exp): "rw"}
    run = [engine, "run", "--detach", "--init", "--name", worker,
           "--hostname", "ray-worker-node", "--label", "hpt.test=ray-node", "--shm-size", "1g",
           # A node joining a token-protected cluster says so (RAY_AUTH_MODE) and has the token.
           "--env", "RAY_AUTH_MODE=token", "--env", f"RAY_AUTH_TOKEN={token}",
           "--env", "HOME=/tmp"]
    for path, mode in mounts.items():
        run += ["--mount", f"type=bind,source={path},target={path}" +
                (",readonly" if mode == "ro" else "")]
    run += [BASE_IMAGE, RAY, "start", "--address", f"{ip}:{port}", "--num-cpus", "1",
            "--object-store-memory", str(80 * 1024 * 1024), "--block"]
    try:
        wait_for(lambda: subprocess.run(run, capture_output=True, timeout=60).returncode == 0,
                 timeout=60, what="the worker node's container started")
        worker_ip = subprocess.run(
            [engine, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", worker],
            capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        address = f"{ip}:{port}"
        # This cluster and no other: our head (1 CPU, on the bridge) and the container.
        wanted = sorted([(ip, 1.0), (worker_ip, 1.0)])
        try:
            wait_for(lambda: sorted((n["ip"], n["cpus"]) for n in alive_nodes(address, env))
                     == wanted, timeout=120, what=f"exactly the nodes {wanted}")
        except AssertionError as missing:
            # Not --rm: a worker that ended keeps its log until the finally below removes it.
            logs = subprocess.run([engine, "logs", "--tail", "40", worker], capture_output=True,
                                  text=True, timeout=30)
            raise AssertionError(f"{missing}; the worker node said:\n{logs.stdout}"
                                 f"{logs.stderr}") from None
        assert head.poll() is None, "ray start --head ended"
        yield {"address": address, "env": env, "exp": exp, "engine": engine, "head_ip": ip,
               "worker_ip": worker_ip}
    finally:
        subprocess.run([engine, "rm", "--force", worker], capture_output=True, timeout=60)
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=20)
        kill_session(temp, spare=os.getpid())


def test_a_two_host_trial_runs_one_host_on_each_node(two_nodes, tmp_path):
    worker_ip = two_nodes["worker_ip"]
    space = {"name": "across", "trainer": {
                 "source_dir": str(DIST), "entry_point": "train.py", "instance_count": 2,
                 "cpus_per_host": 1, "distribution": "data_parallel",
                 "max_runtime_seconds": 120},
             "hyperparameters": {"action": {"type": "categorical", "values": ["allreduce"]}},
             "objective": {"metric": "ok", "type": "maximize"},
             "metric_definitions": [{"name": "ok", "regex": "val_acc=([0-9.]+)"}],
             "strategy": "grid", "limits": {"max_trials": 1, "max_parallel": 1}}
    path = tmp_path / "across.yaml"
    path.write_text(yaml.safe_dump(space))
    exp = two_nodes["exp"]
    done = subprocess.run([sys.executable, "-m", "hpt", "launch", str(path), "--address",
                           two_nodes["address"], "--experiments-dir", str(exp)],
                          capture_output=True, text=True, timeout=300, env=two_nodes["env"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = pd.read_parquet(exp / "across" / "table.parquet").itertuples()
    assert row.TrainingJobStatus == "Completed" and row.FinalObjectiveValue == 1.0
    trial = exp / "across" / row.TrainingJobName
    # Each host wrote its tree and log on its own node, into the shared folder.
    assert (trial / "algo-1.log").is_file() and (trial / "algo-2.log").is_file()
    chief = json.loads((trial / "algo-1" / "model" / "seen-worker0.json").read_text())
    other = json.loads((trial / "algo-2" / "model" / "seen-worker1.json").read_text())
    assert chief["allreduce"] == other["allreduce"] == 3.0  # 1 + 2 over the network
    # One host on each node, whichever bundle Ray put where; the rendezvous is algo-1's node.
    on_worker = [seen["hostname"] == "ray-worker-node" for seen in (chief, other)]
    assert sorted(on_worker) == [False, True], (chief["hostname"], other["hostname"])
    assert chief["MASTER_ADDR"] == (worker_ip if on_worker[0] else two_nodes["head_ip"])
    assert chief["RAY_RAYLET_PID"] != other["RAY_RAYLET_PID"]  # two raylets: two nodes
