"""A model served the way SageMaker's PyTorch inference container serves it (hpt api's
endpoints of framework-image models): `python framework.py serve`.

The container contract: the model (model.tar.gz, unpacked) in SM_MODEL_DIR, the port in
SAGEMAKER_BIND_TO_PORT, `GET /ping` and `POST /invocations`. The handler is the
`sagemaker-inference` toolkit's Transformer with the PyTorch default handler of
`sagemaker-pytorch-inference` (read from those packages, and checked against them in the
tests): the user module is SAGEMAKER_PROGRAM (default `inference.py`) in
SAGEMAKER_SUBMIT_DIRECTORY (a folder; default `<model>/code`, where the SDK's repack puts the
entry point); whatever of `model_fn`, `input_fn`, `predict_fn`, `output_fn` (or one
`transform_fn`) it leaves out is the framework's default:

    model_fn    the one .pt/.pth file in the model folder (model.pt first), as TorchScript
    input_fn    application/json, text/csv, application/x-npy -> a numpy array -> a tensor
                (float32 from JSON and CSV, the array's own dtype from NPY)
    predict_fn  model(data) under torch.no_grad(), in eval mode, on CUDA when there is one
    output_fn   the prediction (a tensor as a list) encoded as the first type of Accept
                that is JSON, CSV or NPY (no Accept, or */*: SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT,
                default application/json)

Errors answer as the toolkit answers them: 500 with the message for anything the handler
raises, an unsupported content type or Accept included (an exception with a status_code
attribute, the toolkit's own error classes, answers with that status). torch and numpy are imported
only by the defaults that need them: a handler of its own may use any framework.
"""

import importlib
import inspect
import json
import os
import sys
import threading
import time
import traceback

JSON, CSV, NPY, ANY = "application/json", "text/csv", "application/x-npy", "*/*"
UTF8_TYPES = (JSON, CSV)
ENCODABLE = (JSON, CSV, NPY)
DEFAULT_MODULE = "inference.py"


class UnsupportedFormatError(Exception):
    """The toolkit's: not one of its error classes with a status, so the toolkit's
    Transformer answers it 500, with this message (and so does this server)."""

    def __init__(self, content_type):
        super().__init__(f"Content type {content_type} is not supported by this framework.\n\n"
                         f"Please implement input_fn to to deserialize the request data or an "
                         f"output_fn to\nserialize the response. For more information, see the "
                         f"SageMaker Python SDK README.")


def log(message):
    print(f"framework serve: {message}", file=sys.stderr, flush=True)


# -- the toolkit's decoder and encoder ---------------------------------------------------------


def decode(body, content_type):
    import numpy as np

    if content_type == JSON:
        return np.array(json.loads(body))
    if content_type == CSV:
        from io import StringIO

        return np.genfromtxt(StringIO(body), delimiter=",")
    if content_type == NPY:
        from io import BytesIO

        return np.load(BytesIO(body), allow_pickle=True)
    raise UnsupportedFormatError(content_type)


def encode(prediction, content_type):
    import numpy as np

    if content_type == JSON:
        return json.dumps(prediction, default=lambda a: a.tolist() if hasattr(a, "tolist")
                          else json.JSONEncoder().default(a))
    if content_type == CSV:
        from io import StringIO

        stream = StringIO()
        np.savetxt(stream, prediction, delimiter=",", fmt="%s")
        return stream.getvalue()
    if content_type == NPY:
        from io import BytesIO

        buffer = BytesIO()
        np.save(buffer, prediction)
        return buffer.getvalue()
    raise UnsupportedFormatError(content_type)


# -- the PyTorch defaults ----------------------------------------------------------------------


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model_fn(model_dir):
    import torch

    path = os.path.join(model_dir, "model.pt")
    if not os.path.exists(path):
        found = [f for f in os.listdir(model_dir)
                 if os.path.isfile(os.path.join(model_dir, f))
                 and os.path.splitext(f)[1] in (".pt", ".pth")]
        if len(found) != 1:
            raise ValueError(f"Exactly one .pth or .pt file is required for PyTorch models: "
                             f"{found}")
        path = os.path.join(model_dir, found[0])
    try:
        model = torch.jit.load(path, map_location=_device())
    except RuntimeError as exc:
        raise RuntimeError(f"Failed to load {path}. Please ensure model is saved using "
                           f"torchscript (or define model_fn in the entry point).") from exc
    return model.to(_device())


def default_input_fn(input_data, content_type):
    import torch

    array = decode(input_data, content_type)
    tensor = torch.FloatTensor(array) if content_type in UTF8_TYPES else torch.from_numpy(array)
    return tensor.to(_device())


def default_predict_fn(data, model):
    import torch

    with torch.no_grad():
        device = _device()
        model = model.to(device)
        model.eval()
        return model(data.to(device))


def default_output_fn(prediction, accept):
    try:
        import torch

        if type(prediction) is torch.Tensor:
            prediction = prediction.detach().cpu().numpy().tolist()
    except ImportError:
        pass
    for content_type in accept.replace(" ", "").split(","):
        if content_type in ENCODABLE:
            encoded = encode(prediction, content_type)
            return encoded.encode("utf-8") if content_type == CSV else encoded
    raise UnsupportedFormatError(accept)


DEFAULTS = {"model_fn": default_model_fn, "input_fn": default_input_fn,
            "predict_fn": default_predict_fn, "output_fn": default_output_fn}


# -- the Transformer -----------------------------------------------------------------------------


def code_dir(model_dir, env):
    submitted = env.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    # The SDK writes the container's path; here the model folder is SM_MODEL_DIR.
    if submitted.startswith("/opt/ml/model"):
        submitted = model_dir + submitted[len("/opt/ml/model"):]
    return submitted if submitted and os.path.isdir(submitted) else os.path.join(model_dir,
                                                                                "code")


def module_name(env):
    program = env.get("SAGEMAKER_PROGRAM", DEFAULT_MODULE)
    return program[:-3] if program.endswith(".py") else program


def handler_functions(module):
    """The four functions (and transform_fn) with the framework's defaults filled in."""
    if module is None:
        return dict(DEFAULTS), None
    chosen = {name: getattr(module, name, None) or default for name, default in DEFAULTS.items()}
    transform = getattr(module, "transform_fn", None)
    if transform and any(getattr(module, n, None) for n in ("input_fn", "predict_fn",
                                                             "output_fn")):
        raise ValueError("Cannot use transform_fn implementation in conjunction with "
                         "input_fn, predict_fn, and/or output_fn implementation")
    return chosen, transform


def _call(func, *args):
    """The toolkit's _run_handler_function: a trailing `context` argument gets None."""
    count = len(inspect.signature(func).parameters)
    if count == len(args) + 1:
        return func(*args, None)
    return func(*args)


class Handler:
    def __init__(self, model_dir, env):
        self.model_dir = model_dir
        self.default_accept = env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON)
        folder = code_dir(model_dir, env)
        name = module_name(env)
        module = None
        if os.path.isfile(os.path.join(folder, name + ".py")):
            sys.path.insert(0, folder)
            module = importlib.import_module(name)
        self.source = os.path.join(folder, name + ".py") if module else "(framework defaults)"
        self.functions, self.transform_fn = handler_functions(module)
        self.model = _call(self.functions["model_fn"], model_dir)

    def invoke(self, body, content_type, accept):
        """(body bytes, content type) of one invocation."""
        if not accept or accept == ANY:
            accept = self.default_accept
        data = body.decode("utf-8") if content_type in UTF8_TYPES else body
        if self.transform_fn is not None:
            result = _call(self.transform_fn, self.model, data, content_type, accept)
        else:
            decoded = _call(self.functions["input_fn"], data, content_type)
            prediction = _call(self.functions["predict_fn"], decoded, self.model)
            result = _call(self.functions["output_fn"], prediction, accept)
        out_type = accept
        if isinstance(result, tuple):
            result, out_type = result
        if isinstance(result, str):
            result = result.encode("utf-8")
        return bytes(result), out_type


# -- HTTP --------------------------------------------------------------------------------------


def create_app(model_dir, env):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    import anyio

    state = {"status": "loading", "error": None, "handler": None}

    def load():
        started = time.monotonic()
        try:
            state["handler"] = Handler(model_dir, env)
        except BaseException as exc:  # said on /ping, not a hang
            state["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())
            state["status"] = "failed"
            log(f"model failed to load from {model_dir}: {state['error']}")
            traceback.print_exc()
            return
        state["status"] = "ready"
        log(f"model loaded from {model_dir} with {state['handler'].source} in "
            f"{time.monotonic() - started:.2f}s")

    async def lifespan(app):
        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield

    async def ping(request):
        if state["status"] == "ready":
            return JSONResponse({"status": "healthy", "handler": state["handler"].source})
        return JSONResponse({"status": state["status"], "error": state["error"] or
                             "the model is still loading"}, status_code=503)

    async def invocations(request):
        if state["status"] != "ready":
            return Response(f"the model is not loaded ({state['status']}: "
                            f"{state['error'] or 'loading'})", status_code=503)
        body = await request.body()  # at most 6 MiB: the endpoint's router in front checks
        content_type = (request.headers.get("content-type") or JSON).split(";")[0].strip()
        try:
            out, out_type = await anyio.to_thread.run_sync(
                state["handler"].invoke, body, content_type, request.headers.get("accept"))
        except Exception as exc:  # noqa: BLE001 - the handler's errors are the answer
            status = getattr(exc, "status_code", None)
            status = status if isinstance(status, int) and 400 <= status < 600 else 500
            log(f"invocation failed ({status}): {type(exc).__name__}: {exc}")
            return Response(f"{exc}\n{traceback.format_exc()}" if status == 500 else str(exc),
                            status_code=status, media_type="text/plain")
        return Response(out, media_type=out_type)

    from contextlib import asynccontextmanager

    return Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                             Route("/invocations", invocations, methods=["POST"])],
                     lifespan=asynccontextmanager(lifespan))


def main():
    import signal

    import uvicorn

    env = dict(os.environ)
    model_dir = env.get("SM_MODEL_DIR", "/opt/ml/model")
    port = int(env.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = env.get("HPT_SERVE_HOST", "0.0.0.0")
    config = uvicorn.Config(create_app(model_dir, env), host=host, port=port,
                            log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()


if __name__ == "__main__":
    main()
