"""SageMaker's List operations, one rule for all of them (pure): NextToken/MaxResults pages,
SortBy/SortOrder, NameContains, StatusEquals and the time filters; `list_page` applies them
all."""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

from hpt.api.wire_protocol import VALIDATION, ApiError


def list_page(items: list[dict], params: dict[str, Any], *, name_key: str, status_key: str,
              sort_keys: dict[str, Callable], default_sort: str,
              page_size: int) -> tuple[list[dict], str | None]:
    """A List operation's answer from all its summaries: filtered, sorted, one page and the
    token of the next. A filter the operation's request has no member for is never in
    `params` (the protocol refuses members outside the request's shape), so one rule serves
    every List operation."""
    items = filtered(items, params, name_key, status_key)
    items = sort_items(items, params, sort_keys, default_sort)
    return page(items, params, page_size)


def by_name_time_status(name_key: str, status_key: str) -> dict[str, Callable]:
    """The SortBy values most List operations take: Name, CreationTime and Status."""
    return {"Name": lambda i: i[name_key], "CreationTime": lambda i: i["CreationTime"],
            "Status": lambda i: i[status_key]}


def page(items: list, params: dict[str, Any], default: int = 10) -> tuple[list, str | None]:
    """One page of `items` by SageMaker's NextToken/MaxResults; the token is opaque to the
    client (an offset here)."""
    size = int(params.get("MaxResults") or default)
    token = params.get("NextToken")
    start = 0
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(VALIDATION, "NextToken: not a token this server gave out; start "
                                       "again without NextToken") from None
    chunk = items[start:start + size]
    more = start + size < len(items)
    return chunk, (base64.urlsafe_b64encode(json.dumps({"offset": start + size}).encode())
                   .decode() if more else None)


def sort_items(items: list[dict], params: dict[str, Any], keys: dict[str, Callable],
               default: str) -> list[dict]:
    by = params.get("SortBy") or default
    key = keys[by]
    kept = [i for i in items if key(i) is not None]
    return sorted(kept, key=key, reverse=params.get("SortOrder") == "Descending")


def filtered(items: list[dict], params: dict[str, Any], name_key: str,
             status_key: str) -> list[dict]:
    """NameContains, StatusEquals and the time filters of a List operation."""
    if params.get("NameContains"):
        items = [i for i in items if params["NameContains"] in i[name_key]]
    if params.get("StatusEquals"):
        items = [i for i in items if i[status_key] == params["StatusEquals"]]
    return time_filters(items, params)


def time_filters(items: list[dict], params: dict[str, Any]) -> list[dict]:
    """CreationTimeAfter/Before, LastModifiedTimeAfter/Before (datetimes in params)."""
    for param, field, after in (("CreationTimeAfter", "CreationTime", True),
                                ("CreationTimeBefore", "CreationTime", False),
                                ("LastModifiedTimeAfter", "LastModifiedTime", True),
                                ("LastModifiedTimeBefore", "LastModifiedTime", False)):
        if params.get(param) is not None:
            edge = params[param].timestamp()
            items = [i for i in items if (i.get(field) or 0) > edge] if after else \
                [i for i in items if (i.get(field) or 0) < edge]
    return items
