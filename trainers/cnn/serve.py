"""The model server of the CNN trainer's image: SageMaker's serving contract for a BYO container.

SageMaker starts an endpoint container as `docker run IMAGE serve`, with the model (the
training job's model.tar.gz, unpacked) in /opt/ml/model, and talks HTTP to port 8080:

    python serve.py serve          (the `serve` argument is optional)

Environment:
    SM_MODEL_DIR                     model directory (default /opt/ml/model)
    SAGEMAKER_BIND_TO_PORT           port (default 8080; SageMaker sets it for multi-container
                                     endpoints)
    HPT_SERVE_HOST                   address to bind (default 0.0.0.0, as a container needs;
                                     hpt and the tests bind 127.0.0.1)
    SAGEMAKER_MODEL_SERVER_TIMEOUT   seconds one invocation may take (default 60)

Endpoints:
    GET  /ping         200 {"status": "healthy", "handler": PATH} once the model is loaded;
                       503 {"status": "loading", "error": ...} before, and 503
                       {"status": "failed", "error": REASON, "handler": PATH} if loading
                       failed (the reason is also printed on stderr)
    POST /invocations  the body through the handler's input_fn -> predict_fn -> output_fn;
                       200 with output_fn's body and content type, else {"error": MESSAGE}
                       with 400 / 406 / 413 / 415 (the handler's `status_code`), 413 for a
                       body over 6 MiB, 503 while the model is not loaded, 504 past the
                       timeout, 500 for anything else (404 / 405 are JSON too). A
                       missing Content-Type is read as application/json; a missing Accept
                       or */* answers JSON.
    GET  /execution-parameters   what SageMaker batch transform asks a BYO container

The handler is `$SM_MODEL_DIR/code/inference.py` when the model carries one (the SageMaker
PyTorch convention: the code inside model.tar.gz wins), else the inference.py beside this
file. It must define model_fn, input_fn, predict_fn and output_fn. The model loads in a
background thread after the server starts, so /ping answers 503 meanwhile.

Logs: stdout carries exactly one JSON line per request (time, method, path, status,
latency_ms, bytes_in, bytes_out, content_type); everything else (uvicorn's messages, model
loading, errors) goes to stderr. SIGTERM finishes the requests in flight and exits 0.
"""

import importlib.util
import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HERE = os.path.dirname(os.path.abspath(__file__))
# SageMaker's real-time endpoints refuse payloads over 6 MB; a local server that accepted
# more would pass requests that fail once deployed.
MAX_BODY_BYTES = 6 * 1024 * 1024
# After refusing an oversized body, read (and drop) up to this much of it before answering,
# so that a client still sending gets the 413 instead of a connection reset.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")
DEFAULT_CONTENT_TYPE = "application/json"
GRACEFUL_SHUTDOWN_SECONDS = 30


def log(message):
    print(f"serve: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    model_dir: str
    host: str
    port: int
    invocation_timeout: float


def settings_from_env(env):
    port_text = env.get("SAGEMAKER_BIND_TO_PORT", "8080")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ValueError(f"SAGEMAKER_BIND_TO_PORT={port_text!r}: expected a port 1..65535")
    timeout_text = env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60")
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise ValueError(f"SAGEMAKER_MODEL_SERVER_TIMEOUT={timeout_text!r}: expected seconds > 0")
    return Settings(model_dir=env.get("SM_MODEL_DIR", "/opt/ml/model"),
                    host=env.get("HPT_SERVE_HOST", "0.0.0.0"), port=port,
                    invocation_timeout=timeout)


# --------------------------------------------------------------------------------------------
# The handler and the model, loaded in a background thread


def handler_path(model_dir):
    """`<model_dir>/code/inference.py` if the model carries it, else the one beside serve.py."""
    bundled_with_model = os.path.join(model_dir, "code", "inference.py")
    if os.path.isfile(bundled_with_model):
        return bundled_with_model
    return os.path.join(HERE, "inference.py")


def load_handler(path):
    """Imports the handler file as module `inference`; returns its four functions."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no handler: {path} not found")
    # Its own folder first on sys.path, so the handler can import helpers shipped beside it.
    sys.path.insert(0, os.path.dirname(path))
    spec = importlib.util.spec_from_file_location("inference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    missing = [name for name in HANDLER_FUNCTIONS if not callable(getattr(module, name, None))]
    if missing:
        raise AttributeError(f"{path} does not define {', '.join(missing)} (a handler needs "
                             f"{', '.join(HANDLER_FUNCTIONS)})")
    return {name: getattr(module, name) for name in HANDLER_FUNCTIONS}


class ModelState:
    """loading -> ready | failed; written once by the loader thread, read by requests."""

    def __init__(self):
        self.status = "loading"
        self.error = None
        self.handler_path = None
        self.handler = None
        self.model = None

    def load(self, model_dir):
        started = time.monotonic()
        try:
            path = self.handler_path = handler_path(model_dir)
            handler = load_handler(path)
            model = handler["model_fn"](model_dir)
        except BaseException as exc:  # anything, so /ping reports it instead of hanging
            self.error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
            self.status = "failed"
            log(f"model failed to load from {model_dir}: {self.error}")
            traceback.print_exc()
            return
        self.handler, self.model = handler, model
        self.status = "ready"  # last: a request that sees "ready" finds everything set
        log(f"model loaded from {model_dir} with handler {path} in "
            f"{time.monotonic() - started:.2f}s")

    def invoke(self, body, content_type, accept):
        """input_fn -> predict_fn -> output_fn; returns (body bytes, content type)."""
        handler = self.handler
        data = handler["input_fn"](body, content_type)
        prediction = handler["predict_fn"](data, self.model)
        result = handler["output_fn"](prediction, accept)
        # The SageMaker toolkits accept either (body, content type) or just the body.
        if isinstance(result, tuple):
            result, content_type_out = result
        else:
            wanted = (accept or "").split(",")[0].split(";")[0].strip()
            content_type_out = wanted if wanted and "*" not in wanted else DEFAULT_CONTENT_TYPE
        if isinstance(result, str):
            result = result.encode("utf-8")
        return bytes(result), content_type_out


# --------------------------------------------------------------------------------------------
# HTTP


class BodyTooLarge(Exception):
    pass


def error_response(status, message):
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request, limit):
    """The request body, or BodyTooLarge: checked on Content-Length (the HTTP layer has
    refused a non-numeric one), then while reading (a chunked body has none). An oversized
    body is drained (up to MAX_DRAIN_BYTES) first."""
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit:
        await drain(request)
        raise BodyTooLarge(f"request body of {int(declared)} bytes is over the {limit}-byte "
                           f"(6 MiB) limit of SageMaker's real-time endpoints")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await drain(request)
            raise BodyTooLarge(f"request body is over the {limit}-byte (6 MiB) limit of "
                               f"SageMaker's real-time endpoints")
        chunks.append(chunk)
    return b"".join(chunks)


async def drain(request):
    drained = 0
    try:
        async for chunk in request.stream():
            drained += len(chunk)
            if drained > MAX_DRAIN_BYTES:
                return  # answer anyway: the server closes the connection
    except ClientDisconnect:
        pass


def ping_response(state):
    if state.status == "ready":
        return JSONResponse({"status": "healthy", "handler": state.handler_path})
    if state.status == "failed":
        return JSONResponse({"status": "failed", "error": state.error,
                             "handler": state.handler_path}, status_code=503)
    return JSONResponse({"status": "loading", "error": "the model is still loading"},
                        status_code=503)


async def invocation_response(state, settings, request):
    """One /invocations request through the handler (503 until the model is loaded)."""
    if state.status != "ready":
        reason = ("the model is still loading" if state.status == "loading"
                  else f"the model failed to load: {state.error}")
        return error_response(503, reason)
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        return error_response(413, str(exc))
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is left to read it
    content_type = request.headers.get("content-type") or DEFAULT_CONTENT_TYPE
    accept = request.headers.get("accept")
    try:
        # In a worker thread: the event loop keeps answering /ping during a prediction.
        # Past the timeout the request is answered 504 and the thread left to finish.
        with anyio.fail_after(settings.invocation_timeout):
            out, out_type = await anyio.to_thread.run_sync(
                state.invoke, body, content_type, accept, abandon_on_cancel=True)
    except TimeoutError:
        return error_response(504, f"the invocation took over {settings.invocation_timeout:g}"
                                   f"s (SAGEMAKER_MODEL_SERVER_TIMEOUT)")
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            return error_response(status, str(exc))  # the client's mistake, said by the handler
        log(f"invocation failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        return error_response(500, f"{type(exc).__name__}: {exc}")
    return Response(out, media_type=out_type)


async def execution_parameters(request):
    return JSONResponse({"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD",
                         "MaxPayloadInMB": MAX_BODY_BYTES // (1024 * 1024)})


async def http_error(request, exc):  # 404, 405 in the same JSON shape as the others
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                        status_code=exc.status_code, headers=exc.headers)


async def server_error(request, exc):  # a bug here, not in the handler (that is caught)
    return error_response(500, f"{type(exc).__name__}: {exc}")


def create_app(settings):
    state = ModelState()

    @asynccontextmanager
    async def lifespan(app):
        # Load after the server is up (not before it binds), so /ping answers 503 meanwhile.
        threading.Thread(target=state.load, args=(settings.model_dir,), name="model-loader",
                         daemon=True).start()
        yield

    async def ping(request):
        return ping_response(state)

    async def invocations(request):
        return await invocation_response(state, settings, request)

    app = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                            Route("/invocations", invocations, methods=["POST"]),
                            Route("/execution-parameters", execution_parameters,
                                  methods=["GET"])],
                    exception_handlers={HTTPException: http_error, Exception: server_error},
                    lifespan=lifespan)
    app.state.model = state
    return AccessLog(app)


class AccessLog:
    """ASGI middleware: one JSON line per HTTP request on stdout, written when it ends."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = datetime.now(timezone.utc)
        started = time.perf_counter()
        counts = {"status": 500, "bytes_in": 0, "bytes_out": 0}  # 500 if it dies unanswered

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                counts["bytes_in"] += len(message.get("body", b""))
            return message

        async def counting_send(message):
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                counts["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            headers = dict(scope.get("headers") or [])
            line = {"time": started_at.isoformat(timespec="milliseconds"),
                    "method": scope["method"], "path": scope["path"],
                    "status": counts["status"],
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "bytes_in": counts["bytes_in"], "bytes_out": counts["bytes_out"],
                    "content_type": headers.get(b"content-type", b"").decode("latin-1") or None}
            print(json.dumps(line), flush=True)


# --------------------------------------------------------------------------------------------
# Entry point


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv not in ([], ["serve"]):
        print(f"usage: {os.path.basename(sys.argv[0])} [serve]   (got {' '.join(argv)!r})",
              file=sys.stderr)
        return 2
    try:
        settings = settings_from_env(os.environ)
    except ValueError as exc:
        log(str(exc))
        return 2
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                            workers=1, access_log=False, lifespan="on", server_header=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler
    # that was there before it; this one turns that into a normal exit 0.
    stopped = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    log(f"serving {settings.model_dir} on http://{settings.host}:{settings.port}")
    server.run()
    if not server.started:
        return 1  # could not bind (uvicorn said why)
    log("stopped by SIGTERM" if stopped else "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
