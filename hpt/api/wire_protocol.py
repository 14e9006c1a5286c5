"""The AWS wire protocols `hpt api` speaks, driven by botocore's own service models (the JSON
files boto3 ships): no request or response schema is written down in hpt.

- `parse_json_request`: a JSON 1.1 body (SageMaker, CloudWatch Logs) -> the operation's
  parameters, checked as the service checks them: botocore's ParamValidator (required
  members, types, minimums) plus what it leaves to the server (maximum lengths and values,
  enums, patterns), each problem named by its parameter path.
- `json_response`: the operation's output as the service sends it: only the members the
  output shape has, timestamps as epoch seconds, and checked against the shape (a response
  hpt would send wrong is an InternalFailure naming the member, never a silent mismatch).
- `ApiError`: an error as AWS sends one (`__type` and `message` in the body,
  `x-amzn-ErrorType` in the headers), with the HTTP status the service uses.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
from typing import Any

from hpt.core.sagemaker_names import service_model

# The errors SageMaker's API answers with (its model's exception shapes, plus the common
# AWS ones every JSON service has).
VALIDATION = "ValidationException"
NOT_FOUND = "ResourceNotFound"
IN_USE = "ResourceInUse"
LIMIT = "ResourceLimitExceeded"
UNKNOWN_OPERATION = "UnknownOperationException"
INTERNAL = "InternalFailure"
SIGNATURE = "InvalidSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"
TOO_LARGE = "RequestEntityTooLarge"
MISSING_AUTH = "MissingAuthenticationTokenException"


class ApiError(Exception):
    """An error answer: `code` is the AWS error code, `status` its HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def body(self) -> bytes:
        return json.dumps({"__type": self.code, "message": self.message}).encode()

    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.code, "Content-Type": "application/x-amz-json-1.1"}


def operation_model(service: str, operation: str):
    """The botocore OperationModel, or ApiError UnknownOperation."""
    model = service_model(service)
    if operation not in model.operation_names:
        raise ApiError(UNKNOWN_OPERATION, f"{operation} is not an operation of "
                                          f"{model.metadata.get('serviceId', service)}")
    return model.operation_model(operation)


def parse_json_request(service: str, operation: str, body: bytes) -> dict[str, Any]:
    """The parameters of a JSON 1.1 request body, validated; ApiError ValidationException
    naming every problem otherwise."""
    op = operation_model(service, operation)
    try:
        params = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(VALIDATION, f"{operation}: the request body is not JSON") from None
    if not isinstance(params, dict):
        raise ApiError(VALIDATION, f"{operation}: the request body must be a JSON object")
    return checked_request(op, params)


def parse_cbor_request(service: str, operation: str, body: bytes) -> dict[str, Any]:
    """The parameters of a Smithy RPC v2 CBOR request body (CloudWatch's), validated."""
    from hpt.api.cbor import CborError, decode

    op = operation_model(service, operation)
    try:
        params = decode(body) if body else {}
    except CborError as exc:
        raise ApiError(VALIDATION, f"{operation}: the request body is not CBOR ({exc})") \
            from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ApiError(VALIDATION, f"{operation}: the request body must be a CBOR map")
    return checked_request(op, params)


def checked_request(op, params: dict[str, Any]) -> dict[str, Any]:
    """A request's decoded body checked against the operation's input shape."""
    problems = request_problems(op.input_shape, params)
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more"
                                            if len(problems) > 10 else "")
        raise ApiError(VALIDATION, f"{len(problems)} validation error"
                                   f"{'s' if len(problems) > 1 else ''} detected: {shown}")
    return _decode(op.input_shape, params)


def request_problems(shape, params: dict[str, Any]) -> list[str]:
    """Every way `params` breaks the shape: botocore's checks, then the server-side ones."""
    from botocore.validate import ParamValidator

    if shape is None:
        return [] if not params else [f"{k}: unknown parameter" for k in params]
    report = ParamValidator().validate(params, shape)
    problems = []
    if report.has_errors():
        problems = [ln.strip() for ln in report.generate_report().splitlines()
                    if ln.strip() and ln.strip() != "Parameter validation failed:"]
    _constraints(shape, params, shape.name, problems)
    return problems


def _constraints(shape, value: Any, path: str, out: list[str]) -> None:
    """What ParamValidator leaves to the service: max, enum, pattern."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members and item is not None:
                _constraints(shape.members[key], item, f"{path}.{key}", out)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: at most {meta['max']} items (got {len(value)})")
        for i, item in enumerate(value):
            _constraints(shape.member, item, f"{path}[{i}]", out)
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: at most {meta['max']} entries (got {len(value)})")
        for key, item in value.items():
            _constraints(shape.key, key, f"{path} key {key!r}", out)
            _constraints(shape.value, item, f"{path}.{key}", out)
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: at most {meta['max']} characters (got {len(value)})")
        if shape.enum and value not in shape.enum:
            shown = ", ".join(shape.enum[:12]) + (", ..." if len(shape.enum) > 12 else "")
            out.append(f"{path}: {value!r} is not one of {shown}")
        pattern = _pattern(meta.get("pattern"))
        if pattern is not None and not pattern.fullmatch(value):
            out.append(f"{path}: {value[:80]!r} does not match the pattern "
                       f"{meta['pattern'][:120]}")
    elif kind in ("integer", "long", "float", "double") and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        if "max" in meta and value > meta["max"]:
            out.append(f"{path}: at most {meta['max']} (got {value})")


@functools.lru_cache(maxsize=4096)
def _pattern(text: str | None):
    """The model's pattern as a Python regex; None when it has none or Python cannot read it
    (the models write Java regexes; nearly all are also Python's)."""
    if not text:
        return None
    try:
        return re.compile(text, re.DOTALL)
    except re.error:
        return None


def _decode(shape, value: Any) -> Any:
    """JSON values -> Python ones where the wire form differs: timestamps (epoch seconds or
    ISO 8601) -> aware datetimes, blobs (base64) -> bytes."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {k: _decode(shape.members.get(k), v) for k, v in value.items()}
    if kind == "list":
        return [_decode(shape.member, v) for v in value]
    if kind == "map":
        return {k: _decode(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)
    if kind == "blob" and isinstance(value, str):
        return base64.b64decode(value)
    return value


def encode_output(shape, value: Any, path: str = "") -> Any:
    """Python values -> the JSON the service sends: members of the shape only (None left
    out), datetimes and epoch numbers as epoch seconds, bytes as base64."""
    if shape is None or value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ApiError(INTERNAL, f"hpt built {path or shape.name} as "
                                     f"{type(value).__name__}, not a structure", 500)
        unknown = [k for k in value if k not in shape.members]
        if unknown:
            raise ApiError(INTERNAL, f"hpt put {unknown} into {path or shape.name}, which "
                                     f"has no such member", 500)
        out = {}
        for key, item in value.items():
            encoded = encode_output(shape.members[key], item, f"{path}.{key}".lstrip("."))
            if encoded is not None:
                out[key] = encoded
        return out
    if kind == "list":
        return [encode_output(shape.member, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map":
        return {k: encode_output(shape.value, v, f"{path}.{k}") for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            return value.timestamp()
        return float(value)
    if kind == "blob":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    if kind in ("float", "double") and isinstance(value, (int, float)):
        return float(value)
    return value


def json_response(service: str, operation: str, result: dict[str, Any]) -> bytes:
    """The response body of a JSON 1.1 operation, checked against its output shape."""
    return json.dumps(checked_response(service, operation, result)).encode()


def cbor_response(service: str, operation: str, result: dict[str, Any]) -> bytes:
    """The response body of a Smithy RPC v2 CBOR operation, checked against its shape."""
    from hpt.api.cbor import encode

    op = operation_model(service, operation)
    return encode(checked_response(service, operation, result), op.output_shape)


def checked_response(service: str, operation: str, result: dict[str, Any]) -> dict[str, Any]:
    """The operation's output members in their wire form, checked against its shape."""
    op = operation_model(service, operation)
    encoded = encode_output(op.output_shape, result) if op.output_shape is not None else {}
    if op.output_shape is not None:
        problems = request_problems(op.output_shape, encoded)
        if problems:
            raise ApiError(INTERNAL, f"hpt's {operation} response does not fit SageMaker's "
                                     f"model: {'; '.join(problems[:5])}", 500)
    return encoded or {}
