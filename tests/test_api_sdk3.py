"""The SageMaker Python SDK 3.x, unchanged, against `hpt api`: docs/api.md's SDK 3.x script as
it is written (`ModelTrainer.train`, `HyperparameterTuner.tune`, `ModelBuilder.build/deploy`,
`endpoint.invoke`), with the environment its shell block exports. The SDK 3.x lives in an
environment of its own (hpt's dev extra keeps the SDK 2.x): made once, with pip, under
~/.cache/hpt-tests/, and reused. Its training jobs run the SDK's drivers in real containers
(the framework image mapped to hpt-cnn:pytorch-toolkit)."""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from api_helpers import ApiServer
from helpers import TOOLKIT_IMAGE, engine_holding, prepare_data, processes_in
from sdk3_env import sdk3_python

pytestmark = pytest.mark.smoke

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "api.md"
SECTION = "## A whole example with the SDK 3.x"


def page_blocks() -> tuple[str, str]:
    section = PAGE.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    (shell,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    (script,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return shell, script


def exported(shell: str, s3_url: str, api_url: str, folder: Path) -> dict[str, str]:
    """The variables the shell block exports, pointing at this test's servers."""
    env = {}
    for line in shell.splitlines():
        if line.startswith("export "):
            for pair in line.split("#", 1)[0].split()[1:]:
                key, _, value = pair.partition("=")
                env[key] = (value.replace("http://127.0.0.1:9000", s3_url)
                            .replace("http://127.0.0.1:8765", api_url)
                            .replace('"$PWD', str(folder)).strip('"'))
    return env


def test_the_sdk3_script_trains_tunes_deploys_and_invokes_as_written(moto_server, tmp_path):
    engine = engine_holding(TOOLKIT_IMAGE)
    python = sdk3_python()
    shell, script = page_blocks()
    assert "--image-map pytorch-training=hpt-cnn:pytorch-toolkit" in shell
    clone = tmp_path / "hpt"  # what the script's relative paths need: the trainer, the data
    shutil.copytree(REPO / "trainers" / "cnn", clone / "trainers" / "cnn")
    prepare_data.prepare(clone / "data" / "digits", "plain", seed=0)
    (clone / "sagemaker-config.yaml").write_text(
        'SchemaVersion: "1.0"\nSageMaker:\n  PythonSDK:\n    Modules:\n'
        '      TelemetryOptOut: true\n')
    (clone / "example_sdk3.py").write_text(script)
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server, "--image-map",
                       f"pytorch-training={TOOLKIT_IMAGE}", "--container-engine", engine).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
        env.update(exported(shell, moto_server, server.url, clone))
        done = subprocess.run([str(python), "example_sdk3.py"], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=900)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-6000:] + server.output()[-3000:]
        assert "trained: Completed" in done.stdout, out[-3000:]
        assert re.search(r"best: \S+", done.stdout), out[-3000:]
        predicted = re.search(r"predicted: \[([\d, ]+)\]", done.stdout)
        assert predicted and len(predicted.group(1).split(",")) == 5, out[-3000:]
        assert "Traceback" not in out
        # The SDK's own drivers ran in the training job's container (their log lines).
        (log,) = experiments.glob(".hpt-api/training-jobs/digits-sdk3-*/job/algo-1.log")
        assert "Running Basic Script driver" in log.read_text()
        assert "Training Container Execution Completed" in log.read_text()
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()[-3000:]
    assert processes_in(experiments) == []
