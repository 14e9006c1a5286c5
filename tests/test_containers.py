"""runtime: docker for real: a Docker engine on this machine, the images scripts/build_images.py
builds, every host of every trial a container. Skips without an engine or the images, except
in CI (.ci/run starts an engine, builds the images and sets HPT_REQUIRE_CONTAINERS=1)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
import yaml

from helpers import (CNN_IMAGE, DIST, FAULTY, REPO, TESTS, TOOLKIT_IMAGE, TRAIN_PY,
                     engine_holding, labelled, prepare_data, wait_for)

# Long end-to-end runs: `pytest -m "not smoke"` leaves them out (CI runs them).
pytestmark = pytest.mark.smoke

PROBE = TESTS / "trainers" / "container_probe"
EPOCH = re.compile(r"^epoch=(\d+) loss=([0-9.eE+-]+) val_acc=([0-9.]+)$", re.M)
# As tests/test_cnn_distributed.py: no dropout or BatchNorm, so every mode follows one curve.
EXACT = {"epochs": 3, "batch_size": 64, "dropout": 0, "batch_norm": "false", "lr": 0.05,
         "optimizer": "adam", "conv_channels": 8, "dist_timeout": 30}


def launch(tmp_path, space: dict, *args, timeout=600) -> subprocess.CompletedProcess:
    path = tmp_path / f"{space['name']}.yaml"
    path.write_text(yaml.safe_dump(space))
    env = dict(os.environ)  # hpt keeps its own Ray on 127.0.0.1
    return subprocess.run([sys.executable, "-m", "hpt", "launch", str(path), "--experiments-dir",
                           str(tmp_path / "exp"), "--no-dashboard", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def table(tmp_path, name) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "exp" / name / "table.parquet").sort_values("TrialNumber")


def one_trial_space(name, source_dir, entry_point="train.py", image=CNN_IMAGE, **trainer):
    return {"name": name, "runtime": "docker",
            "trainer": {"source_dir": str(source_dir), "entry_point": entry_point,
                        "image": image, "cpus_per_host": 1, "max_runtime_seconds": 240,
                        **trainer},
            "hyperparameters": {"seed": {"type": "categorical", "values": [0]}},
            "objective": {"metric": "validation:accuracy", "type": "maximize"},
            "metric_definitions": [{"name": "validation:accuracy",
                                    "regex": "val_acc=([0-9.]+)"}],
            "strategy": "grid", "limits": {"max_trials": 1, "max_parallel": 1}}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    prepare_data.prepare(out, "plain", seed=0)
    return out


@pytest.fixture(scope="module")
def default_job(tmp_path_factory):
    """The README's default job with every trial in a container, 4 trials."""
    engine = engine_holding(CNN_IMAGE)
    tmp_path = tmp_path_factory.mktemp("default-docker")
    space = yaml.safe_load((REPO / "search_spaces" / "digits-cnn-docker.yaml").read_text())
    for key in ("source_dir",):
        space["trainer"][key] = str(REPO / "search_spaces" / space["trainer"][key])
    space["prepare"] = [sys.executable, str(REPO / "scripts" / "prepare_data.py")]
    space["channels"] = {k: str(REPO / "search_spaces" / v) for k, v in space["channels"].items()}
    done = launch(tmp_path, space, "--max-trials", "4")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return engine, tmp_path, space["name"]


def test_the_default_job_runs_every_trial_in_a_container(default_job):
    engine, tmp_path, name = default_job
    rows = table(tmp_path, name)
    assert list(rows.TrainingJobStatus) == ["Completed"] * 4, rows.FailureReason.tolist()
    assert rows.FinalObjectiveValue.max() >= 0.97
    assert labelled(engine, "ps -a", name) == [] and labelled(engine, "network ls", name) == []


def test_hpt_serve_answers_from_the_training_image_with_variants_and_a_shadow(default_job):
    engine, tmp_path, name = default_job
    rows = table(tmp_path, name).sort_values("FinalObjectiveValue", ascending=False)
    best, second, third = (int(n) for n in rows.TrialNumber[:3])
    serve = subprocess.Popen([sys.executable, "-m", "hpt", "serve", name, "--port", "0",
                              "--variant", f"{best}=1", "--variant", f"{second}=1",
                              "--shadow", str(third), "--experiments-dir", str(tmp_path / "exp")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.time() + 180
        while url is None and time.time() < deadline:
            line = serve.stdout.readline()
            assert line, "hpt serve ended before it served"
            found = re.search(rf"{name} at (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "hpt serve never said where it serves"
        # Two production variants and a shadow: three models, each in its own container.
        assert len(labelled(engine, "ps", name)) == 3
        body = json.dumps({"instances": [[[0.0] * 8] * 8]}).encode()
        variants = set()
        for _ in range(20):
            request = urllib.request.Request(f"{url}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                assert answer.status == 200 and len(json.load(answer)["predictions"]) == 1
                variants.add(answer.headers.get("X-Amzn-Invoked-Production-Variant"))
        assert len(variants) == 2, variants  # both variants answered, by weight
    finally:
        serve.kill()  # kill -9: the reaper still removes the containers
        serve.wait(timeout=30)
    wait_for(lambda: labelled(engine, "ps -a", name) == [], timeout=30,
             what="the serving containers removed after kill -9 of hpt serve")


@pytest.mark.parametrize("image,framework", [
    (CNN_IMAGE, ""), (TOOLKIT_IMAGE, "sagemaker_pytorch_container.training:main")])
def test_a_script_sees_what_the_toolkit_computes_in_both_toolkit_flavours(tmp_path, image,
                                                                          framework):
    """What hpt hands the container (its PID 1's environment) is what sagemaker_training
    computes inside it, the script sees it, and SAGEMAKER_TRAINING_MODULE is the image's."""
    engine_holding(image)
    done = launch(tmp_path, one_trial_space("probe", PROBE, image=image))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (job,) = table(tmp_path, "probe").TrainingJobName
    seen = json.loads((tmp_path / "exp" / "probe" / job / "algo-1" / "model" /
                       "probe.json").read_text())
    given = {k: v for k, v in seen["container"].items() if k.startswith("SM_")}
    assert given and seen["files"] == ["hyperparameters.json", "inputdataconfig.json",
                                       "resourceconfig.json"]
    # The container sees its share of CPUs as its own (SM_NUM_CPUS as hpt says); only the
    # framework module in SM_TRAINING_ENV is the image's, which hpt does not know.
    differ = {k for k in given if given[k] != seen["toolkit"].get(k)}
    assert differ == ({"SM_TRAINING_ENV"} if framework else set()), {
        k: (given[k], seen["toolkit"].get(k)) for k in differ}
    assert seen["script"]["SM_NUM_CPUS"] == "1"
    assert "SM_FRAMEWORK_MODULE" not in given
    assert seen["script"]["SM_FRAMEWORK_MODULE"] == framework
    assert seen["container"].get("SAGEMAKER_TRAINING_MODULE", "") == framework
    assert seen["hosts"] == ["algo-1"]


# In the slow set (pytest --slow), for CI's 25 minutes: the same three endings are tested for
# local processes in CI (test_tuning_job, test_local_runtime).
@pytest.mark.slow
def test_failure_file_max_runtime_and_silence_end_container_trials_with_reasons(tmp_path):
    engine = engine_holding(CNN_IMAGE)
    space = one_trial_space("faults", FAULTY, max_runtime_seconds=20)
    space["hyperparameters"] = {"mode": {"type": "categorical",
                                         "values": ["ok", "fail", "hang", "silent"]}}
    space["limits"] = {"max_trials": 4, "max_parallel": 2}
    done = launch(tmp_path, space)
    rows = table(tmp_path, "faults").set_index("mode")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert rows.loc["ok", "TrainingJobStatus"] == "Completed"
    assert rows.loc["fail", "TrainingJobStatus"] == "Failed"
    assert "deliberate failure for mode=fail" in rows.loc["fail", "FailureReason"]
    assert rows.loc["hang", "FailureReason"].startswith("MaxRuntimeExceeded")
    assert rows.loc["silent", "FailureReason"].startswith("ObjectiveMetricNeverMatched")
    assert labelled(engine, "ps -a", "faults") == []


def curve(text):
    return [(int(e), float(loss), float(acc)) for e, loss, acc in EPOCH.findall(text)]


def exact_run(tmp_path, digits, name, **trainer):
    space = one_trial_space(name, TRAIN_PY.parent, cpus_per_host=0.5, **trainer)
    space["channels"] = {"train": str(digits / "train"), "test": str(digits / "test")}
    space["static_hyperparameters"] = EXACT
    done = launch(tmp_path, space)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = table(tmp_path, name).itertuples()
    assert row.TrainingJobStatus == "Completed", row.FailureReason
    return curve((tmp_path / "exp" / name / row.TrainingJobName / "algo-1.log").read_text())


@pytest.fixture(scope="module")
def single_curve(tmp_path_factory, digits):
    engine_holding(CNN_IMAGE)
    return exact_run(tmp_path_factory.mktemp("single"), digits, "single")


# torchrun and parameter servers across containers are in the slow set (pytest --slow), for
# CI's 25 minutes: torchrun's rendezvous is torch's own, both follow the curve as local
# processes (test_cnn_distributed), and a parameter-server job in containers still runs in
# CI (kill -9 and stop tests below).
@pytest.mark.parametrize("distribution", [
    "data_parallel", pytest.param("parameter_server", marks=pytest.mark.slow),
    pytest.param("torchrun", marks=pytest.mark.slow)])
def test_two_host_trials_in_containers_follow_the_single_process_curve(tmp_path, digits,
                                                                       single_curve,
                                                                       distribution):
    engine = engine_holding(CNN_IMAGE)
    single = single_curve
    name = distribution.replace("_", "-")
    spread = exact_run(tmp_path, digits, name, instance_count=2, distribution=distribution)
    assert len(single) == len(spread) == EXACT["epochs"]
    for (e1, l1, a1), (e2, l2, a2) in zip(single, spread):
        assert e1 == e2 and l1 == pytest.approx(l2, rel=1e-4) and a1 == pytest.approx(a2, abs=0.003)
    assert labelled(engine, "ps -a", name) == [] and labelled(engine, "network ls", name) == []


def test_kill_9_of_the_launcher_leaves_no_container_and_no_network(tmp_path):
    engine = engine_holding(CNN_IMAGE)
    space = one_trial_space("killed", DIST, instance_count=2, cpus_per_host=0.5,
                            distribution="parameter_server", max_runtime_seconds=300)
    space["hyperparameters"] = {"seconds": {"type": "categorical", "values": [300]},
                                "action": {"type": "categorical", "values": ["hang"]}}
    space["objective"]["metric"] = "ok"
    space["metric_definitions"] = [{"name": "ok", "regex": "val_acc=([0-9.]+)"}]
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(space))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "hpt", "launch", str(path), "--experiments-dir",
         str(tmp_path / "exp"), "--no-dashboard"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        # Both hosts' containers (each with its processes) and the trial's network.
        wait_for(lambda: len(labelled(engine, "ps", "killed")) == 2, timeout=120,
                 what="both hosts' containers running")
        assert len(labelled(engine, "network ls", "killed")) == 1
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=30)
    wait_for(lambda: labelled(engine, "ps -a", "killed") == [] and
             labelled(engine, "network ls", "killed") == [], timeout=30,
             what="no container and no network of the killed launcher's job")


def test_the_container_benchmark_runs_and_prints_json():
    engine_holding(CNN_IMAGE)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick",
                           "containers"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
    assert line["bench"] == "containers" and line["container_first_line_seconds"] > 0


def test_hpt_stop_stops_a_container_job_and_removes_its_containers(tmp_path):
    engine = engine_holding(CNN_IMAGE)
    space = one_trial_space("stopped", FAULTY)
    space["hyperparameters"] = {"mode": {"type": "categorical", "values": ["hang"]}}
    path = tmp_path / "stopped.yaml"
    path.write_text(yaml.safe_dump(space))
    env = dict(os.environ)  # hpt keeps its own Ray on 127.0.0.1
    exp = str(tmp_path / "exp")
    launcher = subprocess.Popen([sys.executable, "-m", "hpt", "launch", str(path),
                                 "--experiments-dir", exp, "--no-dashboard"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: labelled(engine, "ps", "stopped") != [], timeout=120,
                 what="the trial's container running")
        subprocess.run([sys.executable, "-m", "hpt", "stop", "stopped", "--experiments-dir",
                        exp], check=True, timeout=60, env=env, capture_output=True)
        assert launcher.wait(timeout=90) == 1  # it ended, with no completed training job
    finally:
        launcher.kill()
    (row,) = table(tmp_path, "stopped").itertuples()
    assert row.TrainingJobStatus == "Stopped"
    assert labelled(engine, "ps -a", "stopped") == []


# In the slow set (pytest --slow), for CI's 25 minutes: a container job's stop is tested in
# CI (test_hpt_stop_stops_a_container_job_and_removes_its_containers), and a multi-process
# host's SIGTERM for local processes (test_local_runtime, test_distributed).
@pytest.mark.slow
def test_every_process_of_a_multi_process_container_host_gets_sigterm_at_a_stop(tmp_path):
    """One host, a worker and a parameter server: two `docker exec`s in one container.
    Past max_runtime_seconds both get SIGTERM (their handlers run) before the container goes."""
    engine = engine_holding(CNN_IMAGE)
    space = one_trial_space("termed", TESTS / "trainers" / "sigterm",
                            distribution="parameter_server", max_runtime_seconds=15)
    done = launch(tmp_path, space)
    (row,) = table(tmp_path, "termed").itertuples()
    assert row.FailureReason.startswith("MaxRuntimeExceeded"), done.stdout[-2000:]
    model = tmp_path / "exp" / "termed" / row.TrainingJobName / "algo-1" / "model"
    assert sorted(p.name for p in model.glob("term-*")) == ["term-0", "term-1"]
    assert labelled(engine, "ps -a", "termed") == []
