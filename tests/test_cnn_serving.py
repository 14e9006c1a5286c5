"""The CNN trainer's serving contract (trainers/cnn/inference.py + serve.py), for real: a model
trained by train.py as a subprocess, served by `serve.py serve` as a subprocess on 127.0.0.1,
queried over HTTP; the served labels must be exactly the trainer's own evaluation."""

import importlib.util
import inspect
import io
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from prepare_data import ensure_prepared

REPO = Path(__file__).resolve().parent.parent
CNN_DIR = REPO / "trainers" / "cnn"
TRAIN_PY, SERVE_PY, INFERENCE_PY = (CNN_DIR / name for name in ("train.py", "serve.py",
                                                                 "inference.py"))
DIGITS = REPO / "data" / "digits"
MAX_BODY_BYTES = 6 * 1024 * 1024


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


inference = _load_module("cnn_inference_under_test", INFERENCE_PY)
serve = _load_module("cnn_serve_under_test", SERVE_PY)
train = _load_module("cnn_train_for_serving_tests", TRAIN_PY)


def _npy(array, **save_kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, **save_kwargs)
    return buffer.getvalue()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """`python serve.py serve` on a free 127.0.0.1 port, its stdout/stderr in files."""

    def __init__(self, model_dir, log_dir):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = Path(log_dir) / f"serve-{self.port}.stdout"
        self.stderr_path = Path(log_dir) / f"serve-{self.port}.stderr"
        env = dict(os.environ, SM_MODEL_DIR=str(model_dir),
                   SAGEMAKER_BIND_TO_PORT=str(self.port), HPT_SERVE_HOST="127.0.0.1")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(SERVE_PY), "serve"], env=env,
                                         cwd=log_dir, stdout=out, stderr=err)
        self.pings = []  # (status, body) of every /ping answered while waiting

    def stderr(self):
        return self.stderr_path.read_text()

    def ping(self):
        try:
            response = requests.get(f"{self.url}/ping", timeout=5)
        except requests.ConnectionError:
            return None  # not listening yet
        self.pings.append((response.status_code, response.json()))
        return response

    def wait_for_ping(self, until, timeout=30.0):
        """Polls /ping until `until(response)`; returns that response."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve.py exited {self.proc.returncode}:\n" \
                                             f"{self.stderr()}"
            response = self.ping()
            if response is not None and until(response):
                return response
            time.sleep(0.05)
        raise AssertionError(f"/ping never got there in {timeout}s; pings {self.pings[-3:]}\n"
                             f"{self.stderr()}")

    def invoke(self, body, content_type="application/json", accept=None):
        headers = {"Content-Type": content_type}
        if accept is not None:
            headers["Accept"] = accept
        return requests.post(f"{self.url}/invocations", data=body, headers=headers, timeout=30)

    def access_log(self):
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines()]

    def stop(self, timeout=15):
        """SIGTERM; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


# --------------------------------------------------------------------------------------------
# Fixtures: one trained model and one server for the module


@pytest.fixture(scope="module")
def test_channel():
    ensure_prepared(DIGITS, "plain", 0)
    with np.load(DIGITS / "test" / "data.npz") as data:
        return data["x"], data["y"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, test_channel):
    base = tmp_path_factory.mktemp("cnn-serving")
    env = dict(os.environ, SM_CHANNEL_TRAIN=str(DIGITS / "train"),
               SM_CHANNEL_TEST=str(DIGITS / "test"), SM_MODEL_DIR=str(base / "model"),
               SM_OUTPUT_DIR=str(base / "output"), SM_NUM_CPUS="1")
    done = subprocess.run([sys.executable, str(TRAIN_PY), "--epochs", "2"], env=env, cwd=base,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return base / "model"


@pytest.fixture(scope="module")
def reference(model_dir, test_channel):
    """The trainer's own evaluation: SmallCNN rebuilt as train.py builds it, argmax labels."""
    x, y = test_channel
    config = json.loads((model_dir / "model_config.json").read_text())
    kwargs = {name: config[name] for name in inspect.signature(train.SmallCNN).parameters}
    model = train.SmallCNN(**kwargs)
    model.load_state_dict(torch.load(model_dir / "model.pth", weights_only=True))
    model.eval()
    with torch.no_grad():
        labels = model(torch.from_numpy(x)).argmax(1).tolist()
    assert train.accuracy(model, torch.from_numpy(x), torch.from_numpy(y)) == \
        config["final_val_acc"]
    return {"labels": labels, "final_val_acc": config["final_val_acc"]}


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    process = ServeProcess(model_dir, tmp_path_factory.mktemp("serve-logs"))
    process.wait_for_ping(lambda response: response.status_code == 200)
    yield process
    process.stop()


# --------------------------------------------------------------------------------------------
# Training output and the handler's architecture


def test_training_puts_the_handler_into_the_model_dir(model_dir):
    for name in ("inference.py", "model.py"):
        bundled = model_dir / "code" / name
        assert bundled.is_file()
        assert bundled.read_bytes() == (CNN_DIR / name).read_bytes()


def test_handler_and_trainer_share_one_smallcnn():
    assert inference.SmallCNN is train.SmallCNN  # model.py's, imported by both


def test_models_code_folder_alone_serves_it(model_dir, tmp_path):
    # As SageMaker's PyTorch serving container loads it: only <model>/code on sys.path, the
    # handler imported as `inference`, which finds the architecture in model.py beside it.
    program = ("import sys; sys.path.insert(0, sys.argv[1]); import inference; "
               "model = inference.model_fn(sys.argv[2]); "
               "print(type(model).__module__, type(model).__name__)")
    result = subprocess.run([sys.executable, "-I", "-c", program, str(model_dir / "code"),
                             str(model_dir)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["model", "SmallCNN"]


# --------------------------------------------------------------------------------------------
# The served model, over HTTP


def test_ping_is_503_while_loading_then_200(server, model_dir):
    statuses = [status for status, _ in server.pings]
    assert statuses[-1] == 200 and set(statuses) <= {200, 503}
    for status, body in server.pings:
        if status == 503:
            assert body["status"] == "loading" and body["error"]
    assert server.pings[-1][1] == {"status": "healthy",
                                   "handler": str(model_dir / "code" / "inference.py")}


def test_json_predictions_are_the_trainers(server, test_channel, reference):
    x, y = test_channel
    response = server.invoke(json.dumps({"instances": x.tolist()}))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["predictions"] == reference["labels"]
    assert sum(p == t for p, t in zip(body["predictions"], y.tolist())) / len(y) == \
        reference["final_val_acc"]
    probabilities = np.array(body["probabilities"])
    assert probabilities.shape == (len(y), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", ["N,C,H,W", "N,H,W", "N,H*W"])
def test_npy_predictions_are_the_trainers(server, test_channel, reference, shape):
    x, y = test_channel
    array = {"N,C,H,W": x, "N,H,W": x[:, 0], "N,H*W": x.reshape(len(x), -1)}[shape]
    response = server.invoke(_npy(array), "application/x-npy", accept="*/*")
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert predictions == reference["labels"]
    assert sum(p == t for p, t in zip(predictions, y.tolist())) / len(y) == \
        reference["final_val_acc"]


@pytest.mark.parametrize("form", ["C,H,W", "H,W", "flat"])
def test_a_single_instance(server, test_channel, reference, form):
    image = test_channel[0][7]
    instance = {"C,H,W": image, "H,W": image[0], "flat": image.reshape(-1)}[form]
    response = server.invoke(json.dumps(instance.tolist()))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [reference["labels"][7]]


ONE_IMAGE = [[[0.5] * 8] * 8]
ERRORS = {
    "csv content type": (415, "text/csv", b"1,2,3", None, "Content-Type"),
    "wrong shape": (400, "application/json", json.dumps({"instances": [[1.0, 2.0, 3.0]]}),
                    None, "[1, 8, 8]"),
    "NaN pixel": (400, "application/json", '{"instances": [[[NaN, 0, 0, 0, 0, 0, 0, 0]]]}',
                  None, "NaN"),
    "malformed JSON": (400, "application/json", '{"instances": [[1, 2', None, "malformed JSON"),
    "no instances key": (400, "application/json", '{"inputs": [1]}', None, "instances"),
    "pickled npy": (400, "application/x-npy", _npy(np.array([{"x": 1}], dtype=object),
                                                   allow_pickle=True), None, "object"),
    "a raw pickle as npy": (400, "application/x-npy", pickle.dumps([1.0] * 64), None, ".npy"),
    "csv accept": (406, "application/json", json.dumps(ONE_IMAGE), "text/csv", "Accept"),
    "too many instances": (413, "application/x-npy", _npy(np.zeros((10_001, 64), np.float32)),
                           None, "at most 10000"),
    "7 MB body": (413, "application/json", b" " * 7_000_000, None, "limit"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_say_what_was_expected(server, name):
    status, content_type, body, accept, fragment = ERRORS[name]
    response = server.invoke(body, content_type, accept)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert fragment in message and "\n" not in message


def test_unknown_routes_and_methods_answer_json(server):
    for method, path, status in (("GET", "/invocations", 405), ("GET", "/predict", 404)):
        response = requests.request(method, f"{server.url}{path}", timeout=10)
        assert response.status_code == status
        assert path in response.json()["error"]


def test_access_log_is_one_json_line_per_request(server):
    body = json.dumps(ONE_IMAGE).encode()
    response = server.invoke(body, "application/json; charset=utf-8")
    assert response.status_code == 200
    deadline = time.monotonic() + 5  # the line is written as the response finishes
    while time.monotonic() < deadline:
        mine = [line for line in server.access_log()
                if line["content_type"] == "application/json; charset=utf-8"]
        if mine:
            break
        time.sleep(0.05)
    assert len(mine) == 1
    assert set(mine[0]) == {"time", "method", "path", "status", "latency_ms", "bytes_in",
                            "bytes_out", "content_type"}
    assert mine[0]["method"] == "POST" and mine[0]["path"] == "/invocations"
    assert mine[0]["status"] == 200 and mine[0]["bytes_in"] == len(body)
    assert mine[0]["bytes_out"] == len(response.content)
    assert isinstance(mine[0]["latency_ms"], float) and mine[0]["latency_ms"] > 0
    assert any(line["path"] == "/ping" for line in server.access_log())


# --------------------------------------------------------------------------------------------
# Which handler, failures, SIGTERM


CUSTOM_HANDLER_TAIL = '''

# --- test: a modified copy, marked so the test can tell it served the request --------------
import time as _time

_trainer_model_fn, _trainer_output_fn = model_fn, output_fn


def model_fn(model_dir):
    _time.sleep(1.0)  # long enough for /ping to be seen answering 503 "loading"
    return _trainer_model_fn(model_dir)


def output_fn(prediction, accept):
    body, content_type = _trainer_output_fn(prediction, accept)
    return json.dumps({**json.loads(body), "served_by": "model_dir/code"}).encode(), content_type
'''


def test_model_code_handler_wins_and_sigterm_exits_0(model_dir, tmp_path, test_channel,
                                                     reference):
    custom_model = tmp_path / "model"
    shutil.copytree(model_dir, custom_model)
    handler = custom_model / "code" / "inference.py"
    handler.write_text(handler.read_text() + CUSTOM_HANDLER_TAIL)

    process = ServeProcess(custom_model, tmp_path)
    try:
        loading = process.wait_for_ping(lambda response: True)
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        ready = process.wait_for_ping(lambda response: response.status_code == 200)
        assert ready.json()["handler"] == str(handler)
        response = process.invoke(_npy(test_channel[0][:5]), "application/x-npy")
        assert response.status_code == 200, response.text
        assert response.json()["served_by"] == "model_dir/code"
        assert response.json()["predictions"] == reference["labels"][:5]
    finally:
        returncode = process.stop()
    assert returncode == 0, process.stderr()
    assert "stopped by SIGTERM" in process.stderr()


def test_failed_load_keeps_ping_503_with_the_reason(model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    shutil.rmtree(broken / "code")  # no handler in the model: the one beside serve.py
    config = json.loads((broken / "model_config.json").read_text())
    (broken / "model_config.json").write_text(json.dumps({**config, "architecture": "ResNet"}))

    process = ServeProcess(broken, tmp_path)
    try:
        failed = process.wait_for_ping(lambda response: response.json()["status"] == "failed")
        assert failed.status_code == 503
        assert "'ResNet'" in failed.json()["error"]
        assert failed.json()["handler"] == str(INFERENCE_PY)
        response = process.invoke(json.dumps(ONE_IMAGE))
        assert response.status_code == 503 and "failed to load" in response.json()["error"]
    finally:
        returncode = process.stop()
    assert returncode == 0
    assert "ResNet" in process.stderr()


def test_serve_refuses_unknown_arguments():
    done = subprocess.run([sys.executable, str(SERVE_PY), "train"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "usage" in done.stderr


# --------------------------------------------------------------------------------------------
# The handler functions and the settings, as pure functions


def test_input_fn_json_forms():
    image = np.arange(64, dtype=np.float32).reshape(1, 8, 8) / 64
    for body in (json.dumps({"instances": [image.tolist()]}), json.dumps([image.tolist()]),
                 json.dumps([image.reshape(-1).tolist()]).encode()):
        data = inference.input_fn(body, "application/json")
        assert data.dtype == np.float32
        np.testing.assert_array_equal(inference.as_batch(data, (1, 8, 8)), image[None])
    data = inference.input_fn(json.dumps(image[0].tolist()), "Application/JSON; charset=utf-8")
    assert inference.as_batch(data, (1, 8, 8)).shape == (1, 1, 8, 8)


def test_input_fn_npy_keeps_values_and_rejects_lies():
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(inference.input_fn(_npy(x), "application/x-npy"), x)
    ints = inference.input_fn(_npy(np.ones((2, 64), np.int64)), "application/x-npy")
    assert ints.dtype == np.float32 and ints.shape == (2, 64)
    # a header that claims far more data than the body holds is refused before np.load
    # allocates it
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    header = header.ljust(117) + "\n"
    lying = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    with pytest.raises(inference.BadPayload, match="more than the body holds"):
        inference.input_fn(lying, "application/x-npy")


@pytest.mark.parametrize("body, content_type, error, fragment", [
    (b"1,2", "text/csv", inference.UnsupportedContentType, "application/x-npy"),
    (b"[]", "application/json", inference.BadPayload, "no instance"),
    (b'[["a"]]', "application/json", inference.BadPayload, "only numbers"),
    (b"[[1, 2], [3]]", "application/json", inference.BadPayload, "rectangular"),
    (b"[Infinity]", "application/json", inference.BadPayload, "finite"),
    (b"[1e39]", "application/json", inference.BadPayload, "finite"),  # beyond float32
    (b"42", "application/json", inference.BadPayload, "list of images"),
    (_npy(np.array(["a"])), "application/x-npy", inference.BadPayload, "not numbers"),
    (_npy(np.ones(4))[:-8], "application/x-npy", inference.BadPayload, "more than the body"),
])
def test_input_fn_errors(body, content_type, error, fragment):
    with pytest.raises(error, match=fragment) as caught:
        inference.input_fn(body, content_type)
    assert caught.value.status_code == {inference.UnsupportedContentType: 415,
                                        inference.BadPayload: 400}[error]


def test_as_batch_shapes_and_limits():
    assert inference.as_batch(np.zeros((5, 8, 8), np.float32), (1, 8, 8)).shape == (5, 1, 8, 8)
    assert inference.as_batch(np.zeros((2, 3, 4, 4), np.float32), (3, 4, 4)).shape == \
        (2, 3, 4, 4)
    with pytest.raises(inference.BadPayload, match=r"\[3, 4, 4\] or \[48\]"):
        inference.as_batch(np.zeros((2, 4, 4), np.float32), (3, 4, 4))  # [H, W] needs C == 1
    with pytest.raises(inference.TooManyInstances) as caught:
        inference.as_batch(np.zeros((inference.MAX_INSTANCES + 1, 64), np.float32), (1, 8, 8))
    assert caught.value.status_code == 413


def test_output_fn():
    prediction = {"predictions": np.array([3, 1]),
                  "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)}
    expected = {"predictions": [3, 1], "probabilities": [[0.25, 0.75], [0.5, 0.5]]}
    for accept in (None, "", "*/*", "application/json", "text/html, application/*;q=0.5"):
        body, content_type = inference.output_fn(prediction, accept)
        assert content_type == "application/json" and json.loads(body) == expected
    for accept in ("text/csv", "application/json;q=0"):
        with pytest.raises(inference.UnsupportedAccept, match="application/json") as caught:
            inference.output_fn(prediction, accept)
        assert caught.value.status_code == 406


def test_settings_from_env():
    defaults = serve.settings_from_env({})
    assert (defaults.model_dir, defaults.host, defaults.port) == ("/opt/ml/model", "0.0.0.0", 8080)
    given = serve.settings_from_env({"SM_MODEL_DIR": "/m", "SAGEMAKER_BIND_TO_PORT": "9001",
                                     "HPT_SERVE_HOST": "127.0.0.1"})
    assert (given.model_dir, given.host, given.port) == ("/m", "127.0.0.1", 9001)
    for bad in ("http", "0", "70000"):
        with pytest.raises(ValueError, match="SAGEMAKER_BIND_TO_PORT"):
            serve.settings_from_env({"SAGEMAKER_BIND_TO_PORT": bad})
