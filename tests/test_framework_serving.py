"""hpt/serving/framework.py against its references, the `sagemaker-inference` toolkit and the
PyTorch default handler of `sagemaker-pytorch-inference`: the same decoding, encoding and
defaults, and the same choice of user functions."""

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
decoder = pytest.importorskip("sagemaker_inference.decoder")
from sagemaker_inference import encoder, errors  # noqa: E402
from sagemaker_pytorch_serving_container.default_pytorch_inference_handler import (  # noqa: E402
    DefaultPytorchInferenceHandler)

from hpt.serving import framework  # noqa: E402

REFERENCE = DefaultPytorchInferenceHandler()
ARRAY = np.arange(12, dtype=np.float32).reshape(3, 4) / 7


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("content_type,body", [
    ("application/json", json.dumps(ARRAY.tolist())),
    ("text/csv", "1,2,3\n4,5,6\n"),
    ("application/x-npy", _npy(ARRAY)),
])
def test_decoding_and_the_default_input_fn_match_the_toolkit(content_type, body):
    np.testing.assert_array_equal(framework.decode(body, content_type),
                                  decoder.decode(body, content_type))
    ours, theirs = framework.default_input_fn(body, content_type), REFERENCE.default_input_fn(
        body, content_type)
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)


@pytest.mark.parametrize("accept", ["application/json", "text/csv", "application/x-npy",
                                    "text/html, application/x-npy", "application/json,text/csv"])
def test_the_default_output_fn_matches_the_toolkit(accept):
    prediction = torch.tensor(ARRAY)
    assert framework.default_output_fn(prediction, accept) == \
        REFERENCE.default_output_fn(prediction, accept)


def test_unsupported_types_are_refused_with_the_toolkits_message():
    for call, reference in ((lambda: framework.decode(b"x", "text/plain"),
                             lambda: decoder.decode(b"x", "text/plain")),
                            (lambda: framework.default_output_fn([1], "text/html"),
                             lambda: REFERENCE.default_output_fn([1], "text/html"))):
        with pytest.raises(framework.UnsupportedFormatError) as ours:
            call()
        with pytest.raises(errors.UnsupportedFormatError) as theirs:
            reference()
        assert str(ours.value).split() == str(theirs.value).split()  # modulo its indentation
    for kind in ("application/json", "text/csv", "application/x-npy"):
        assert framework.encode([[1.0, 2.0]], kind) == encoder.encode([[1.0, 2.0]], kind)


def test_the_default_model_fn_loads_torchscript_as_the_toolkit_does(tmp_path):
    model = torch.jit.script(torch.nn.Linear(4, 2))
    model.save(str(tmp_path / "model.pt"))
    x = torch.tensor(ARRAY)
    ours = framework.default_predict_fn(x, framework.default_model_fn(str(tmp_path)))
    theirs = REFERENCE.default_predict_fn(x, REFERENCE.default_model_fn(str(tmp_path)))
    assert torch.allclose(ours, theirs)
    (tmp_path / "model.pt").unlink()
    (tmp_path / "a.pth").write_bytes(b"")
    (tmp_path / "b.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="Exactly one"):
        framework.default_model_fn(str(tmp_path))


def test_an_entry_point_with_only_model_fn_gets_the_framework_defaults(tmp_path, monkeypatch):
    """What tuner.deploy() serves: the training script, whose only handler is model_fn."""
    code = tmp_path / "model" / "code"
    code.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "model" / "weights.bin")
    (code / "train.py").write_text(
        "import os, torch\n"
        "def model_fn(model_dir):\n"
        "    m = torch.nn.Linear(4, 2)\n"
        "    m.load_state_dict(torch.load(os.path.join(model_dir, 'weights.bin')))\n"
        "    return m\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('training must not run when served')\n")
    monkeypatch.syspath_prepend(str(code))
    env = {"SAGEMAKER_PROGRAM": "train.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    handler = framework.Handler(str(tmp_path / "model"), env)
    assert handler.source.endswith("code/train.py")
    body, content_type = handler.invoke(_npy(ARRAY), "application/x-npy", "application/x-npy")
    assert content_type == "application/x-npy"
    expected = handler.model(torch.tensor(ARRAY)).detach().numpy()
    np.testing.assert_allclose(np.load(io.BytesIO(body)), expected, rtol=1e-6)
    body, content_type = handler.invoke(json.dumps(ARRAY.tolist()).encode(), "application/json",
                                        "*/*")  # */*: the default accept, JSON
    assert content_type == "application/json"
    np.testing.assert_allclose(np.array(json.loads(body)), expected, rtol=1e-5)


def test_transform_fn_with_input_fn_is_refused_as_the_toolkit_refuses_it(tmp_path):
    import types

    module = types.ModuleType("user")
    module.transform_fn = lambda model, data, content_type, accept: data
    module.input_fn = lambda data, content_type: data
    with pytest.raises(ValueError, match="transform_fn"):
        framework.handler_functions(module)
