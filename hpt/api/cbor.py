"""CBOR (RFC 8949), the body of AWS's Smithy RPC v2 CBOR protocol (pure).

CloudWatch's botocore model lists it first among its protocols (botocore itself still
prefers JSON 1.0; SDKs that follow the model's order send CBOR), so `hpt api` reads and
writes it to answer any CloudWatch client unchanged. Only what
that protocol uses is here: integers, byte and text strings, arrays, maps (definite and
indefinite lengths), tag 1 (epoch-seconds timestamps), floats, true/false/null. Decoding
gives plain Python values (a timestamp as its epoch number: the shape-driven decoding of
hpt/api/wire_protocol.py turns it into a datetime); encoding takes the values
wire_protocol's `encode_output` made (timestamps already epoch seconds) and the shape, which
says where a number is a timestamp to tag.
"""

from __future__ import annotations

import math
import struct
from typing import Any

BREAK = 0xFF
_INDEFINITE = 31
_EPOCH_TAG = 1


class CborError(ValueError):
    """A body that is not the CBOR this protocol sends."""


# -- decoding ----------------------------------------------------------------------------------

def decode(data: bytes) -> Any:
    """The one data item of `data`; CborError for anything else (trailing bytes included)."""
    value, end = _item(memoryview(data), 0)
    if end != len(data):
        raise CborError(f"{len(data) - end} bytes after the CBOR item")
    return value


def _need(data: memoryview, at: int, size: int) -> None:
    if at + size > len(data):
        raise CborError("the CBOR body ends inside an item")


def _argument(data: memoryview, at: int, info: int) -> tuple[int, int]:
    """The head's argument (a length, a number, a tag) and where the item goes on."""
    if info < 24:
        return info, at
    if info > 27:
        raise CborError(f"reserved CBOR additional information {info}")
    size = 1 << (info - 24)
    _need(data, at, size)
    return int.from_bytes(data[at:at + size], "big"), at + size


def _item(data: memoryview, at: int, depth: int = 0) -> tuple[Any, int]:
    if depth > 64:
        raise CborError("CBOR nested deeper than 64 levels")
    _need(data, at, 1)
    head = data[at]
    major, info, at = head >> 5, head & 0x1F, at + 1
    if major == 7:
        return _simple(data, at, info)
    if info == _INDEFINITE and major in (2, 3, 4, 5):
        return _indefinite(data, at, major, depth)
    arg, at = _argument(data, at, info)
    if major == 0:
        return arg, at
    if major == 1:
        return -1 - arg, at
    if major in (2, 3):
        _need(data, at, arg)
        raw = bytes(data[at:at + arg])
        return (raw if major == 2 else _text(raw)), at + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, at = _item(data, at, depth + 1)
            items.append(item)
        return items, at
    if major == 5:
        mapping = {}
        for _ in range(arg):
            key, at = _item(data, at, depth + 1)
            mapping[key], at = _item(data, at, depth + 1)
        return mapping, at
    value, at = _item(data, at, depth + 1)  # major 6: a tag; 1 (epoch time) is all AWS sends
    if arg != _EPOCH_TAG or not isinstance(value, (int, float)):
        raise CborError(f"CBOR tag {arg} is not one this protocol uses")
    return value, at


def _indefinite(data: memoryview, at: int, major: int, depth: int) -> tuple[Any, int]:
    parts: list = []
    while True:
        _need(data, at, 1)
        if data[at] == BREAK:
            at += 1
            break
        item, at = _item(data, at, depth + 1)
        parts.append(item)
    if major == 2:
        return b"".join(parts), at
    if major == 3:
        return "".join(parts), at
    if major == 4:
        return parts, at
    if len(parts) % 2:
        raise CborError("an indefinite CBOR map with a key but no value")
    return dict(zip(parts[::2], parts[1::2])), at


def _simple(data: memoryview, at: int, info: int) -> tuple[Any, int]:
    if info in (20, 21):
        return info == 21, at
    if info in (22, 23):
        return None, at  # null, undefined
    formats = {25: ">e", 26: ">f", 27: ">d"}
    if info not in formats:
        raise CborError(f"CBOR simple value {info} is not one this protocol uses")
    size = struct.calcsize(formats[info])
    _need(data, at, size)
    return struct.unpack(formats[info], data[at:at + size])[0], at + size


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CborError("a CBOR text string that is not UTF-8") from None


# -- encoding ----------------------------------------------------------------------------------

def encode(value: Any, shape=None) -> bytes:
    """`value` as CBOR; numbers where `shape` (a botocore shape) has a timestamp get tag 1."""
    out = bytearray()
    _put(out, value, shape)
    return bytes(out)


def _head(out: bytearray, major: int, arg: int) -> None:
    if arg < 24:
        out.append(major << 5 | arg)
        return
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            out.append(major << 5 | info)
            out += arg.to_bytes(size, "big")
            return
    raise CborError(f"an integer too large for CBOR: {arg}")


def _put(out: bytearray, value: Any, shape) -> None:
    kind = shape.type_name if shape is not None else None
    if kind == "timestamp" and isinstance(value, (int, float)):
        _head(out, 6, _EPOCH_TAG)
        _put(out, float(value), None)
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, bool):
        out.append(0xF5 if value else 0xF4)
    elif isinstance(value, int):
        _head(out, 0, value) if value >= 0 else _head(out, 1, -1 - value)
    elif isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and kind in ("integer", "long"):
            _head(out, 0 if value >= 0 else 1, int(value) if value >= 0 else -1 - int(value))
        else:
            out.append(0xFB)
            out += struct.pack(">d", value)
    elif isinstance(value, (bytes, bytearray)):
        _head(out, 2, len(value))
        out += value
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        _head(out, 3, len(raw))
        out += raw
    elif isinstance(value, (list, tuple)):
        _head(out, 4, len(value))
        member = shape.member if kind == "list" else None
        for item in value:
            _put(out, item, member)
    elif isinstance(value, dict):
        _head(out, 5, len(value))
        for key, item in value.items():
            _put(out, key, None)
            _put(out, item, _member(shape, kind, key))
    else:
        raise CborError(f"cannot encode {type(value).__name__} as CBOR")


def _member(shape, kind: str | None, key: str):
    if kind == "structure":
        return shape.members.get(key)
    if kind == "map":
        return shape.value
    return None
