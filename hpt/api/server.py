"""`hpt api`: the SageMaker API, served by hpt on your own machines.

One HTTP server answers what the SageMaker SDK and boto3 send, told apart as AWS tells them
apart: `X-Amz-Target: SageMaker.<Operation>` (the control plane, JSON 1.1),
`X-Amz-Target: Logs_20140328.<Operation>` (CloudWatch Logs, for a job's output),
`POST /endpoints/<name>/invocations` (sagemaker-runtime's InvokeEndpoint) and a form
`Action=GetCallerIdentity` (STS). Requests are parsed and checked, and responses shaped and
checked, by botocore's own models (hpt/api/protocol.py). Every answer that is not a success
is an AWS error shape; an unexpected failure is an InternalFailure whose traceback goes to
the server's log, never to the client.

Operations run in worker threads (they read journals and start processes); the event loop
only moves bytes, so a slow describe never holds up an invocation.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hpt.api import protocol
from hpt.api.endpoints import Endpoints
from hpt.api.jobs import TuningJobs
from hpt.api.protocol import (INTERNAL, TOO_LARGE, UNKNOWN_OPERATION, VALIDATION, ApiError)
from hpt.api.sigv4 import scope_of, verify
from hpt.api.store import ApiStore
from hpt.api.tuning import ACCOUNT, DEFAULT_REGION

MAX_REQUEST_BYTES = 1024 * 1024  # a control-plane request; invocations have the router's 6 MiB
JSON_TYPE = "application/x-amz-json-1.1"
SAGEMAKER_TARGET = "SageMaker."
LOGS_TARGET = "Logs_20140328."
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_PAGE = 10_000


class Context:
    def __init__(self, region: str):
        self.region = region


class Tags:
    """Tags by resource ARN (AddTags, ListTags, DeleteTags, and the Tags of Create*)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, list[dict[str, str]]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def add(self, resource: str, tags: list[dict[str, str]] | None) -> list[dict[str, str]]:
        from hpt.experiment.store import write_json_atomic

        with self._lock:
            data = self._read()
            merged = {t["Key"]: t["Value"] for t in data.get(resource, [])}
            merged.update({t["Key"]: t.get("Value", "") for t in tags or []})
            data[resource] = [{"Key": k, "Value": v} for k, v in merged.items()]
            write_json_atomic(self.path, data)
            return data[resource]

    def remove(self, resource: str, keys: list[str]) -> None:
        from hpt.experiment.store import write_json_atomic

        with self._lock:
            data = self._read()
            data[resource] = [t for t in data.get(resource, []) if t["Key"] not in keys]
            write_json_atomic(self.path, data)

    def of(self, resource: str) -> list[dict[str, str]]:
        return self._read().get(resource, [])


class Api:
    """The operations, by name; each takes (params, context) and returns the response dict."""

    def __init__(self, store: ApiStore, jobs: TuningJobs, endpoints: Endpoints):
        self.store, self.jobs, self.endpoints = store, jobs, endpoints
        self.tags = Tags(store.root / "tags.json")
        j, e = jobs, endpoints
        self.sagemaker: dict[str, Callable[[dict, Context], dict]] = {
            "CreateHyperParameterTuningJob": self._created(
                lambda p, c: j.create(p, c.region), "HyperParameterTuningJobArn"),
            "DescribeHyperParameterTuningJob":
                lambda p, c: j.describe(p["HyperParameterTuningJobName"]),
            "ListHyperParameterTuningJobs": lambda p, c: j.list(p),
            "StopHyperParameterTuningJob": lambda p, c: j.stop(p["HyperParameterTuningJobName"]),
            "ListTrainingJobsForHyperParameterTuningJob": lambda p, c: j.training_jobs(p),
            "DescribeTrainingJob": lambda p, c: j.describe_training_job(p["TrainingJobName"]),
            "ListTrainingJobs": lambda p, c: j.list_all_training_jobs(p),
            "CreateTrainingJob": self._not_yet,
            "StopTrainingJob": self._stop_training_job,
            "CreateModel": self._created(lambda p, c: e.create_model(p, c.region), "ModelArn"),
            "DescribeModel": lambda p, c: e.describe_model(p["ModelName"]),
            "DeleteModel": lambda p, c: e.delete_model(p["ModelName"]),
            "CreateEndpointConfig": self._created(lambda p, c: e.create_config(p, c.region),
                                                  "EndpointConfigArn"),
            "DescribeEndpointConfig": lambda p, c: e.describe_config(p["EndpointConfigName"]),
            "DeleteEndpointConfig": lambda p, c: e.delete_config(p["EndpointConfigName"]),
            "CreateEndpoint": self._created(lambda p, c: e.create_endpoint(p, c.region),
                                            "EndpointArn"),
            "DescribeEndpoint": lambda p, c: e.describe_endpoint(p["EndpointName"]),
            "ListEndpoints": lambda p, c: e.list_endpoints(p),
            "UpdateEndpoint": lambda p, c: e.update_endpoint(p),
            "UpdateEndpointWeightsAndCapacities": lambda p, c: e.update_weights(p),
            "DeleteEndpoint": lambda p, c: e.delete_endpoint(p["EndpointName"]),
            "AddTags": lambda p, c: {"Tags": self.tags.add(p["ResourceArn"], p["Tags"])},
            "ListTags": lambda p, c: {"Tags": self.tags.of(p["ResourceArn"])},
            "DeleteTags": lambda p, c: self.tags.remove(p["ResourceArn"], p["TagKeys"]) or {},
        }
        self.logs: dict[str, Callable[[dict, Context], dict]] = {
            "DescribeLogStreams": self._describe_log_streams,
            "GetLogEvents": self._get_log_events,
        }

    def _created(self, create, arn_key: str):
        def handler(params: dict, context: Context) -> dict:
            result = create(params, context)
            if params.get("Tags"):
                self.tags.add(result[arn_key], params["Tags"])
            return result
        return handler

    def _not_yet(self, params: dict, context: Context) -> dict:
        raise ApiError(VALIDATION, "CreateTrainingJob: hpt api runs training jobs as part of "
                                   "tuning jobs; create a tuning job (CreateHyperParameter"
                                   "TuningJob) with MaxNumberOfTrainingJobs 1 instead")

    def _stop_training_job(self, params: dict, context: Context) -> dict:
        self.jobs.describe_training_job(params["TrainingJobName"])  # ValidationException if none
        raise ApiError(VALIDATION, f"StopTrainingJob {params['TrainingJobName']}: hpt stops a "
                                   f"tuning job's training jobs with their tuning job; use "
                                   f"StopHyperParameterTuningJob")

    # -- CloudWatch Logs: a training job's output ------------------------------------------

    def _streams(self, job: str) -> list[tuple[str, Path]]:
        log = self.jobs.training_job_log(job)
        if log is None:
            return []
        hosts = sorted(log.parent.glob("algo-*.log"))
        return [(f"{job}/{p.stem}-{int(p.stat().st_ctime)}", p) for p in hosts]

    def _describe_log_streams(self, params: dict, context: Context) -> dict:
        if params.get("logGroupName") != TRAINING_LOG_GROUP:
            raise ApiError("ResourceNotFoundException", "The specified log group does not "
                                                        "exist.")
        prefix = params.get("logStreamNamePrefix") or ""
        job = prefix.split("/", 1)[0]
        streams = []
        try:
            found = self._streams(job) if job else []
        except ApiError:
            found = []
        for name, path in found:
            if name.startswith(prefix):
                stat = path.stat()
                streams.append({"logStreamName": name, "creationTime": int(stat.st_ctime * 1000),
                                "firstEventTimestamp": int(stat.st_ctime * 1000),
                                "lastEventTimestamp": int(stat.st_mtime * 1000),
                                "lastIngestionTime": int(stat.st_mtime * 1000),
                                "arn": f"arn:aws:logs:{context.region}:{ACCOUNT}:log-group:"
                                       f"{TRAINING_LOG_GROUP}:log-stream:{name}"})
        return {"logStreams": streams[:int(params.get("limit") or 50)]}

    def _get_log_events(self, params: dict, context: Context) -> dict:
        name = params["logStreamName"]
        job = name.split("/", 1)[0]
        try:
            path = dict(self._streams(job)).get(name)
        except ApiError:
            path = None
        if path is None:
            raise ApiError("ResourceNotFoundException", "The specified log stream does not "
                                                        "exist.")
        token = params.get("nextToken") or "f/0"
        try:
            start = int(token.split("/", 1)[1])
        except (IndexError, ValueError):
            raise ApiError("InvalidParameterException", "nextToken: not a token this server "
                                                        "gave out") from None
        lines = path.read_text(errors="replace").splitlines()
        limit = min(int(params.get("limit") or LOG_PAGE), LOG_PAGE)
        chunk = lines[start:start + limit]
        stamp = int(path.stat().st_mtime * 1000)
        return {"events": [{"timestamp": stamp, "message": line, "ingestionTime": stamp}
                           for line in chunk],
                "nextForwardToken": f"f/{start + len(chunk)}",
                "nextBackwardToken": f"b/{start}"}


def _json_error(error: ApiError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers())


def _runtime_error(error: ApiError) -> Response:
    """sagemaker-runtime is REST-JSON: the code in x-amzn-ErrorType, the message in the body."""
    return Response(json.dumps({"message": error.message}).encode(), status_code=error.status,
                    headers={"x-amzn-ErrorType": error.code,
                             "Content-Type": "application/json"})


def _sts_response(action: str, request_id: str) -> Response:
    if action != "GetCallerIdentity":
        body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                f'<Type>Sender</Type><Code>InvalidAction</Code><Message>hpt api answers STS '
                f'GetCallerIdentity only</Message></Error><RequestId>{request_id}</RequestId>'
                f'</ErrorResponse>')
        return Response(body, status_code=400, media_type="text/xml")
    body = (f'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f'<GetCallerIdentityResult><Arn>arn:aws:iam::{ACCOUNT}:user/hpt</Arn>'
            f'<UserId>AIDAHPTAPI000000000000</UserId><Account>{ACCOUNT}</Account>'
            f'</GetCallerIdentityResult><ResponseMetadata><RequestId>{request_id}</RequestId>'
            f'</ResponseMetadata></GetCallerIdentityResponse>')
    return Response(body, media_type="text/xml")


def create_app(api: Api, keys: dict[str, str] | None, say: Callable[[str], None],
               on_startup: Callable[[asyncio.AbstractEventLoop], None] | None = None):
    """The ASGI app. `keys`: access key id -> secret; None accepts unsigned requests (the
    loopback default, like any local AWS emulator)."""

    async def read_limited(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(TOO_LARGE, f"request body over {limit} bytes", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(TOO_LARGE, f"request body over {limit} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    def authorize(request: Request, body: bytes) -> str:
        """The region of the request (its credential scope); verifies it when keys are set."""
        if keys is not None:
            scope = verify(request.method, str(request.url), dict(request.headers), body, keys)
        else:
            scope = scope_of(request.headers.get("authorization"))
        return scope.region if scope else DEFAULT_REGION

    async def control(request: Request) -> Response:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        target = request.headers.get("x-amz-target", "")
        operation, status = target or "(none)", 200
        try:
            body = await read_limited(request, MAX_REQUEST_BYTES)
            region = authorize(request, body)
            if target.startswith(SAGEMAKER_TARGET) or target.startswith(LOGS_TARGET):
                service, table = (("sagemaker", api.sagemaker)
                                  if target.startswith(SAGEMAKER_TARGET) else ("logs", api.logs))
                operation = target.split(".", 1)[1]
                handler = table.get(operation)
                if handler is None:
                    protocol.operation_model(service, operation)  # unknown to AWS itself?
                    raise ApiError(UNKNOWN_OPERATION, f"{operation}: hpt api does not serve "
                                                      f"this operation (see the README's "
                                                      f"list of supported operations)")
                params = protocol.parse_json_request(service, operation, body)
                result = await run_in_threadpool(handler, params, Context(region))
                payload = protocol.json_response(service, operation, result)
                return Response(payload, headers={"Content-Type": JSON_TYPE,
                                                  "x-amzn-RequestId": request_id})
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:  # the query protocol: STS
                operation = form["Action"][0]
                response = _sts_response(operation, request_id)
                status = response.status_code
                return response
            raise ApiError(UNKNOWN_OPERATION, "no X-Amz-Target header: send SageMaker "
                                              "requests with an AWS SDK (boto3, the SageMaker "
                                              "Python SDK)")
        except ApiError as error:
            status = error.status
            return _json_error(error)
        except Exception as exc:  # noqa: BLE001 - a bug of hpt's: logged, answered in shape
            status = 500
            say(f"hpt api: {operation} failed: {type(exc).__name__}: {exc}\n"
                f"{traceback.format_exc()}")
            return _json_error(ApiError(INTERNAL, f"hpt api could not complete {operation} "
                                                  f"({type(exc).__name__}); the server's log "
                                                  f"says why (request id {request_id})", 500))
        finally:
            say(json.dumps({"time": round(time.time(), 3), "operation": operation,
                            "status": status, "ms": round((time.perf_counter() - started)
                                                          * 1000, 1)}))

    async def invocations(request: Request) -> Response:
        from hpt.serving.router import ROUTER_ERROR_HEADER

        name = request.path_params["name"]
        try:
            if keys is not None:
                # The signature covers the body: read it whole (at most 6 MiB) first.
                from hpt.serving.router import MAX_PAYLOAD_BYTES

                body = await read_limited(request, MAX_PAYLOAD_BYTES)
                authorize(request, body)
                request = _replayed(request, body)
            router = await run_in_threadpool(api.endpoints.router_of, name)
            response = await router.invocations(request)
        except ApiError as error:
            return _runtime_error(error)
        if response.status_code < 300:
            return response
        message = response.body.decode("utf-8", "replace")[:2000]
        if response.headers.get(ROUTER_ERROR_HEADER):
            code = 413 if response.status_code == 413 else 400
            kind = "ServiceUnavailable" if response.status_code == 502 else "ValidationError"
            return _runtime_error(ApiError(kind, message, 503 if kind == "ServiceUnavailable"
                                           else code))
        variant = response.headers.get("x-amzn-invoked-production-variant", "")
        error = ApiError("ModelError", f"Received {'client' if response.status_code < 500 else 'server'} "
                                       f"error ({response.status_code}) from {variant} with "
                                       f"message \"{message}\".", 424)
        out = _runtime_error(error)
        out.body = json.dumps({"message": error.message, "OriginalStatusCode":
                               response.status_code, "OriginalMessage": message}).encode()
        out.headers["content-length"] = str(len(out.body))
        return out

    async def lifespan(app):
        if on_startup is not None:
            on_startup(asyncio.get_running_loop())
        yield

    from contextlib import asynccontextmanager

    return Starlette(routes=[
        Route("/endpoints/{name}/invocations", invocations, methods=["POST"]),
        Route("/", control, methods=["POST"]),
    ], lifespan=asynccontextmanager(lifespan))


def _replayed(request: Request, body: bytes) -> Request:
    """A request whose body was read already, readable once more (the router streams it)."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def serve_api(experiments: Path, *, host: str, port: int, address: str | None,
              cpus: float | None, gpus: float | None, image_map: dict[str, str],
              keys: dict[str, str] | None, engine: str = "docker", say=print) -> int:
    """Runs the server until SIGINT/SIGTERM. Returns the exit code."""
    import os
    import signal

    import uvicorn

    from hpt.api.ray_head import RayHead
    from hpt.serving.run import bind

    store = ApiStore(experiments)
    sock = bind(host, port)
    cpus = float(cpus if cpus is not None else os.cpu_count() or 1)
    gpus = float(gpus if gpus is not None else _local_gpus())
    head = None
    if address is None:
        head = RayHead(cpus, gpus, store.root / "ray.log")
        address = head.start()
    jobs = TuningJobs(store, address, cpus, gpus, image_map, engine, say)
    endpoints = Endpoints(store, image_map, engine, say)
    api = Api(store, jobs, endpoints)

    def started(loop):
        endpoints.loop = loop
        jobs.start()  # resumes what an earlier server left running
        endpoints.restore()
        say(f"hpt api: SageMaker API at http://{host}:{sock.getsockname()[1]} "
            f"(experiments {store.experiments}; Ray {address}"
            + (f" in {head.temp}" if head else "") + "; "
            f"{'SigV4 required' if keys else 'unsigned requests accepted: loopback only'})")

    app = create_app(api, keys, say, on_startup=started)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=5))
    signals: list[int] = []

    def on_signal(sig, frame):
        signals.append(sig)
        server.should_exit = True

    server.install_signal_handlers = lambda: None  # uvicorn < 0.29
    try:
        from contextlib import nullcontext

        server.capture_signals = lambda: nullcontext()  # uvicorn >= 0.29
    except ImportError:
        pass
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        say("hpt api: stopping (running tuning jobs are interrupted and resume at the next "
            "start)")
        endpoints.close()
        jobs.close()
        if head is not None:
            head.stop()
        sock.close()
    return 130 if signal.SIGINT in signals else 0


def _local_gpus() -> int:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
