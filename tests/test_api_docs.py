"""docs/api.md's whole example, as written, in a new user's shell (tests/user_env.py) in a folder
laid out like a fresh clone: its shell block (an S3 server, `hpt api`), then its boto3 and its
SageMaker SDK scripts. The only changes are the ports (free ones for the page's 9000 and
8765, so that runs never collide) and the install line, which this environment has already
run (checked: the packages it names are here)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port, processes_in
from user_env import user_env

pytestmark = pytest.mark.smoke
pytest.importorskip("sagemaker", reason="the SageMaker Python SDK 2.x (pip install sagemaker<3)")
pytest.importorskip("moto", reason="moto's S3 server (pip install moto[server])")

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "api.md"


def example_blocks() -> tuple[str, list[str]]:
    """The whole example's shell block and its Python blocks, in the page's order."""
    section = PAGE.read_text().split("## A whole example", 1)[1].split("\n## ", 1)[0]
    (shell,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return shell, re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_api_pages_example_runs_as_written(tmp_path):
    import importlib.metadata

    shell, scripts = example_blocks()
    assert len(scripts) == 2 and "create_hyper_parameter_tuning_job" in scripts[0]
    install, *commands = shell.splitlines()
    assert install.startswith("pip install -e \".[cnn]\"") and "moto[server]" in install
    assert importlib.metadata.version("sagemaker").startswith("2.")  # what it installs
    s3_port, api_port = free_port(), free_port()

    def ports(text: str) -> str:
        return text.replace(":9000", f":{s3_port}").replace("-p 9000", f"-p {s3_port}") \
            .replace(":8765", f":{api_port}").replace("hpt api &", f"hpt api --port {api_port} &")

    clone = tmp_path / "hpt"
    shutil.copytree(REPO / "trainers" / "cnn", clone / "trainers" / "cnn")
    (clone / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "prepare_data.py", clone / "scripts")
    for i, script in enumerate(scripts):
        (clone / f"example_{i}.py").write_text(ports(script))
    wait_for_api = (f"{sys.executable} -c 'import socket, time\n"
                    f"for _ in range(240):\n"
                    f"    try: socket.create_connection((\"127.0.0.1\", {api_port}), 1); break\n"
                    f"    except OSError: time.sleep(0.5)'")
    run = "\n".join(["set -e", ports("\n".join(commands)), wait_for_api,
                     "python example_0.py", "python example_1.py"])
    log = tmp_path / "example.log"  # a file: the servers in the background keep it open
    with open(log, "w") as out_file:
        shell_proc = subprocess.Popen(["bash", "-c", run], cwd=clone,
                                      env=user_env(tmp_path / "home"), stdout=out_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    try:
        shell_proc.wait(timeout=900)
    finally:
        _stop(shell_proc)
    out = log.read_text(errors="replace")
    assert shell_proc.returncode == 0, out[-6000:]
    assert "Completed" in out and "digits-boto3-" in out, out[-6000:]
    assert re.search(r"\[(\d ){4}\d\]", out), out[-3000:]  # five predicted digits
    assert re.search(r"batch: \[(\d, ){4}\d\]", out), out[-3000:]  # and five from a batch
    assert "Traceback" not in out, out[-6000:]
    assert processes_in(clone) == []


def _stop(proc: subprocess.Popen) -> None:
    """The example's background servers (moto's, hpt api) go with its shell: SIGTERM, as
    `kill %1 %2` does, then SIGKILL for what is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
