"""The test suite's fixtures. Nothing here changes the environment of every test: the tests
run with the variables a user's shell has, and a test that needs one sets it itself (see
tests/user_env.py for the runs that start from an environment with none of the suite's)."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the slow set: the fault soaks (minutes), and the runs CI "
                          "leaves out for its time (warm-start chaos, torchrun in containers)")
    parser.addoption("--controller", choices=("local", "tune"), default=None,
                     help="run every launch on this controller (HPT_CONTROLLER); by default each "
                          "launch takes the controller hpt chooses, and the tests that take the "
                          "`controller` fixture run once on each")


CONTROLLERS = ("local", "tune")


def pytest_generate_tests(metafunc):
    if "controller" in metafunc.fixturenames:
        forced = metafunc.config.getoption("--controller")
        metafunc.parametrize("controller", [forced] if forced else CONTROLLERS, indirect=True)


@pytest.fixture
def controller(request, monkeypatch):
    """The controller this test's launches run on (hpt/controller/__init__.py): the test runs once
    on each, the same assertions on both."""
    monkeypatch.setenv("HPT_CONTROLLER", request.param)
    return request.param


@pytest.fixture(autouse=True)
def forced_controller(request, monkeypatch):
    """`pytest --controller X` (asked for on the command line, never by default): every
    launch of the run on X."""
    forced = request.config.getoption("--controller")
    if forced:
        monkeypatch.setenv("HPT_CONTROLLER", forced)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: the opt-in slow set (pytest --slow)")
    config.addinivalue_line("markers", "smoke: a long end-to-end run; pytest -m 'not smoke' "
                                       "is the fast set (CI runs everything)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow") or os.environ.get("HPT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="the slow set: run it with pytest --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """One Ray per test session (ray.init costs seconds): 4 CPUs so 2 trials x 2 hosts fit;
    4 fake GPUs (Ray hands out their ids without any device) for the placement tests. Bound
    to 127.0.0.1 the way hpt binds a Ray of its own."""
    import ray

    from hpt.cluster.session import keep_on_loopback

    keep_on_loopback()
    ray.init(num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", configure_logging=True)
    yield ray
    ray.shutdown()


@pytest.fixture
def write_space(tmp_path):
    """Writes a space.yaml from a dict into tmp_path and returns its path."""
    import yaml

    def write(data: dict, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


# A stand-in `docker` on PATH (this machine may have no container engine): it records every
# engine call and plays the container's part, printing what the contract's environment
# (passed as --env) says: two epochs, or a hang (mode hang), or a failure (mode fail).
FAKE_DOCKER = r'''#!{python}
import json, os, signal, sys, time
state = os.getenv("FAKE_DOCKER_STATE")
calls = os.path.join(state, "calls.jsonl")
with open(calls, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
cmd = sys.argv[1]
if cmd == "run":
    args = sys.argv[2:]
    name = args[args.index("--name") + 1]
    env = dict(a.split("=", 1) for i, a in enumerate(args) if i and args[i - 1] == "--env")
    with open(os.path.join(state, name + ".pid"), "w") as f:
        f.write(str(os.getpid()))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the CLI survives SIGTERM: only stop works
    hps = json.loads(env["SM_HPS"])
    print(f"container {{name}} training {{env['SM_TRAINING_ENV'] and 'with contract'}}",
          flush=True)
    if hps.get("mode") == "hang":
        time.sleep(3600)
    if hps.get("mode") == "fail":
        print("ValueError: the container failed on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    for epoch in (1, 2):
        print(f"epoch={{epoch}} loss=0.5 val_acc={{0.4 * epoch}}", flush=True)
    sys.exit(0)
elif cmd == "image":  # `image inspect`: every image is here
    print("sha256:0")
elif cmd == "stop":
    name = sys.argv[-1]
    try:
        os.kill(int(open(os.path.join(state, name + ".pid")).read()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
'''


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """Installs the stand-in; returns a function that lists the engine calls so far."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.getenv('PATH', '')}")
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))

    def calls():
        path = state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return calls


@pytest.fixture
def moto_server():
    """moto's server on 127.0.0.1 with empty state; yields its endpoint URL.

    moto keeps its backends per process, across server objects, so without the reset a log group
    or bucket one test made is already there in the next and results depend on test order."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def digits_channels(tmp_path_factory):
    """The digits data as the default job's channels (train/, test/ with data.npz), built
    once per test session."""
    from helpers import prepare_data

    out = tmp_path_factory.mktemp("digits")
    prepare_data.prepare(out, "plain", seed=0)
    return out
