"""Checking an AWS Signature Version 4 the way AWS does: botocore computes the signature of
the request as received, with the signed headers it names and the secret of the access key
it claims; the two must be equal (compared in constant time), and the request's date within
15 minutes of now (pure, but for the clock)."""

from __future__ import annotations

import datetime as dt
import hmac
import re
from dataclasses import dataclass

from hpt.api.wire_protocol import (MISSING_AUTH, SIGNATURE, UNRECOGNIZED_CLIENT, ApiError)

_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/"
                   r"(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/aws4_request,\s*"
                   r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$")
MAX_SKEW = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Scope:
    access_key: str
    region: str
    service: str


def scope_of(authorization: str | None) -> Scope | None:
    """The credential scope an Authorization header claims (None when it has none)."""
    found = _AUTH.match(authorization or "")
    return Scope(found["key"], found["region"], found["service"]) if found else None


def verify(method: str, url: str, headers: dict[str, str], body: bytes,
           keys: dict[str, str], now: dt.datetime | None = None) -> Scope:
    """The request's scope when its signature is good; ApiError as AWS answers otherwise.
    `headers` as received (any case); `keys`: access key id -> secret."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    lower = {k.lower(): v for k, v in headers.items()}
    found = _AUTH.match(lower.get("authorization", ""))
    if not found:
        raise ApiError(MISSING_AUTH, "Missing Authentication Token: sign the request with "
                                     "AWS Signature Version 4", 403)
    secret = keys.get(found["key"])
    if secret is None:
        raise ApiError(UNRECOGNIZED_CLIENT, "The security token included in the request is "
                                            "invalid.", 403)
    stamp = lower.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise ApiError(SIGNATURE, "The request has no valid X-Amz-Date header.", 403) from None
    now = now or dt.datetime.now(dt.timezone.utc)
    if abs(now - when) > MAX_SKEW:
        raise ApiError(SIGNATURE, f"Signature expired: {stamp} is now earlier than "
                                  f"{(now - MAX_SKEW):%Y%m%dT%H%M%SZ} (the request's clock is "
                                  f"off by more than 15 minutes)", 403)
    signed = found["signed"].split(";")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: lower.get(name, "") for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(found["key"], secret), found["service"], found["region"])
    # What add_auth would sign, minus its own date and headers: the request as it came.
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, found["signature"]):
        raise ApiError(SIGNATURE, "The request signature we calculated does not match the "
                                  "signature you provided. Check your AWS Secret Access Key "
                                  "and signing method.", 403)
    return Scope(found["key"], found["region"], found["service"])
