"""Runs inside a container of runtime: docker and records three views of the contract:
what hpt gave the container (the environment of its PID 1, the engine's init), what the
toolkit's `train` gave this script, and what sagemaker_training computes here itself."""
import json
import os

from sagemaker_training import environment


def pid1_environment():
    with open("/proc/1/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


toolkit = environment.Environment()
seen = {
    "container": pid1_environment(),
    "script": dict(os.environ),
    "toolkit": toolkit.to_env_vars(),
    "hosts": toolkit.hosts,
    "files": sorted(os.listdir("/opt/ml/input/config")),
}
with open(os.path.join(os.environ["SM_MODEL_DIR"], "probe.json"), "w") as f:
    json.dump(seen, f)
print("val_acc=1.0", flush=True)
