"""Models, endpoint configs and endpoints: SageMaker hosting on hpt's serving stack.

A model is a record (CreateModel's container: image, ModelDataUrl, Environment). An
endpoint is an `hpt serve` router run inside the server (hpt/serving/router.py: weighted
production variants, a shadow variant, SageMaker's headers) in front of one serving process
per variant (hpt/serving/backends.py):

- a SageMaker PyTorch inference image (`…/pytorch-inference:<ver>-cpu-py3x`): the model runs
  as that container would run it, in hpt/serving/framework.py (the user's model_fn/input_fn/
  predict_fn/output_fn from SAGEMAKER_PROGRAM, the framework's defaults for the rest);
- an image mapped with --image-map, or one present on the local engine: `docker run IMAGE
  serve`, SageMaker's contract for a model container.

Endpoints start in the background (Creating -> InService, or Failed with the reason, as
SageMaker's do) and are restarted when the server restarts; DeleteEndpoint stops every
process of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpt.api.listing import by_name_time_status, list_page
from hpt.api.model_server import start_model
from hpt.api.models import CONFIGS, ENDPOINTS, MODELS, Records
from hpt.api.wire_protocol import VALIDATION, ApiError
from hpt.api.records import ApiStore
from hpt.api.tuning import ACCOUNT, arn
from hpt.core.schema import Column
from hpt.core.trial import TrialStatus

START_TIMEOUT_SECONDS = 180.0
# EndpointStatus; a failed endpoint is spelled as a failed training job is.
CREATING, IN_SERVICE, UPDATING, FAILED = ("Creating", "InService", "Updating",
                                          str(TrialStatus.FAILED))


@dataclass
class LiveEndpoint:
    """The processes and the router of one endpoint."""
    backends: dict = field(default_factory=dict)  # variant -> Backend
    router: Any = None
    lifespan: Any = None  # the router's entered lifespan context (on the server's loop)


class Endpoints:
    def __init__(self, store: ApiStore, records: Records, say: Callable[[str], None] = print):
        self.store = store
        self.records = records
        self.say = say
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the server runs
        self._lock = threading.RLock()
        self._live: dict[str, LiveEndpoint] = {}

    # -- endpoints ---------------------------------------------------------------------------

    def create_endpoint(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params["EndpointName"]
        with self._lock:
            self.records.refuse_existing(ENDPOINTS, name, region)
            config = self.records.describe_config(params["EndpointConfigName"])
            now = time.time()
            record = {"EndpointName": name, "EndpointArn": arn("endpoint", name, region),
                      "EndpointConfigName": config["EndpointConfigName"],
                      "EndpointStatus": CREATING, "CreationTime": now,
                      "LastModifiedTime": now, "Weights": _weights(config)}
            self.store.save(ENDPOINTS, name, record)
        self._start_in_background(name, config)
        return {"EndpointArn": record["EndpointArn"]}

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        record = self.records.get(ENDPOINTS, name)
        config = self.store.get(CONFIGS, record["EndpointConfigName"]) or {}
        weights = record.get("Weights") or {}
        serving = record["EndpointStatus"] in (IN_SERVICE, UPDATING)

        def described(variant):
            model = self.store.get(MODELS, variant["ModelName"]) or {}
            image = (model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
                     ).get("Image")
            count = variant.get("InitialInstanceCount", 1)
            weight = weights.get(variant["VariantName"], variant.get("InitialVariantWeight",
                                                                     1.0))
            return {"VariantName": variant["VariantName"],
                    "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": image,
                                        "ResolutionTime": record["CreationTime"]}]
                    if image and serving else None,
                    "CurrentWeight": weight if serving else None, "DesiredWeight": weight,
                    "CurrentInstanceCount": count if serving else None,
                    "DesiredInstanceCount": count}

        out = {k: record[k] for k in ("EndpointName", "EndpointArn", "EndpointConfigName",
                                      "EndpointStatus", "CreationTime", "LastModifiedTime")}
        out["ProductionVariants"] = [described(v) for v in config.get("ProductionVariants", [])]
        if config.get("ShadowProductionVariants"):
            out["ShadowProductionVariants"] = [described(v) for v in
                                               config["ShadowProductionVariants"]]
        if record.get(Column.FAILURE_REASON):
            out[Column.FAILURE_REASON] = record[Column.FAILURE_REASON]
        return out

    def list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        items = [{k: r[k] for k in ("EndpointName", "EndpointArn", "CreationTime",
                                    "LastModifiedTime", "EndpointStatus")}
                 for r in self.store.all(ENDPOINTS)]
        chunk, token = list_page(
            items, params, name_key="EndpointName", status_key="EndpointStatus",
            sort_keys=by_name_time_status("EndpointName", "EndpointStatus"),
            default_sort="CreationTime", page_size=10)
        return {"Endpoints": chunk, "NextToken": token}

    def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        with self._lock:
            record = self.records.get(ENDPOINTS, name)
            if record["EndpointStatus"] != IN_SERVICE:
                raise ApiError(VALIDATION, f"Cannot update endpoint {name}: it is "
                                           f"{record['EndpointStatus']}; wait until InService")
            config = self.records.describe_config(params["EndpointConfigName"])
            record.update(EndpointStatus=UPDATING, LastModifiedTime=time.time(),
                          PendingConfig=config["EndpointConfigName"])
            self.store.save(ENDPOINTS, name, record)
        self._start_in_background(name, config, update=True)
        return {"EndpointArn": record["EndpointArn"]}

    def update_weights(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        with self._lock:
            record = self.records.get(ENDPOINTS, name)
            live = self._live.get(name)
            if record["EndpointStatus"] != IN_SERVICE or live is None:
                raise ApiError(VALIDATION, f"Cannot update endpoint {name}: it is "
                                           f"{record['EndpointStatus']}; wait until InService")
            weights = dict(live.router.weights)
            for change in params["DesiredWeightsAndCapacities"]:
                variant = change["VariantName"]
                if variant not in weights:
                    raise ApiError(VALIDATION, f"The variant name(s) [{variant}] is/are not "
                                               f"present in endpoint {name} (its variants: "
                                               f"{', '.join(weights)})")
                if "DesiredWeight" in change:
                    weights[variant] = float(change["DesiredWeight"])
            if sum(weights.values()) <= 0:
                raise ApiError(VALIDATION, "The weights would sum to 0, so no variant would "
                                           "get traffic; give one a weight > 0")
            live.router.weights = weights
            record.update(Weights=weights, LastModifiedTime=time.time())
            self.store.save(ENDPOINTS, name, record)
            self.say(f"hpt api: endpoint {name}: weights now "
                     + ", ".join(f"{k}={v:g}" for k, v in weights.items()))
        return {"EndpointArn": record["EndpointArn"]}

    def delete_endpoint(self, name: str) -> dict[str, Any]:
        with self._lock:
            self.records.get(ENDPOINTS, name)
            live = self._live.pop(name, None)
            self.store.delete(ENDPOINTS, name)
        if live is not None:
            self._stop(live)
        shutil.rmtree(self.store.root / "serving" / name, ignore_errors=True)
        return {}

    def router_of(self, name: str):
        """The live router of an InService endpoint, or ApiError as sagemaker-runtime says.
        On every invocation: a live endpoint costs a dict lookup, no file read."""
        live = self._live.get(name)
        if live is not None and live.router is not None:
            return live.router
        record = self.store.get(ENDPOINTS, name)
        if record is None:
            raise ApiError("ValidationError", f"Endpoint {name} of account {ACCOUNT} not "
                                              f"found.")
        raise ApiError("ValidationError", f"Endpoint {name} is {record['EndpointStatus']}; "
                                          f"invoke it once it is InService")

    def logs_of(self, name: str) -> tuple[dict[str, Path], float]:
        """Each variant's serving log in the endpoint's newest fleet, by `<variant>/algo-1`,
        and when the endpoint was created (CloudWatch Logs' /aws/sagemaker/Endpoints/NAME)."""
        from hpt.serving.backends import SERVE_LOG

        record = self.records.get(ENDPOINTS, name)
        fleets = sorted((p for p in (self.store.root / "serving" / name).glob("*")
                         if p.name.isdigit()), key=lambda p: int(p.name))
        logs = {f"{v.name}/algo-1": v / SERVE_LOG for v in sorted(fleets[-1].iterdir())
                if (v / SERVE_LOG).is_file()} if fleets else {}
        return logs, record["CreationTime"]

    # -- lifecycle ---------------------------------------------------------------------------

    def restore(self) -> None:
        """After a restart: every endpoint that was serving (or starting) starts again."""
        for record in self.store.all(ENDPOINTS):
            if record["EndpointStatus"] in (CREATING, IN_SERVICE, UPDATING):
                config = self.store.get(CONFIGS, record["EndpointConfigName"])
                if config is None:
                    self._fail(record["EndpointName"], "its endpoint configuration was "
                                                       "deleted; update it with another")
                    continue
                record["EndpointStatus"] = CREATING
                record.pop("PendingConfig", None)
                self.store.save(ENDPOINTS, record["EndpointName"], record)
                self._start_in_background(record["EndpointName"], config)

    def close(self) -> None:
        with self._lock:
            live = list(self._live.values())
            self._live.clear()
        for endpoint in live:
            self._stop(endpoint)

    def _start_in_background(self, name: str, config: dict, update: bool = False) -> None:
        threading.Thread(target=self._bring_up, args=(name, config, update),
                         name=f"endpoint-{name}", daemon=True).start()

    def _bring_up(self, name: str, config: dict, update: bool) -> None:
        try:
            live = self._start(name, config)
        except Exception as exc:  # noqa: BLE001 - every reason is the endpoint's reason
            reason = " ".join(f"{exc}".split())[:1024]
            self.say(f"hpt api: endpoint {name} failed: {reason}")
            if update:
                self._update_failed(name, reason)
            else:
                self._fail(name, reason)
            return
        with self._lock:
            if self.store.get(ENDPOINTS, name) is None:  # deleted while it started
                self._stop(live)
                return
            old = self._live.get(name)
            self._live[name] = live  # traffic goes to the new variants from here on
        if old is not None and old is not live:
            self._stop(old)  # blue/green: InService once the old variants are gone
        with self._lock:
            record = self.store.get(ENDPOINTS, name)
            if record is None:
                return
            record.update(EndpointStatus=IN_SERVICE, LastModifiedTime=time.time(),
                          EndpointConfigName=config["EndpointConfigName"],
                          Weights=dict(live.router.weights))
            record.pop(Column.FAILURE_REASON, None)
            record.pop("PendingConfig", None)
            self.store.save(ENDPOINTS, name, record)
        self.say(f"hpt api: endpoint {name} InService ({', '.join(live.backends)})")

    def _fail(self, name: str, reason: str) -> None:
        with self._lock:
            record = self.store.get(ENDPOINTS, name)
            if record is not None:
                record.update(EndpointStatus=FAILED, FailureReason=reason,
                              LastModifiedTime=time.time())
                self.store.save(ENDPOINTS, name, record)

    def _update_failed(self, name: str, reason: str) -> None:
        """SageMaker rolls a failed update back: the old variants keep serving."""
        with self._lock:
            record = self.store.get(ENDPOINTS, name)
            if record is not None:
                record.update(EndpointStatus=IN_SERVICE if name in self._live else FAILED,
                              FailureReason=f"updating to {record.get('PendingConfig')} "
                                            f"failed: {reason}", LastModifiedTime=time.time())
                record.pop("PendingConfig", None)
                self.store.save(ENDPOINTS, name, record)

    def _start(self, name: str, config: dict) -> LiveEndpoint:
        from hpt.serving.backends import HOST, Backend, stop_backends
        from hpt.serving.router import Router
        from hpt.runtime.host import free_ports

        production = config["ProductionVariants"]
        shadows = config.get("ShadowProductionVariants") or []
        folder = self.store.root / "serving" / name / str(int(time.time() * 1000))
        variants = production + shadows
        backends: dict[str, Backend] = {}
        try:
            ports = free_ports(len(variants), HOST)
            for variant, port in zip(variants, ports):
                model = self.records.describe_model(variant["ModelName"])
                container = self.records.container_of(model)
                backends[variant["VariantName"]] = start_model(
                    variant["VariantName"], container, self.records.serving_of(container),
                    self.records.engine, folder / variant["VariantName"], port,
                    f"endpoint-{name}")
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            for backend in backends.values():
                backend.wait_ready(deadline)
            router = Router({n: b.url for n, b in backends.items()}, _weights(config),
                            folder, shadow=shadows[0]["VariantName"] if shadows else None,
                            say=self.say)
            live = LiveEndpoint(backends, router)
            self._enter(live)
            return live
        except BaseException:
            stop_backends(backends)
            raise

    def _enter(self, live: LiveEndpoint) -> None:
        """Runs the router's lifespan (its HTTP session to the backends) on the server's loop."""
        context = live.router.app.router.lifespan_context(live.router.app)

        async def enter():
            await context.__aenter__()

        if self.loop is None:
            raise RuntimeError("the server is not running")
        asyncio.run_coroutine_threadsafe(enter(), self.loop).result(timeout=30)
        live.lifespan = context

    def _stop(self, live: LiveEndpoint) -> None:
        from hpt.serving.backends import stop_backends

        if live.lifespan is not None and self.loop is not None and self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(
                    live.lifespan.__aexit__(None, None, None), self.loop).result(timeout=10)
        if live.router is not None:
            live.router.close()
        stop_backends(live.backends)


def _weights(config: dict) -> dict[str, float]:
    return {v["VariantName"]: float(v.get("InitialVariantWeight", 1.0))
            for v in config["ProductionVariants"]}
