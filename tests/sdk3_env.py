"""The environment the SDK 3.x tests run the SageMaker SDK 3.x in (the dev extra keeps the
2.x): `~/.cache/hpt-tests/sagemaker-sdk3`, made the first time it is asked for (about a
minute: pip installs `sagemaker>=3`), kept for the next runs.

    python tests/sdk3_env.py    # makes it now (CI does, while it builds the images)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SDK3 = Path.home() / ".cache" / "hpt-tests" / "sagemaker-sdk3"


def sdk3_python() -> Path:
    """The Python of an environment with the SDK 3.x."""
    python = SDK3 / "bin" / "python"
    check = [str(python), "-c", "import sagemaker.train, sagemaker.serve"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    shutil.rmtree(SDK3, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(SDK3)], check=True)
    done = subprocess.run([str(SDK3 / "bin" / "pip"), "install", "-q", "sagemaker>=3"],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"pip install sagemaker>=3 failed:\n{done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")
    return python


if __name__ == "__main__":
    print(sdk3_python())
