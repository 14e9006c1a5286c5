"""`hpt serve` end to end: a real tuning job's models behind the router, real HTTP on
127.0.0.1, the stand-in serving program (tests/serving_programs/standin_serve.py) as each
model's server, and one test with the CNN's own trainers/cnn/serve.py."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

import hpt
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec
from helpers import processes_in

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "tests" / "serving_programs" / "standin_serve.py"
CNN_SERVE = REPO / "trainers" / "cnn" / "serve.py"
VARIANT = "X-Amzn-Invoked-Production-Variant"


def hpt_cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "hpt.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def tiny_space(tmp, name, source_dir, **overrides):
    import yaml

    space = {"name": name,
             "trainer": {"source_dir": str(source_dir), "entry_point": "train.py",
                         "cpus_per_host": 1, "max_runtime_seconds": 60},
             "static_hyperparameters": {"epochs": 1, "mode": "ok"},
             "hyperparameters": {"x": {"type": "continuous", "min": 0.1, "max": 0.9}},
             "objective": {"metric": "validation:accuracy", "type": "maximize"},
             "metric_definitions": [{"name": "validation:accuracy",
                                     "regex": "val_acc=([0-9.]+)"}],
             "strategy": "random", "limits": {"max_trials": 3, "max_parallel": 2}, "seed": 1}
    space.update(overrides)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return load_spec(path)


@pytest.fixture(scope="module")
def experiment(ray_session, tmp_path_factory):
    """A real tuning job (the faulty test trainer, mode ok, 3 trials) whose source_dir also
    holds the stand-in as serve.py: `hpt serve` finds it the way it finds the CNN's."""
    tmp = tmp_path_factory.mktemp("serving")
    code = tmp / "code"
    code.mkdir()
    shutil.copy(REPO / "tests" / "trainers" / "faulty" / "train.py", code / "train.py")
    shutil.copy(STANDIN, code / "serve.py")
    result = launch(tiny_space(tmp, "srv", code), tmp / "exp", dashboard=False)
    assert result.counts.get("Completed") == 3, result.counts
    df = hpt.load_experiment("srv", tmp / "exp")
    best = hpt.best_trial("srv", tmp / "exp")["TrainingJobName"]
    others = [n for n in df.sort_values("TrialNumber")["TrainingJobName"] if n != best]
    return {"dir": tmp / "exp", "root": tmp / "exp" / "srv", "best": best, "others": others,
            "numbers": dict(zip(df["TrainingJobName"], df["TrialNumber"]))}


class Serving:
    """`hpt serve` in a subprocess: its URL, its stdout lines as they come."""

    def __init__(self, experiment, *flags, modes=None, cwd=None):
        env = {**os.environ, "STANDIN_MODES": json.dumps(modes or {}),
               "STANDIN_LOAD_SECONDS": "0.3"}
        # From `cwd`, the experiments folder is given relative to it (as a user types it).
        folder = os.path.relpath(experiment["dir"], cwd) if cwd else str(experiment["dir"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hpt.cli.main", "serve", "srv", "--experiments-dir",
             folder, "--port", "0", *map(str, flags)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
        self.lines: list[str] = []
        self.url = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if self.url is None and " at http://" in line:
                    self.url = line.split(" at ", 1)[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60) or self.url is None:
            self.proc.kill()
            raise AssertionError("hpt serve did not start:\n" + "\n".join(self.lines))
        self.session = requests.Session()

    def invoke(self, instances, **kw):
        return self.session.post(f"{self.url}/invocations", json={"instances": instances}, **kw)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.session.close()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()


def fire(url, payloads, concurrency=8):
    """POSTs every payload, `concurrency` at a time: [(status, variant, body, seconds)]."""
    local = threading.local()

    def one(instances):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        resp = session.post(f"{url}/invocations", json={"instances": instances}, timeout=30)
        return resp.status_code, resp.headers.get(VARIANT), resp.content, \
            time.perf_counter() - start

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, payloads))


def payloads(n):
    return [[[i % 7, (i * 3) % 11], [i % 5]] for i in range(n)]


def no_standin_left(experiment):
    """No serving program of this experiment runs (found by the folder they serve from,
    never by a program name another test or user could share)."""
    return processes_in(experiment["root"] / "serving") == []


def test_ping_weights_admin_and_serve_weights(experiment):
    best, other = experiment["best"], experiment["others"][0]
    with Serving(experiment, "--variant", "best=0.9", "--variant",
                 f"{experiment['numbers'][other]}=0.1") as srv:
        assert requests.get(f"{srv.url}/ping").status_code == 200
        assert any(best in line and "weight 0.9" in line for line in srv.lines)

        n = 2000
        results = fire(srv.url, payloads(n))
        assert all(status == 200 for status, *_ in results)
        counts = {best: 0, other: 0}
        for _, variant, body, _ in results:
            counts[variant] += 1
            assert json.loads(body)["model"] == variant  # the header names who answered
        sd = math.sqrt(n * 0.1 * 0.9)
        assert abs(counts[other] - n * 0.1) < 5 * sd, counts
        assert requests.get(f"{srv.url}/ping").status_code == 200  # still healthy after load

        admin = requests.get(f"{srv.url}/admin/variants").json()
        assert admin["variants"][best]["weight"] == 0.9
        assert admin["variants"][best]["requests"] == counts[best]
        assert admin["variants"][other]["healthy"] is True

        # At run time, through the admin endpoint: all traffic to `other`.
        resp = requests.post(f"{srv.url}/admin/variants", json={best: 0, other: 1})
        assert resp.status_code == 200, resp.text
        assert {v for _, v, _, _ in fire(srv.url, payloads(100))} == {other}
        for bad in ({"nope": 1}, {best: -1}, {best: 0, other: 0}, {best: "x"}, [1]):
            resp = requests.post(f"{srv.url}/admin/variants", json=bad)
            assert resp.status_code == 400 and resp.json()["error"], bad

        # And through `hpt serve-weights`, by name, or as --variant names them.
        done = hpt_cli("serve-weights", "--url", srv.url, f"{best}=1", f"{other}=0")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["variants"][other]["weight"] == 0.0
        assert {v for _, v, _, _ in fire(srv.url, payloads(100))} == {best}
        done = hpt_cli("serve-weights", "--url", srv.url, "best=0",
                       f"{experiment['numbers'][other]}=1")
        assert done.returncode == 0, done.stderr
        assert {v for _, v, _, _ in fire(srv.url, payloads(20))} == {other}
        done = hpt_cli("serve-weights", "--url", srv.url, f"{best}=1", f"{other}=0")
        assert done.returncode == 0, done.stderr
        missing = requests.get(f"{srv.url}/nope")
        assert missing.status_code == 404 and "POST /invocations" in missing.json()["error"]
        assert requests.get(f"{srv.url}/invocations").status_code == 405
        done = hpt_cli("serve-weights", "--url", srv.url, "nope=1")
        assert done.returncode == 2 and "unknown variant" in done.stderr
        assert "Traceback" not in done.stderr

        text = requests.get(f"{srv.url}/metrics").text
        assert f'hpt_serving_variant_weight{{variant="{other}"}} 0.0' in text
        assert srv.stop(signal.SIGINT) == 130
    assert "serving programs ended" in srv.lines[-1]
    assert no_standin_left(experiment)
    log = (experiment["root"] / "serving" / "access.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in log if '"latency_ms"' in line]
    assert len(records) >= n + 200 and {"variant", "status", "latency_ms"} <= set(records[-1])


def test_a_relative_experiments_folder_serves(experiment):
    # The model folder reaches the serving program as an absolute path: it runs in its own
    # working directory (the trainer's source_dir).
    with Serving(experiment, cwd=experiment["dir"].parent) as srv:
        assert requests.get(f"{srv.url}/ping").status_code == 200
        assert srv.invoke([[1, 2]]).json()["predictions"] == [3]
        assert srv.stop() == 0


def test_ping_is_503_until_the_models_answer(experiment):
    with Serving(experiment) as srv:  # the router only listens once every model is loaded
        assert requests.get(f"{srv.url}/ping").json()["variants"] == [experiment["best"]]
        # A serving program gone: /ping says so, invocations are 502 counted as its errors.
        backend = next(line.split()[-3] for line in srv.lines if experiment["best"] in line
                       and "http://" in line)
        port = int(backend.rsplit(":", 1)[1])
        (pid,) = [p for p in processes_in(experiment["root"] / "serving" / experiment["best"])
                  if b"serve.py" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert port and pid
        os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
        ping = requests.get(f"{srv.url}/ping")
        assert ping.status_code == 503 and experiment["best"] in ping.json()["error"]
        resp = srv.invoke([[1]])
        assert resp.status_code == 502 and "did not answer" in resp.json()["error"]
        assert resp.headers[VARIANT] == experiment["best"]
        text = requests.get(f"{srv.url}/metrics").text
        assert 'code="502"' in text
        assert srv.stop() == 0


def test_payload_over_6mb_is_413(experiment):
    with Serving(experiment) as srv:
        resp = srv.session.post(f"{srv.url}/invocations", data=b"x" * (6 * 1024 * 1024 + 1),
                                headers={"Content-Type": "application/json"})
        assert resp.status_code == 413 and "6 MB" in resp.json()["error"]
        assert srv.invoke([[1, 2]]).status_code == 200
        bad = srv.session.post(f"{srv.url}/invocations", data=b"{not json",
                               headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and "error" in bad.json()  # the model's 4xx, passed on


@pytest.mark.parametrize("mode", ["fail", "slow2"])
def test_shadow_never_changes_or_delays_the_response(experiment, mode):
    best, shadow = experiment["best"], experiment["others"][1]
    work = payloads(80)
    with Serving(experiment) as plain:
        expected = [plain.invoke(p).content for p in work]
    with Serving(experiment, "--shadow", shadow, modes={shadow: mode}) as srv:
        got, seconds = [], []
        for p in work:
            start = time.perf_counter()
            resp = srv.invoke(p)
            seconds.append(time.perf_counter() - start)
            assert resp.status_code == 200 and resp.headers[VARIANT] == best
            got.append(resp.content)
        assert got == expected  # byte for byte what the variant says without a shadow
        # The shadow sleeps 2 s per request; the client never waits for it.
        assert sorted(seconds)[int(len(seconds) * 0.99) - 1] < 1.0, max(seconds)
        assert sum(seconds) < 20
        admin = requests.get(f"{srv.url}/admin/variants").json()["shadow"]
        assert srv.stop() == 0
    records = [json.loads(line) for line in
               (experiment["root"] / "serving" / "shadow.jsonl").read_text().splitlines()]
    mine = records[-len(work):]
    assert len(mine) == len(work)  # every copy accounted for: answered, failed or dropped
    assert all(r["shadow"] == shadow for r in mine)
    if mode == "fail":
        assert {r["outcome"] for r in mine} == {"error"}
        assert {r["shadow_status"] for r in mine} == {500} and admin["agreement"] is None
    else:
        # Over the in-flight bound (64 copies of 2 s each) copies are dropped, never queued.
        answered = [r for r in mine if r["outcome"] == "ok"]
        assert {r["outcome"] for r in mine} <= {"ok", "dropped"} and answered
        assert all(r["agree"] is True and r["shadow_latency_ms"] >= 2000 for r in answered)
        assert admin["counts"]["dropped"] == len(mine) - len(answered)


def test_shadow_agreement_is_recorded(experiment):
    shadow = experiment["others"][0]
    with Serving(experiment, "--shadow", shadow, modes={shadow: "other"}) as srv:
        for p in payloads(30):
            assert srv.invoke(p).status_code == 200
        deadline = time.time() + 10
        while time.time() < deadline:
            admin = requests.get(f"{srv.url}/admin/variants").json()["shadow"]
            if admin["compared"] == 30:
                break
            time.sleep(0.1)
        assert admin["agreement"] == 0.0 and admin["counts"]["ok"] == 30
        parser = pytest.importorskip("prometheus_client.parser")
        families = {f.name: f for f in parser.text_string_to_metric_families(
            requests.get(f"{srv.url}/metrics").text)}
        assert families["hpt_serving_shadow_agreement_ratio"].samples[0].value == 0.0
        outcomes = {s.labels["outcome"]: s.value
                    for s in families["hpt_serving_shadow_requests"].samples}
        assert outcomes == {"ok": 30, "error": 0, "dropped": 0}
        latency = {s.labels.get("quantile"): s.value
                   for s in families["hpt_serving_shadow_latency_seconds"].samples
                   if "quantile" in s.labels}
        assert set(latency) == {"0.5", "0.9", "0.99"} and latency["0.99"] > 0
    # The shadow's output is recorded, beside production's where they differ.
    records = [json.loads(line) for line in
               (experiment["root"] / "serving" / "shadow.jsonl").read_text().splitlines()]
    mine = [r for r in records if r["shadow"] == shadow and r["outcome"] == "ok"][-30:]
    assert len(mine) == 30 and all(r["agree"] is False for r in mine)
    assert all(r["shadow_output"] == [(label + 1) % 10 for label in r["production_output"]]
               for r in mine)


def drive_canary(srv, limit=60):
    """Sends traffic until the rollout ends; returns the final /admin/canary."""
    deadline = time.time() + limit
    work = payloads(50)
    while time.time() < deadline:
        fire(srv.url, work, concurrency=4)
        state = requests.get(f"{srv.url}/admin/canary").json()
        if state["state"] != "Baking":
            return state
    raise AssertionError(f"canary still baking after {limit} s: {state}")


def test_failing_canary_is_rolled_back(experiment):
    best, green = experiment["best"], experiment["others"][0]
    with Serving(experiment, "--canary", green, "--canary-steps", "10,50,100",
                 "--bake-seconds", "2", "--max-error-rate", "0.05", "--min-requests", "10",
                 modes={green: "fail50"}) as srv:
        state = drive_canary(srv)
        assert state["state"] == "RolledBack" and state["step_percent"] == 0
        assert state["reason"].startswith("canary rolled back at step 10%: error rate ")
        weights = {k: v["weight"] for k, v in
                   requests.get(f"{srv.url}/admin/variants").json()["variants"].items()}
        assert weights == {best: 1.0, green: 0.0}
        # From now on only blue answers: no client sees the failing model again.
        assert {(s, v) for s, v, _, _ in fire(srv.url, payloads(50))} == {(200, best)}
        text = requests.get(f"{srv.url}/metrics").text
        assert f'hpt_serving_canary_state{{green="{green}",state="RolledBack"}} 1.0' in text
        resp = requests.post(f"{srv.url}/admin/variants", json={green: 1})
        assert resp.status_code == 200  # once the rollout ended, weights are the user's again
        assert srv.stop() == 0
    assert any(line.startswith("canary rolled back at step 10%: error rate")
               and "> 0.05 over" in line for line in srv.lines)


def test_healthy_canary_is_promoted(experiment):
    best, green = experiment["best"], experiment["others"][1]
    with Serving(experiment, "--canary", green, "--canary-steps", "10,50,100",
                 "--bake-seconds", "1", "--max-error-rate", "0.05", "--max-p99-ms", "2000",
                 "--min-requests", "5") as srv:
        weights = requests.get(f"{srv.url}/admin/variants").json()["variants"]
        assert weights[green]["weight"] == pytest.approx(0.1) and weights[best]["weight"] == pytest.approx(0.9)
        assert requests.post(f"{srv.url}/admin/variants", json={best: 1}).status_code == 409
        state = drive_canary(srv)
        assert state["state"] == "Promoted", state
        assert {v for _, v, _, _ in fire(srv.url, payloads(30))} == {green}
        assert srv.stop() == 0
    assert any("canary promoted" in line for line in srv.lines)
    assert any("now gets 50%" in line for line in srv.lines)


def test_bad_input_is_exit_2_with_one_line_and_nothing_started(experiment, tmp_path):
    d = ["--experiments-dir", experiment["dir"]]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases = [
            (["serve", "nope", *d], "no tuning job 'nope'"),
            (["serve", "srv", "--trial", "99", *d], "--trial 99"),
            (["serve", "srv", "--variant", "best=-1", *d], "--variant best"),
            (["serve", "srv", "--variant", "best=0", *d], "weight > 0"),
            (["serve", "srv", "--canary", "1", *d], "--max-error-rate"),
            (["serve", "srv", "--entry-point", tmp_path / "none.py", *d], "--entry-point"),
            (["serve", "srv", "--port", port, *d], f"--port {port}"),
            (["serve-weights", "--url", f"http://127.0.0.1:{port}", "x=-2"], "serve-weights x"),
            (["serve", "srv", "--runtime", "docker", *d], "no trainer.image; pass --image"),
            (["serve", "srv", "--runtime", "local", "--image", "i:1", *d], "--image i:1"),
            (["serve", "srv", "--image", "i:1", "--entry-point", STANDIN, *d], "--entry-point"),
            (["serve", "srv", "--port", "99999", *d], "--port 99999"),
            (["serve", "srv", "--variant", "2=abc", *d], "e.g. --variant 2=0.9"),
            (["serve", "srv", "--shadow", "1", "--shadow", "2", *d], "one --shadow"),
            (["serve", "srv", "--bake-seconds", "5", *d], "--bake-seconds describe a canary"),
            (["serve", "srv", "--start-timeout", "-1", *d], "--start-timeout -1"),
        ]
        for args, words in cases:
            done = hpt_cli(*args)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and words in done.stderr, (args, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert "starting" not in done.stdout
    done = hpt_cli("serve-weights", "--url", f"http://127.0.0.1:{port}", "x=1")  # closed now
    assert done.returncode == 2 and "no hpt serve answers" in done.stderr
    assert no_standin_left(experiment)


FAKE_DOCKER = r"""#!{python}
# A stand-in `docker` (no engine here): records its calls and plays the container's part for
# `run ... IMAGE serve` by running the stand-in serving program as the image's `serve` would.
import json, os, signal, sys
state = os.environ["FAKE_DOCKER_STATE"]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "run":
    name = args[args.index("--name") + 1]
    host_ip, host_port, inner = args[args.index("--publish") + 1].split(":")
    source, target, mode = args[args.index("--volume") + 1].split(":")
    assert (inner, target, mode, args[-1]) == ("8080", "/opt/ml/model", "ro", "serve"), args
    env = dict(a.split("=", 1) for i, a in enumerate(args) if i and args[i - 1] == "--env")
    with open(os.path.join(state, name + ".pid"), "w") as f:
        f.write(str(os.getpid()))
    env = {{**os.environ, **env, "SM_MODEL_DIR": source, "SAGEMAKER_BIND_TO_PORT": host_port,
           "HPT_SERVE_HOST": host_ip}}
    os.execve(sys.executable, [sys.executable, {standin!r}, "serve"], env)
elif cmd == "stop":
    try:
        os.kill(int(open(os.path.join(state, args[-1] + ".pid")).read()), signal.SIGTERM)
    except (OSError, ValueError):
        pass
"""


def test_models_serve_in_containers_from_the_image(experiment, tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(FAKE_DOCKER.format(python=sys.executable, standin=str(STANDIN)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))
    best = experiment["best"]
    with Serving(experiment, "--image", "hpt-cnn:test") as srv:
        assert requests.get(f"{srv.url}/ping").status_code == 200
        resp = srv.invoke([[1, 2], [3, 4]])
        assert resp.status_code == 200 and resp.json()["predictions"] == [3, 7]
        assert resp.headers["X-Amzn-Invoked-Production-Variant"] == best
        assert any("docker run hpt-cnn:test serve" in line for line in srv.lines)
        assert srv.stop() == 0
    calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
    (run,) = [c for c in calls if c[0] == "run"]
    assert run[:5] == ["run", "--rm", "--init", "--name", f"{best}-serve"]
    assert run[run.index("--publish") + 1].startswith("127.0.0.1:")  # loopback only
    assert run[run.index("--volume") + 1] == \
        f"{experiment['root'] / 'serving' / best / 'model'}:/opt/ml/model:ro"
    assert run[-2:] == ["hpt-cnn:test", "serve"]
    assert ["stop", "-t", "5", f"{best}-serve"] in calls
    assert ["rm", "--force", f"{best}-serve"] in calls  # no container left behind
    assert no_standin_left(experiment)
    # hpt serve SIGKILLed: the engine keeps a container whose CLI died; the reaper removes it.
    (state / "calls.jsonl").unlink()
    srv = Serving(experiment, "--image", "hpt-cnn:test")
    assert requests.get(f"{srv.url}/ping").status_code == 200
    srv.proc.kill()
    srv.proc.wait(timeout=10)
    removal = ["rm", "--force", f"{best}-serve"]
    deadline = time.time() + 15
    while time.time() < deadline and removal not in [
            json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]:
        time.sleep(0.1)
    assert removal in [json.loads(line) for line in
                       (state / "calls.jsonl").read_text().splitlines()]
    assert no_standin_left(experiment)


def test_a_serving_program_that_crashes_is_reported_with_its_log(experiment):
    best = experiment["best"]
    done = hpt_cli("serve", "srv", "--experiments-dir", experiment["dir"], "--port", "0",
                   env={"STANDIN_MODES": json.dumps({best: "crash"})})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "crashing on purpose" in done.stderr and "serve.log" in done.stderr
    assert no_standin_left(experiment)
    # A program that runs but cannot load its model says so on /ping: reported at once,
    # not after --start-timeout.
    started = time.time()
    done = hpt_cli("serve", "srv", "--experiments-dir", experiment["dir"], "--port", "0",
                   env={"STANDIN_MODES": json.dumps({best: "loadfail"})})
    assert done.returncode == 1 and time.time() - started < 30
    assert f"could not load its model: OSError: no weights for {best}" in done.stderr
    assert no_standin_left(experiment)


def test_a_killed_hpt_serve_leaves_no_serving_program(experiment):
    # SIGKILL gives hpt serve no chance to stop its models: the reaper sidecar does it.
    srv = Serving(experiment)
    assert requests.get(f"{srv.url}/ping").status_code == 200
    assert not no_standin_left(experiment)
    srv.proc.kill()
    srv.proc.wait(timeout=10)
    deadline = time.time() + 10
    while not no_standin_left(experiment) and time.time() < deadline:
        time.sleep(0.1)
    assert no_standin_left(experiment)


def test_no_completed_trial_is_exit_2(ray_session, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(REPO / "tests" / "trainers" / "faulty" / "train.py", code / "train.py")
    launch(tiny_space(tmp_path, "allfail", code, static_hyperparameters={"mode": "fail"},
                      limits={"max_trials": 1, "max_parallel": 1}), tmp_path / "exp",
           dashboard=False)
    done = hpt_cli("serve", "allfail", "--experiments-dir", tmp_path / "exp")
    assert done.returncode == 2 and "no completed training job" in done.stderr
    assert not (tmp_path / "exp" / "allfail" / "serving").exists()


@pytest.mark.skipif(not CNN_SERVE.is_file(), reason="trainers/cnn/serve.py is not written yet "
                    "(the CNN's serving program comes with its own change)")
def test_the_cnn_served_end_to_end(ray_session, tmp_path):
    import io

    import numpy as np

    spec = tiny_space(tmp_path, "cnn-serve", REPO / "trainers" / "cnn",
                      static_hyperparameters={"epochs": 1},
                      hyperparameters={"lr": {"type": "continuous", "min": 0.01, "max": 0.05}},
                      channels={"train": str(REPO / "data" / "digits" / "train"),
                                "test": str(REPO / "data" / "digits" / "test")},
                      metric_definitions=[{"name": "validation:accuracy",
                                           "regex": "val_acc=([0-9.]+)"}],
                      limits={"max_trials": 2, "max_parallel": 2})
    result = launch(spec, tmp_path / "exp", dashboard=False)
    assert result.counts.get("Completed") == 2, result.counts
    proc = subprocess.Popen([sys.executable, "-m", "hpt.cli.main", "serve", "cnn-serve",
                             "--experiments-dir", str(tmp_path / "exp"), "--port", "0",
                             "--shadow", "2" if "001" in result.best["TrainingJobName"] else "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in proc.stdout:
            if " at http://" in line:
                url = line.split(" at ", 1)[1].split()[0]
                break
        assert url, "hpt serve did not start"
        x = np.load(REPO / "data" / "digits" / "test" / "data.npz")["x"][:8]
        resp = requests.post(f"{url}/invocations", json={"instances": x.tolist()}, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["predictions"]) == 8 and all(0 <= p <= 9 for p in body["predictions"])
        assert len(body["probabilities"]) == 8
        buf = io.BytesIO()
        np.save(buf, x)
        npy = requests.post(f"{url}/invocations", data=buf.getvalue(),
                            headers={"Content-Type": "application/x-npy"}, timeout=30)
        assert npy.status_code == 200 and npy.json()["predictions"] == body["predictions"]
        bad = requests.post(f"{url}/invocations", json={"nope": 1}, timeout=30)
        assert 400 <= bad.status_code < 500 and "error" in bad.json()
        # The whole test channel through the endpoint scores what the training job reported.
        test = np.load(REPO / "data" / "digits" / "test" / "data.npz")
        whole = requests.post(f"{url}/invocations", json={"instances": test["x"].tolist()},
                              timeout=60)
        served = whole.headers["X-Amzn-Invoked-Production-Variant"]
        assert served == result.best["TrainingJobName"]  # no --variant: the best one
        accuracy = float(np.mean(np.array(whole.json()["predictions"]) == test["y"]))
        assert accuracy == pytest.approx(result.best["FinalObjectiveValue"], abs=1e-6)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
