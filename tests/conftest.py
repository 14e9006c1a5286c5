import os
import secrets
import sys
from pathlib import Path

import pytest

# Before Ray is imported anywhere: a local Ray binds 127.0.0.1, all test traffic stays on loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's auth token for this test session (and every process it starts): this machine's own
# ~/.ray/auth_token is never read, nor written when it does not exist.
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
os.environ.pop("RAY_AUTH_TOKEN_PATH", None)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the slow fault set (soak runs with many faults; minutes)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: the opt-in slow fault set (pytest --slow)")
    config.addinivalue_line("markers", "smoke: a long end-to-end run; pytest -m 'not smoke' "
                                       "is the fast set (CI runs everything)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow") or os.environ.get("HPT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="the slow fault set: run it with pytest --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """One Ray per test session (ray.init costs seconds): 4 CPUs so 2 trials x 2 hosts fit;
    4 fake GPUs (Ray hands out their ids without any device) for the placement tests."""
    import ray

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
