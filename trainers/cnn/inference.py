"""Inference handlers for the CNN trainer's model, in the SageMaker PyTorch convention.

The four functions have the names and signatures SageMaker's PyTorch inference toolkit looks
for, so this file serves the same model in three places: as `code/inference.py` inside
model.tar.gz under SageMaker's own PyTorch serving container, under `serve.py` (this
directory's model server, the `serve` command of the hpt-cnn image), and from tests.

    model_fn(model_dir)                   -> model (SmallCNN in eval mode, on CPU or CUDA)
    input_fn(request_body, content_type)  -> float32 ndarray (not yet reshaped)
    predict_fn(data, model)               -> {"predictions": int64 [N], "probabilities": [N, K]}
    output_fn(prediction, accept)         -> (body bytes, content type)

Requests:
- `application/json`: `{"instances": [...]}` or a bare list. Each instance is one image of the
  model's input shape [C, H, W], or [H, W] when C == 1, or flattened to C*H*W numbers; a
  single instance may be sent on its own instead of in a list.
- `application/x-npy`: one `np.save`d array [N, C, H, W], [N, H, W] (C == 1) or [N, C*H*W].
Pixel values are taken as they are in the training channel files (`data.npz`): the trainer
does no normalisation of its own, so neither does serving.

Responses (`application/json`, also for `Accept: */*` or none):
`{"predictions": [label, ...], "probabilities": [[p_0, ..., p_K-1], ...]}`, where a label is
the argmax of the logits, exactly what the trainer's `accuracy()` counts.

Errors raise `InferenceError` subclasses whose `status_code` is the HTTP status a server
should answer (415 content type, 406 Accept, 400 payload, 413 too many instances); the
message is one line saying what was wrong and what was expected.

train.py copies this file and model.py (SmallCNN, the one definition of the architecture)
into `<model_dir>/code/`; both need torch and numpy only. SageMaker's PyTorch serving container
puts that folder on sys.path before it imports this module, serve.py does the same, and the
line below makes `import model` work wherever this file is loaded from.
"""

import io
import json
import math
import os
import sys

import numpy as np
import numpy.lib.format as npy_format
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # model.py ships beside this file
from model import ARCHITECTURE_KWARGS, SmallCNN  # noqa: E402

JSON = "application/json"
NPY = "application/x-npy"
SUPPORTED_CONTENT_TYPES = (JSON, NPY)
SUPPORTED_ACCEPT = (JSON,)
# One request may hold at most this many images: bounds the memory and the latency of one
# call (SageMaker's 6 MB payload limit already keeps 8x8 requests below about 23,000).
MAX_INSTANCES = 10_000
# Images per forward pass: the batch size the trainer's accuracy() uses, so served logits
# come from the same computation as the trainer's validation accuracy.
PREDICT_BATCH = 1024
# Few threads per server: one small CNN gains little from more, and hpt runs one server per
# production variant on the same host. OMP_NUM_THREADS, when set, wins.
DEFAULT_MAX_THREADS = 4

# --------------------------------------------------------------------------------------------
# Errors: each carries the HTTP status a server maps it to


class InferenceError(Exception):
    """A request this model cannot answer; `status_code` is the HTTP status to reply with."""

    status_code = 400


class UnsupportedContentType(InferenceError):
    status_code = 415


class UnsupportedAccept(InferenceError):
    status_code = 406


class BadPayload(InferenceError):
    status_code = 400


class TooManyInstances(InferenceError):
    status_code = 413


# --------------------------------------------------------------------------------------------
# Model: SmallCNN (model.py) rebuilt from the trainer's model_config.json


def _serving_threads():
    try:
        cpus = len(os.sched_getaffinity(0))  # the CPUs this process may use (cgroups, taskset)
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(DEFAULT_MAX_THREADS, cpus))


def model_fn(model_dir):
    """Rebuilds the trainer's SmallCNN from model_config.json and loads model.pth into it."""
    config_path = os.path.join(model_dir, "model_config.json")
    weights_path = os.path.join(model_dir, "model.pth")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: the model directory must hold the "
                                    f"trainer's model.pth and model_config.json")
    with open(config_path) as f:
        config = json.load(f)
    if config.get("architecture") != "SmallCNN":
        raise ValueError(f"{config_path}: architecture {config.get('architecture')!r} is not "
                         f"'SmallCNN', the only one this handler builds")
    missing = [key for key in ARCHITECTURE_KWARGS + ("input_shape",) if key not in config]
    if missing:
        raise ValueError(f"{config_path}: missing {missing}")
    input_shape = tuple(int(n) for n in config["input_shape"])
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"{config_path}: input_shape {config['input_shape']} is not [C, H, W]")

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(_serving_threads())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = SmallCNN(**{key: config[key] for key in ARCHITECTURE_KWARGS})
    # weights_only: a model file is data, never code to unpickle
    state = torch.load(weights_path, map_location=device, weights_only=True)
    model.load_state_dict(state)
    model.to(device).eval()
    model.input_shape = input_shape  # what predict_fn reshapes requests to
    model.device = device
    return model


# --------------------------------------------------------------------------------------------
# Requests


def media_type(header):
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return (header or "").split(";", 1)[0].strip().lower()


def _numeric_array(value, what):
    """`value` as a finite float32 array, or BadPayload saying what was wrong."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:  # ragged lists, ...
        raise BadPayload(f"{what} is not a rectangular array of numbers ({err})") from None
    if array.dtype.kind not in "iuf":  # strings, booleans, nulls (object), complex, records
        raise BadPayload(f"{what} must hold only numbers (pixel values), got {array.dtype} "
                         f"elements")
    if array.size == 0:
        raise BadPayload(f"{what} holds no instance: expected at least one image")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, rejected below
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise BadPayload(f"{what} holds NaN or infinite values: every pixel must be a finite "
                         f"number")
    return array


def input_fn(request_body, content_type):
    """Decodes a request body into a float32 ndarray of one or more images (shape unchecked:
    input_fn does not see the model; predict_fn reshapes against its input_shape)."""
    kind = media_type(content_type)
    if kind not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedContentType(f"unsupported Content-Type {content_type!r}: expected "
                                     f"{JSON} or {NPY}")
    if isinstance(request_body, str):
        request_body = request_body.encode("utf-8")
    if kind == JSON:
        try:
            payload = json.loads(request_body)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise BadPayload(f"malformed JSON ({err}): expected {{\"instances\": [...]}} or "
                             f"a list of images") from None
        if isinstance(payload, dict):
            if "instances" not in payload:
                raise BadPayload(f"JSON object without 'instances' (keys: {sorted(payload)}): "
                                 f"expected {{\"instances\": [...]}}")
            payload = payload["instances"]
        if not isinstance(payload, list):
            raise BadPayload(f"JSON {type(payload).__name__} where a list of images was "
                             f"expected: send {{\"instances\": [...]}} or a bare list")
        return _numeric_array(payload, "JSON instances")
    return _numeric_array(_load_npy(request_body), ".npy array")


def _load_npy(body):
    """The array in an .npy body, read only after its header proves it harmless."""
    expected = "expected one np.save'd numeric array [N, C, H, W], [N, H, W] or [N, C*H*W]"
    # np.load would also take .npz archives and pickles: only the .npy format is accepted.
    if not body.startswith(npy_format.MAGIC_PREFIX):
        raise BadPayload(f"body is not in .npy format (it does not start with the .npy magic "
                         f"bytes): {expected}")
    stream = io.BytesIO(body)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy format version {version} (np.save writes 1.0)")
    except (ValueError, TypeError, SyntaxError) as err:
        raise BadPayload(f"unreadable .npy header ({err}): {expected}") from None
    if dtype.hasobject or dtype.kind not in "iuf":
        # an object array is a pickle, and unpickling runs code: refused, never loaded
        raise BadPayload(f"the .npy array holds {dtype} elements, not numbers: {expected}")
    # np.load allocates the header's shape before reading: a tiny body must not claim 1 TB.
    declared = math.prod(shape) * dtype.itemsize
    if declared > len(body) - stream.tell():
        raise BadPayload(f"the .npy header declares shape {list(shape)} ({declared} bytes), "
                         f"more than the body holds: {expected}")
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise BadPayload(f"unreadable .npy array ({err}): {expected}") from None


def as_batch(array, input_shape):
    """Reshapes decoded instances to [N, C, H, W] for a model taking `input_shape` [C, H, W].

    One instance may be [C, H, W], [H, W] (when C == 1) or flat [C*H*W]; the array is either
    one such instance or a list of them. The accepted forms never overlap with different
    meanings, so the reshape is unambiguous."""
    channels, height, width = input_shape
    instance_shapes = {tuple(input_shape), (channels * height * width,)}
    if channels == 1:
        instance_shapes.add((height, width))
    if array.shape in instance_shapes:
        count = 1
    elif array.ndim >= 2 and array.shape[1:] in instance_shapes:
        count = array.shape[0]
    else:
        forms = " or ".join(str(list(s)) for s in sorted(instance_shapes, key=len, reverse=True))
        raise BadPayload(f"instances of shape {list(array.shape)} do not fit the model: "
                         f"expected a list of images shaped {forms} (or one such image)")
    if count > MAX_INSTANCES:
        raise TooManyInstances(f"{count} instances in one request: at most {MAX_INSTANCES} "
                               f"allowed; split the batch")
    return array.reshape(count, channels, height, width)


def predict_fn(data, model):
    """Class probabilities and argmax labels for every image in `data`."""
    batch = torch.from_numpy(np.ascontiguousarray(as_batch(data, model.input_shape)))
    labels, probabilities = [], []
    with torch.inference_mode():
        for start in range(0, len(batch), PREDICT_BATCH):
            logits = model(batch[start:start + PREDICT_BATCH].to(model.device))
            # labels from the logits, as accuracy() counts them (not from rounded softmax)
            labels.append(logits.argmax(1).cpu())
            probabilities.append(torch.softmax(logits.float(), dim=1).cpu())
    return {"predictions": torch.cat(labels).numpy(),
            "probabilities": torch.cat(probabilities).numpy()}


# --------------------------------------------------------------------------------------------
# Responses


def _is_zero_quality(param):
    name, _, value = param.partition("=")
    try:
        return name.strip() == "q" and float(value) == 0
    except ValueError:
        return False


def _accepts_json(accept):
    """True when an Accept header admits application/json ('*/*', 'application/*', absent)."""
    if not accept or not accept.strip():
        return True
    for media_range in accept.split(","):
        kind, *params = [part.strip().lower() for part in media_range.split(";")]
        if any(_is_zero_quality(param) for param in params):
            continue  # 'application/json;q=0' refuses JSON explicitly
        if kind in (JSON, "application/*", "*/*", "*"):
            return True
    return False


def output_fn(prediction, accept):
    """Serializes predict_fn's result; returns (body, content type)."""
    if not _accepts_json(accept):
        raise UnsupportedAccept(f"unsupported Accept {accept!r}: this model answers "
                                f"{JSON} only")
    body = {"predictions": [int(label) for label in prediction["predictions"]],
            "probabilities": np.asarray(prediction["probabilities"], dtype=float).tolist()}
    return json.dumps(body, separators=(",", ":")).encode("utf-8"), JSON
