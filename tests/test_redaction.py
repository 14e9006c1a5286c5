"""Secrets: variables whose names look secret reach the trial but are never written by hpt
(spec.json, journal, table, reports); `hpt rerun` takes them back from the environment."""

import json
import subprocess
import sys
import tarfile

import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.report.page import render_html
from hpt.core.redaction import REDACTED, looks_secret, redact_env
from hpt.spacefile import load_spec

SECRET = "s3cr3t-v4lue-9f8e7d"
RECORDER = """import json, os
with open(os.path.join(os.environ["SM_MODEL_DIR"], "env.json"), "w") as f:
    json.dump({k: os.environ.get(k) for k in ("MY_API_TOKEN", "AWS_SECRET_ACCESS_KEY",
                                               "PLAIN")}, f)
print("val_acc=1.0", flush=True)
"""


@pytest.mark.parametrize("name, secret", [
    ("AWS_SECRET_ACCESS_KEY", True), ("AWS_REGION", True), ("MY_API_TOKEN", True),
    ("hf_token", True), ("DB_PASSWORD", True), ("SSH_KEY_PATH", True), ("EPOCHS", False),
    ("OMP_NUM_THREADS", False), ("PLAIN", False)])
def test_names_that_look_secret(name, secret):
    assert looks_secret(name) is secret
    assert (redact_env({name: "v"})[name] == REDACTED) is secret


def test_a_secret_reaches_the_trial_and_nowhere_else(ray_session, write_space, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "record.py").write_text(RECORDER)
    space = {"name": "secret", "trainer": {"source_dir": "code", "entry_point": "record.py",
                                           "environment": {"MY_API_TOKEN": SECRET,
                                                           "PLAIN": "visible"}},
             "hyperparameters": {"x": {"type": "categorical", "values": [1, 2]}},
             "objective": {"metric": "acc", "type": "maximize"},
             "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
             "strategy": "grid", "limits": {"max_parallel": 2}}
    result = launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    df = hpt.load_experiment(result.experiment_dir)
    with tarfile.open(df["ModelArtifact"].iloc[0]) as tar:
        seen = json.load(tar.extractfile("env.json"))
    assert seen["MY_API_TOKEN"] == SECRET and seen["PLAIN"] == "visible"  # the trial has it
    (result.experiment_dir / "report.html").write_text(render_html(result.experiment_dir))
    written = [p for p in result.experiment_dir.rglob("*") if p.is_file()
               and p.suffix in (".json", ".jsonl", ".csv", ".html", ".log", ".parquet")
               and p.name != "env.json"]  # the trial's own output is the script's business
    assert any(p.name == "spec.json" for p in written)
    leaks = [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    assert leaks == []
    stored = json.loads((result.experiment_dir / "spec.json").read_text())
    assert stored["trainer"]["environment"] == {"MY_API_TOKEN": REDACTED, "PLAIN": "visible"}

    # rerun needs the secret from the environment, says so if it is missing ...
    job = df["TrainingJobName"].iloc[0]
    env = {k: v for k, v in __import__("os").environ.items() if k != "MY_API_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "hpt", "rerun", str(result.experiment_dir),
                           job], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "MY_API_TOKEN" in done.stderr and "export" in done.stderr
    # ... and uses it when it is there.
    done = subprocess.run([sys.executable, "-m", "hpt", "rerun", str(result.experiment_dir),
                           job], capture_output=True, text=True,
                          env={**env, "MY_API_TOKEN": SECRET}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
