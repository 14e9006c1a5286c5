import os
import sys
from pathlib import Path

import pytest

# Before Ray is imported anywhere: a local Ray binds 127.0.0.1, all test traffic stays on loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))


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
