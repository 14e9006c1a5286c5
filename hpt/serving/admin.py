"""`hpt serve-weights`: the client side of `POST /admin/variants`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from hpt.core.errors import UserError
from hpt.serving.plan import parse_assignment


def set_weights(url: str, assignments: list[str], timeout: float = 10.0) -> dict:
    """Sends `NAME=W ...` to a running `hpt serve`; returns its answer (the new weights)."""
    change = dict(parse_assignment(a, "serve-weights") for a in assignments)
    request = urllib.request.Request(f"{url.rstrip('/')}/admin/variants", method="POST",
                                     data=json.dumps(change).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except ValueError:
            message = ""
        raise UserError(f"{url}: {exc.code} {message or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"--url {url}: no hpt serve answers there ({reason}); start one with "
                        f"`hpt serve NAME` or pass its --url") from None
