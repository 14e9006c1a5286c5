"""`hpt api`: the SageMaker API, served by hpt on your own machines.

One HTTP server answers what the SageMaker SDK and boto3 send, told apart as AWS tells them
apart: `X-Amz-Target: SageMaker.<Operation>` (the control plane, JSON 1.1),
`X-Amz-Target: Logs_20140328.<Operation>` (CloudWatch Logs, for a job's output),
`X-Amz-Target: GraniteServiceVersion20100801.<Operation>` (CloudWatch, for a job's metrics:
JSON 1.0, as botocore sends it; its model also offers Smithy RPC v2 CBOR, which newer SDKs
prefer, served at `POST /service/GraniteServiceVersion20100801/operation/<Operation>`),
`POST /endpoints/<name>/invocations` (sagemaker-runtime's InvokeEndpoint) and a form
`Action=GetCallerIdentity` (STS) or `Action=SimulatePrincipalPolicy` (IAM: hpt/api/
query_protocol.py). Requests are parsed and checked, and responses shaped and
checked, by botocore's own models (hpt/api/wire_protocol.py). Every answer that is not a success
is an AWS error shape; an unexpected failure is an InternalFailure whose traceback goes to
the server's log, never to the client.

Operations run in worker threads (they read journals and start processes); the event loop
only moves bytes, so a slow describe never holds up an invocation.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
import uuid
from contextlib import asynccontextmanager
from typing import Callable
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hpt.api import query_protocol, wire_protocol as protocol
from hpt.api.operations import Api, Context
from hpt.api.cloudwatch import INVALID
from hpt.api.wire_protocol import INTERNAL, TOO_LARGE, UNKNOWN_OPERATION, VALIDATION, ApiError
from hpt.api.sigv4 import scope_of, verify
from hpt.api.tuning import DEFAULT_REGION
from hpt.serving.router import MAX_PAYLOAD_BYTES, ROUTER_ERROR_HEADER

MAX_REQUEST_BYTES = 1024 * 1024  # a control-plane request; invocations have the router's 6 MiB
DRAIN_BYTES = 16 * 1024 * 1024
JSON_TYPE = "application/x-amz-json-1.1"
SAGEMAKER_TARGET = "SageMaker."
LOGS_TARGET = "Logs_20140328."
CLOUDWATCH_SERVICE = "GraniteServiceVersion20100801"  # CloudWatch's target prefix
CLOUDWATCH_TARGET = CLOUDWATCH_SERVICE + "."
CBOR_TYPE = "application/cbor"
SMITHY_PROTOCOL = "rpc-v2-cbor"
# CloudWatch is "query compatible": its errors also carry the old query protocol's code.
CLOUDWATCH_ERRORS = {VALIDATION: INVALID, INVALID: INVALID}
QUERY_CODES = {INVALID: "InvalidParameterValue"}


def _cloudwatch_error(error: ApiError) -> ApiError:
    return ApiError(CLOUDWATCH_ERRORS.get(error.code, error.code), error.message, error.status)


def _query_error_header(code: str) -> dict[str, str]:
    """The old query protocol's code, by which botocore finds CloudWatch's exception class."""
    return {"x-amzn-query-error": f"{QUERY_CODES[code]};Sender"} if code in QUERY_CODES else {}


def _cloudwatch_json_error(error: ApiError) -> Response:
    error = _cloudwatch_error(error)
    return Response(error.body(), status_code=error.status, headers={
        **error.headers(), "Content-Type": "application/x-amz-json-1.0",
        **_query_error_header(error.code)})


def _cbor_error(error: ApiError, request_id: str) -> Response:
    from hpt.api.cbor import encode

    error = _cloudwatch_error(error)
    headers = {"smithy-protocol": SMITHY_PROTOCOL, "Content-Type": CBOR_TYPE,
               "x-amzn-RequestId": request_id, **_query_error_header(error.code)}
    return Response(encode({"__type": error.code, "message": error.message}),
                    status_code=error.status, headers=headers)


def _json_error(error: ApiError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers())


def _runtime_error(error: ApiError, **members) -> Response:
    """sagemaker-runtime is REST-JSON: the code in x-amzn-ErrorType, the message (and the
    error shape's other members) in the body."""
    return Response(json.dumps({"message": error.message, **members}).encode(),
                    status_code=error.status, headers={"x-amzn-ErrorType": error.code,
                                                       "Content-Type": "application/json"})


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, or RequestEntityTooLarge once it passes `limit`. The rest of an oversized
    body is read and dropped (up to DRAIN_BYTES) before the answer, so a client still
    sending gets the error, not a reset connection."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_BYTES:
            break
    if size > limit:
        raise ApiError(TOO_LARGE, f"request body over {limit} bytes; SageMaker's requests "
                                  f"are far smaller: check what is sent", 413)
    return b"".join(chunks)


class Server:
    """The HTTP side. `keys`: access key id -> secret; None accepts unsigned requests (the
    loopback default, like any local AWS emulator)."""

    def __init__(self, api: Api, keys: dict[str, str] | None, say: Callable[[str], None]):
        self.api, self.keys, self.say = api, keys, say

    def authorize(self, request: Request, body: bytes) -> str:
        """The region of the request (its credential scope); verified when keys are set."""
        if self.keys is not None:
            scope = verify(request.method, str(request.url), dict(request.headers), body,
                           self.keys)
        else:
            scope = scope_of(request.headers.get("authorization"))
        return scope.region if scope else DEFAULT_REGION

    async def control(self, request: Request) -> Response:
        """Every POST / : the JSON 1.1 services by X-Amz-Target, STS by its form."""
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        target = request.headers.get("x-amz-target", "")
        operation, status = target or "(none)", 200
        try:
            body = await read_limited(request, MAX_REQUEST_BYTES)
            region = self.authorize(request, body)
            if target.startswith((SAGEMAKER_TARGET, LOGS_TARGET, CLOUDWATCH_TARGET)):
                operation = target.split(".", 1)[1]
                payload = await self._json_operation(target, operation, body, region)
                kind = "application/x-amz-json-1.0" if target.startswith(
                    CLOUDWATCH_TARGET) else JSON_TYPE
                return Response(payload, headers={"Content-Type": kind,
                                                  "x-amzn-RequestId": request_id})
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:  # the query protocol: STS, IAM
                operation = form["Action"][0]
                status, xml = query_protocol.answer(form, request_id)
                return Response(xml, status_code=status, media_type="text/xml")
            raise ApiError(UNKNOWN_OPERATION, "no X-Amz-Target header: send SageMaker "
                                              "requests with an AWS SDK (boto3, the SageMaker "
                                              "Python SDK)")
        except ApiError as error:
            status = error.status
            return _cloudwatch_json_error(error) if target.startswith(
                CLOUDWATCH_TARGET) else _json_error(error)
        except Exception as exc:  # noqa: BLE001 - a bug of hpt's: logged, answered in shape
            status = 500
            return _json_error(self._internal(exc, operation, request_id))
        finally:
            self.say(json.dumps({"time": round(time.time(), 3), "operation": operation,
                                 "status": status,
                                 "ms": round((time.perf_counter() - started) * 1000, 1)}))

    def _internal(self, exc: Exception, operation: str, request_id: str) -> ApiError:
        """An unexpected failure (a bug of hpt's): its traceback to the server's log, an
        InternalFailure naming the request to the client."""
        self.say(f"hpt api: {operation} failed: {type(exc).__name__}: {exc}\n"
                 f"{traceback.format_exc()}")
        return ApiError(INTERNAL, f"hpt api could not complete {operation} "
                                  f"({type(exc).__name__}); the server's log says why "
                                  f"(request id {request_id})", 500)

    async def _json_operation(self, target: str, operation: str, body: bytes,
                              region: str) -> bytes:
        service, table = {SAGEMAKER_TARGET: ("sagemaker", self.api.sagemaker),
                          LOGS_TARGET: ("logs", self.api.logs),
                          CLOUDWATCH_TARGET: ("cloudwatch", self.api.cloudwatch)}[
            target.split(".", 1)[0] + "."]
        handler = self._handler(service, table, operation)
        params = protocol.parse_json_request(service, operation, body)
        result = await run_in_threadpool(handler, params, Context(region))
        return protocol.json_response(service, operation, result)

    @staticmethod
    def _handler(service: str, table: dict, operation: str):
        handler = table.get(operation)
        if handler is None:
            protocol.operation_model(service, operation)  # unknown to AWS itself?
            raise ApiError(UNKNOWN_OPERATION, f"{operation}: hpt api does not serve this "
                                              f"operation (docs/api.md lists those it does)")
        return handler

    async def rpc_v2(self, request: Request) -> Response:
        """Smithy RPC v2 CBOR: `POST /service/<service>/operation/<operation>` (CloudWatch)."""
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        operation, status = request.path_params["operation"], 200
        try:
            body = await read_limited(request, MAX_REQUEST_BYTES)
            region = self.authorize(request, body)
            if request.path_params["service"] != CLOUDWATCH_SERVICE:
                raise ApiError(UNKNOWN_OPERATION, f"hpt api speaks RPC v2 CBOR for CloudWatch "
                                                  f"({CLOUDWATCH_SERVICE}) only")
            handler = self._handler("cloudwatch", self.api.cloudwatch, operation)
            params = protocol.parse_cbor_request("cloudwatch", operation, body)
            result = await run_in_threadpool(handler, params, Context(region))
            return Response(protocol.cbor_response("cloudwatch", operation, result), headers={
                "smithy-protocol": SMITHY_PROTOCOL, "Content-Type": CBOR_TYPE,
                "x-amzn-RequestId": request_id})
        except ApiError as error:
            status = error.status
            return _cbor_error(error, request_id)
        except Exception as exc:  # noqa: BLE001 - a bug of hpt's: logged, answered in shape
            status = 500
            return _cbor_error(self._internal(exc, operation, request_id), request_id)
        finally:
            self.say(json.dumps({"time": round(time.time(), 3), "operation": operation,
                                 "status": status,
                                 "ms": round((time.perf_counter() - started) * 1000, 1)}))

    async def invocations(self, request: Request) -> Response:
        """sagemaker-runtime's InvokeEndpoint, through the endpoint's router."""
        started = time.perf_counter()
        name = request.path_params["name"]
        try:
            if self.keys is not None:
                # The signature covers the body: read it whole (at most 6 MiB) first.
                body = await read_limited(request, MAX_PAYLOAD_BYTES)
                self.authorize(request, body)
                request = _replayed(request, body)
            router = self.api.endpoints.router_of(name)
            response = await router.invocations(request)
            if response.status_code >= 300:
                response = _invocation_error(response)
        except ApiError as error:
            response = _runtime_error(error)
        self.say(json.dumps({"time": round(time.time(), 3), "operation": "InvokeEndpoint",
                             "endpoint": name, "status": response.status_code,
                             "ms": round((time.perf_counter() - started) * 1000, 1)}))
        return response


def _invocation_error(response: Response) -> Response:
    """A failed invocation as sagemaker-runtime says it: the endpoint's own refusals as
    ValidationError (ServiceUnavailable when a model did not answer), a model's answer as
    ModelError with its status and message."""
    message = response.body.decode("utf-8", "replace")[:2000]
    if response.headers.get(ROUTER_ERROR_HEADER):
        if response.status_code == 502:
            return _runtime_error(ApiError("ServiceUnavailable", message, 503))
        return _runtime_error(ApiError("ValidationError", message,
                                       413 if response.status_code == 413 else 400))
    variant = response.headers.get("x-amzn-invoked-production-variant", "")
    side = "client" if response.status_code < 500 else "server"
    return _runtime_error(
        ApiError("ModelError", f"Received {side} error ({response.status_code}) from "
                               f"{variant} with message \"{message}\".", 424),
        OriginalStatusCode=response.status_code, OriginalMessage=message)


def create_app(api: Api, keys: dict[str, str] | None, say: Callable[[str], None],
               on_startup: Callable[[asyncio.AbstractEventLoop], None] | None = None):
    """The ASGI app; `on_startup` gets the event loop once it runs."""
    server = Server(api, keys, say)

    @asynccontextmanager
    async def lifespan(app):
        if on_startup is not None:
            on_startup(asyncio.get_running_loop())
        yield

    return Starlette(routes=[
        Route("/endpoints/{name}/invocations", server.invocations, methods=["POST"]),
        Route("/", server.control, methods=["POST"]),
        Route("/service/{service}/operation/{operation}", server.rpc_v2, methods=["POST"]),
    ], lifespan=lifespan)


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


