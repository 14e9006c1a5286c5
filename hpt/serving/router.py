"""The endpoint: a Starlette app that routes each invocation to one production variant.

SageMaker's real-time endpoint contract: `GET /ping`, `POST /invocations` (6 MB payload),
the chosen variant in `X-Amzn-Invoked-Production-Variant`. Around it: an optional shadow
(a copy of each request, answered by nobody), an optional canary rollout, `/metrics`
(Prometheus text) and loopback-only `/admin/*`.

The request path never waits on anything but the chosen variant: shadow copies are
detached tasks started after the production answer is in hand, and log lines go through
bounded queues to writer threads.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

import aiohttp
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hpt.serving.canary import BAKING, Canary
from hpt.serving.jsonl import JsonlWriter
from hpt.serving.plan import choose
from hpt.serving.stats import VariantStats, render_metrics

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints' request limit
VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"  # InvokeEndpoint's TargetVariant
# On the answers the router itself gives (not a model's): what the SageMaker API in front
# of it (hpt api) tells apart from a model's own errors.
ROUTER_ERROR_HEADER = "X-Hpt-Router-Error"
INVOKE_TIMEOUT_SECONDS = 60.0        # SageMaker's model response timeout
SHADOW_TIMEOUT_SECONDS = 30.0
SHADOW_MAX_IN_FLIGHT = 64
CANARY_TICK_SECONDS = 0.5
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def predictions_of(body: bytes, content_type: str | None):
    """The `predictions` field of a JSON response, else None."""
    if not body or "json" not in (content_type or ""):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("predictions") if isinstance(data, dict) else None


def _output_of(body: bytes, content_type: str | None):
    """What a model answered, for the shadow log: its predictions, else the body's start."""
    predictions = predictions_of(body, content_type)
    if predictions is not None:
        return predictions
    return body[:500].decode("utf-8", "replace")


def agrees(prod_body: bytes, prod_type: str | None, shadow_body: bytes,
           shadow_type: str | None) -> bool:
    """Same `predictions` when both answers are JSON holding it, else the same bytes."""
    a, b = predictions_of(prod_body, prod_type), predictions_of(shadow_body, shadow_type)
    if a is not None and b is not None:
        return a == b
    return prod_body == shadow_body


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status,
                        headers={**(headers or {}), ROUTER_ERROR_HEADER: "1"})


class Router:
    def __init__(self, backends: dict[str, str], weights: dict[str, float], serving_dir: Path,
                 *, shadow: str | None = None, canary: Canary | None = None,
                 rand: Callable[[], float] = random.random,
                 shadow_max_in_flight: int = SHADOW_MAX_IN_FLIGHT,
                 say: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
                 aliases: dict[str, str] | None = None):
        self.backends = dict(backends)       # training job -> base URL of its serving program
        self.aliases = dict(aliases or {})   # "best", trial numbers -> training job
        self.weights = dict(weights)
        self.shadow = shadow
        self.canary = canary
        self.rand = rand
        self.say = say
        self.clock = clock
        self.shadow_max_in_flight = shadow_max_in_flight
        self.stats = {name: VariantStats() for name in self.weights}
        self.shadow_stats = VariantStats()
        self.shadow_counts: Counter = Counter({"ok": 0, "error": 0, "dropped": 0})
        self.shadow_compared = 0
        self.shadow_agreed = 0
        self._shadow_tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        serving_dir = Path(serving_dir)
        serving_dir.mkdir(parents=True, exist_ok=True)
        self.access_log = JsonlWriter(serving_dir / "access.jsonl")
        self.shadow_log = JsonlWriter(serving_dir / "shadow.jsonl") if shadow else None
        if canary is not None:
            self.weights = canary.weights()
            self.stats.update({name: VariantStats() for name in self.weights
                               if name not in self.stats})
        self.app = Starlette(routes=[
            Route("/ping", self.ping, methods=["GET"]),
            Route("/invocations", self.invocations, methods=["POST"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/admin/variants", self.get_variants, methods=["GET"]),
            Route("/admin/variants", self.set_variants, methods=["POST"]),
            Route("/admin/canary", self.get_canary, methods=["GET"]),
        ], lifespan=self._lifespan, exception_handlers={HTTPException: self._http_error})

    async def _http_error(self, request: Request, exc: HTTPException) -> Response:
        """404 / 405 as JSON errors, like every other answer of the endpoint."""
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}; "
                                       f"the endpoint answers GET /ping, POST /invocations, "
                                       f"GET /metrics, GET|POST /admin/variants, "
                                       f"GET /admin/canary", headers=exc.headers)

    # -- lifecycle ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, app):
        # One pool for every backend: keep-alive connections, no per-request handshakes.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=128),
            auto_decompress=False)
        watcher = asyncio.create_task(self._watch_canary()) if self.canary else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            if self._shadow_tasks:  # let copies in flight finish (bounded), then give up
                await asyncio.wait(set(self._shadow_tasks), timeout=5.0)
                for task in set(self._shadow_tasks):
                    task.cancel()
            await self._session.close()

    def close(self) -> None:
        """Writes the queued log lines; after the server stopped."""
        self.access_log.close()
        if self.shadow_log is not None:
            self.shadow_log.close()

    # -- the endpoint ------------------------------------------------------------------------

    async def ping(self, request: Request) -> Response:
        live = [name for name, w in self.weights.items() if w > 0]
        codes = await asyncio.gather(*(self._ping(name) for name in live))
        down = {name: code for name, code in zip(live, codes) if code != 200}
        if down:
            return _error(503, "variants not ready: " + ", ".join(
                f"{name} ({code or 'unreachable'})" for name, code in down.items()))
        return JSONResponse({"status": "ok", "variants": live})

    async def _ping(self, name: str) -> int | None:
        try:
            async with self._session.get(f"{self.backends[name]}/ping",
                                         timeout=aiohttp.ClientTimeout(total=2.0)) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None

    async def invocations(self, request: Request) -> Response:
        start = time.perf_counter()
        body = await self._read_limited(request)
        if body is None:
            self._access(None, 413, start, 0, 0, request)
            return _error(413, f"payload larger than {MAX_PAYLOAD_BYTES} bytes (SageMaker's "
                               f"6 MB limit); send fewer instances per request")
        target = request.headers.get(TARGET_VARIANT_HEADER)
        if target is not None and target not in self.weights:
            self._access(None, 400, start, len(body), 0, request)
            return _error(400, f"{TARGET_VARIANT_HEADER}: {target!r} is not a production "
                               f"variant of this endpoint (its variants: "
                               f"{', '.join(self.weights)})")
        variant = target if target is not None else choose(self.weights, self.rand)
        headers = {k: request.headers[k] for k in ("content-type", "accept",
                                                    "x-amzn-sagemaker-custom-attributes")
                   if k in request.headers}
        status, payload, content_type, reached = await self._forward(
            variant, body, headers, INVOKE_TIMEOUT_SECONDS)
        seconds = time.perf_counter() - start
        self.stats[variant].record(self.clock(), seconds, status)
        self._access(variant, status, start, len(body), len(payload), request)
        if self.shadow is not None:
            self._spawn_shadow(variant, body, headers, status, payload, content_type)
        out = {VARIANT_HEADER: variant}
        if not reached:
            out[ROUTER_ERROR_HEADER] = "1"
        if content_type:
            out["Content-Type"] = content_type
        return Response(payload, status_code=status, headers=out)

    async def _read_limited(self, request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_PAYLOAD_BYTES:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_PAYLOAD_BYTES:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _forward(self, name: str, body: bytes, headers: dict,
                       timeout: float) -> tuple[int, bytes, str | None, bool]:
        """(status, body, content type, True) of the backend's answer; (502, ..., False)
        when it did not answer."""
        try:
            async with self._session.post(f"{self.backends[name]}/invocations", data=body,
                                          headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status, await resp.read(), resp.headers.get("Content-Type"), True
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            data = json.dumps({"error": f"variant {name} did not answer ({reason})"}).encode()
            return 502, data, "application/json", False

    def _access(self, variant, status, start, bytes_in, bytes_out, request) -> None:
        self.access_log.write({
            "time": time.time(), "variant": variant, "status": status,
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            "bytes_in": bytes_in, "bytes_out": bytes_out,
            "client": request.client.host if request.client else None})

    # -- shadow ------------------------------------------------------------------------------

    def _spawn_shadow(self, variant, body, headers, status, payload, content_type) -> None:
        if len(self._shadow_tasks) >= self.shadow_max_in_flight:
            self.shadow_counts["dropped"] += 1
            self.shadow_log.write({"time": time.time(), "variant": variant, "shadow": self.shadow,
                                   "outcome": "dropped"})
            return
        task = asyncio.create_task(
            self._shadow_copy(variant, body, headers, status, payload, content_type))
        self._shadow_tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow_copy(self, variant, body, headers, prod_status, prod_body,
                           prod_type) -> None:
        start = time.perf_counter()
        status, payload, content_type, _ = await self._forward(
            self.shadow, body, headers, SHADOW_TIMEOUT_SECONDS)
        seconds = time.perf_counter() - start
        self.shadow_stats.record(self.clock(), seconds, status)
        ok = 200 <= status < 300
        self.shadow_counts["ok" if ok else "error"] += 1
        agree = None
        if ok and 200 <= prod_status < 300:
            agree = agrees(prod_body, prod_type, payload, content_type)
            self.shadow_compared += 1
            self.shadow_agreed += agree
        self.shadow_log.write({
            "time": time.time(), "variant": variant, "shadow": self.shadow,
            "outcome": "ok" if ok else "error", "production_status": prod_status,
            "shadow_status": status, "shadow_latency_ms": round(seconds * 1000, 3),
            "agree": agree, "shadow_output": _output_of(payload, content_type),
            # Where they differ, what production answered: the two side by side.
            **({"production_output": _output_of(prod_body, prod_type)} if agree is False
               else {}),
            **({"shadow_error": payload[:500].decode("utf-8", "replace")} if not ok else {})})

    @property
    def shadow_agreement(self) -> float | None:
        return self.shadow_agreed / self.shadow_compared if self.shadow_compared else None

    # -- canary ------------------------------------------------------------------------------

    async def _watch_canary(self) -> None:
        canary = self.canary
        self.say(f"canary: {canary.plan.green} gets {canary.percent}% "
                 f"(steps {','.join(map(str, canary.plan.steps))}, "
                 f"{canary.plan.bake_seconds:g} s each)")
        while canary.state == BAKING:
            await asyncio.sleep(CANARY_TICK_SECONDS)
            line = canary.tick(self.clock(), self.stats[canary.plan.green].window(
                canary.step_started))
            if line is not None:
                self.weights = canary.weights()  # at once: the next request sees it
                self.say(line)
                self.access_log.write({"time": time.time(), "event": "canary", "message": line,
                                       **canary.as_dict()})

    # -- observability and admin -------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        dropped = self.access_log.dropped + (self.shadow_log.dropped if self.shadow_log else 0)
        text = render_metrics(self.stats, self.weights, dict(self.shadow_counts),
                              self.shadow_agreement,
                              self.shadow_stats if self.shadow else None,
                              self.canary.as_dict() if self.canary else None, dropped)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    def _admin_refused(self, request: Request) -> Response | None:
        if request.client is None or request.client.host not in LOOPBACK:
            return _error(403, "admin endpoints answer loopback clients only")
        return None

    async def get_variants(self, request: Request) -> Response:
        if (refused := self._admin_refused(request)) is not None:
            return refused
        names = list(self.backends)
        codes = await asyncio.gather(*(self._ping(name) for name in names))
        health = dict(zip(names, codes))
        variants = {}
        for name in self.weights:
            stats = self.stats[name]
            q = stats.quantiles()
            variants[name] = {
                "weight": self.weights[name], "healthy": health.get(name) == 200,
                "requests": stats.count,
                "counts": {str(code): n for code, n in sorted(stats.codes.items())},
                "p50_ms": None if q[0.5] is None else round(q[0.5] * 1000, 3),
                "p99_ms": None if q[0.99] is None else round(q[0.99] * 1000, 3)}
        shadow = None
        if self.shadow:
            shadow = {"name": self.shadow, "healthy": health.get(self.shadow) == 200,
                      "counts": dict(self.shadow_counts), "compared": self.shadow_compared,
                      "agreement": self.shadow_agreement,
                      "in_flight": len(self._shadow_tasks)}
        return JSONResponse({"variants": variants, "shadow": shadow,
                             "canary": self.canary.state if self.canary else None})

    async def set_variants(self, request: Request) -> Response:
        if (refused := self._admin_refused(request)) is not None:
            return refused
        if self.canary is not None and self.canary.state == BAKING:
            return _error(409, f"a canary rollout of {self.canary.plan.green} is in progress "
                               f"and sets the weights; wait until it is Promoted or RolledBack")
        try:
            change = json.loads(await request.body())
        except ValueError:
            change = None
        if not isinstance(change, dict) or not change:
            return _error(400, 'send a JSON object of variant weights, e.g. '
                               '{"' + next(iter(self.weights)) + '": 0.5}')
        change = {self.aliases.get(str(name), name): weight for name, weight in change.items()}
        unknown = [name for name in change if name not in self.weights]
        if unknown:
            return _error(400, f"unknown variant(s) {', '.join(map(repr, unknown))}; variants "
                               f"are {', '.join(self.weights)} (or best, or their trial "
                               f"numbers where hpt serve named them)")
        for name, weight in change.items():
            if (isinstance(weight, bool) or not isinstance(weight, (int, float))
                    or not math.isfinite(weight) or weight < 0):
                return _error(400, f"weight of {name!r} is {weight!r}; give a finite number "
                                   f">= 0")
        weights = {**self.weights, **{k: float(v) for k, v in change.items()}}
        if sum(weights.values()) <= 0:
            return _error(400, "the weights would sum to 0, so no variant would get traffic; "
                               "give at least one variant a weight > 0")
        self.weights = weights
        self.say("weights now " + ", ".join(f"{k}={v:g}" for k, v in weights.items()))
        self.access_log.write({"time": time.time(), "event": "weights", "weights": weights})
        return JSONResponse({"variants": {k: {"weight": v} for k, v in weights.items()}})

    async def get_canary(self, request: Request) -> Response:
        if (refused := self._admin_refused(request)) is not None:
            return refused
        if self.canary is None:
            return JSONResponse({"state": None, "message": "no canary: start hpt serve with "
                                                           "--canary SPEC"})
        return JSONResponse(self.canary.as_dict())
