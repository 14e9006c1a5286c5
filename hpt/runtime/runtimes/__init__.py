"""The runtimes a training job can run on, by the name space.yaml's `runtime:` gives them.

Adding one: a module here defining its `Runtime` (hpt/runtime/job_protocol.py), and one line below.
The spec's `runtime:` choices and the CLI's `--runtime` come from this registry.
"""

from __future__ import annotations

from hpt.runtime.job_protocol import Runtime
from hpt.runtime.runtimes.docker import DOCKER
from hpt.runtime.runtimes.local import LOCAL
from hpt.runtime.runtimes.sagemaker import SAGEMAKER

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (LOCAL, DOCKER, SAGEMAKER)}
