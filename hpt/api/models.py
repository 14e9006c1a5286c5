"""Models and endpoint configs: the records hosting is built from (CreateModel,
CreateEndpointConfig and their Describe/Delete), and which serving program a model's
container gets (hpt/serving/framework.py for SageMaker's PyTorch inference images, the image
itself for one on the local engine or mapped with --image-map); anything else is refused when
the model is created, not when an endpoint fails later."""

from __future__ import annotations

import threading
import time
from typing import Any

from hpt.api.images import PYTORCH_INFERENCE, repository_of
from hpt.api.wire_protocol import VALIDATION, ApiError
from hpt.api.records import ApiStore
from hpt.api.tuning import arn

MODELS, CONFIGS, ENDPOINTS = "models", "endpoint-configs", "endpoints"


WORDS = {MODELS: "model", CONFIGS: "endpoint configuration", ENDPOINTS: "endpoint"}


def _missing(kind: str, name: str) -> ApiError:
    return ApiError(VALIDATION, f"Could not find {WORDS[kind]} \"{name}\".")


class Records:
    def __init__(self, store: ApiStore, image_map: dict[str, str], engine: str = "docker"):
        self.store = store
        self.image_map = dict(image_map)
        self.engine = engine
        self._lock = threading.RLock()

    # -- models ------------------------------------------------------------------------------

    def create_model(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        with self._lock:
            self.refuse_existing(MODELS, params["ModelName"], region)
            self.serving_of(self.container_of(params))  # refuses what hpt cannot serve, now
            return self.save_new(MODELS, params["ModelName"], params, region)

    def describe_model(self, name: str) -> dict[str, Any]:
        return self.get(MODELS, name)

    def delete_model(self, name: str) -> dict[str, Any]:
        return self.delete(MODELS, name)

    # -- the records, one rule for each kind -------------------------------------------------

    _ARNS = {MODELS: ("model", "ModelArn"), CONFIGS: ("endpoint-config", "EndpointConfigArn"),
             ENDPOINTS: ("endpoint", "EndpointArn")}

    def get(self, kind: str, name: str) -> dict[str, Any]:
        record = self.store.get(kind, name)
        if record is None:
            raise _missing(kind, name)
        return record

    def delete(self, kind: str, name: str) -> dict[str, Any]:
        self.get(kind, name)
        self.store.delete(kind, name)
        return {}

    def refuse_existing(self, kind: str, name: str, region: str) -> None:
        if self.store.get(kind, name) is not None:
            raise ApiError(VALIDATION, f"Cannot create already existing {WORDS[kind]} "
                                       f"\"{arn(self._ARNS[kind][0], name, region)}\".")

    def save_new(self, kind: str, name: str, params: dict, region: str) -> dict[str, Any]:
        """The request as the record (its Tags live with the tags); {arn key: ARN}."""
        kind_arn, key = self._ARNS[kind]
        record = {**params, key: arn(kind_arn, name, region), "CreationTime": time.time()}
        record.pop("Tags", None)
        self.store.save(kind, name, record)
        return {key: record[key]}

    def container_of(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("PrimaryContainer"):
            return params["PrimaryContainer"]
        containers = params.get("Containers") or []
        if len(containers) != 1:
            raise ApiError(VALIDATION, "give PrimaryContainer (or exactly one of Containers): "
                                       "hpt serves one container per model")
        return containers[0]

    def serving_of(self, container: dict[str, Any]) -> tuple[str, str | None]:
        """("framework", None) or ("docker", image) for a model container; ApiError when hpt
        cannot serve it."""
        image = container.get("Image") or ""
        mapped = self.image_map.get(repository_of(image)) or self.image_map.get(image)
        if mapped:
            return "docker", mapped
        if PYTORCH_INFERENCE.match(image):
            return "framework", None
        from hpt.runtime.runtimes.docker import engine_problem

        problem = engine_problem(self.engine, image) if image else "no Image given"
        if problem is None:
            return "docker", image
        raise ApiError(VALIDATION, f"PrimaryContainer.Image {image or '(none)'}: hpt serves "
                                   f"SageMaker's PyTorch inference images and any image on "
                                   f"this machine's {self.engine} engine; this one is neither "
                                   f"({problem}); map it with --image-map "
                                   f"{repository_of(image) or 'REPOSITORY'}=LOCAL_IMAGE")

    # -- endpoint configs --------------------------------------------------------------------

    def create_config(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params["EndpointConfigName"]
        with self._lock:
            self.refuse_existing(CONFIGS, name, region)
            variants = params["ProductionVariants"] + (params.get("ShadowProductionVariants")
                                                       or [])
            names = [v["VariantName"] for v in variants]
            if len(set(names)) != len(names):
                raise ApiError(VALIDATION, f"VariantName must be unique within an endpoint "
                                           f"configuration (got {names})")
            if len(params.get("ShadowProductionVariants") or []) > 1:
                raise ApiError(VALIDATION, "ShadowProductionVariants: hpt mirrors traffic to "
                                           "one shadow variant; give one")
            for variant in variants:
                if self.store.get(MODELS, variant["ModelName"]) is None:
                    raise ApiError(VALIDATION, f"Could not find model "
                                               f"\"{arn('model', variant['ModelName'], region)}\".")
                if variant.get("ServerlessConfig") or not variant.get("InstanceType"):
                    raise ApiError(VALIDATION, f"ProductionVariant {variant['VariantName']}: "
                                               f"give InstanceType and InitialInstanceCount "
                                               f"(serverless endpoints are not supported)")
            return self.save_new(CONFIGS, name, params, region)

    def describe_config(self, name: str) -> dict[str, Any]:
        return self.get(CONFIGS, name)

    def delete_config(self, name: str) -> dict[str, Any]:
        return self.delete(CONFIGS, name)
