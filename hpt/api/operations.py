"""The operations `hpt api` answers, by name, for each API it speaks: each takes the
request's parameters (already checked against botocore's model) and a Context, and returns
the response's members (checked again on the way out). Tags and CloudWatch Logs live here
too: they are small and only the dispatch needs them; CloudWatch's metrics are
hpt/api/cloudwatch.py's."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from hpt.api.cloudwatch import TrainingJobMetrics
from hpt.api.cloudwatch_logs import LOG_GROUP, TRANSFORM_LOG_GROUP, JobLogs
from hpt.api.endpoints import Endpoints
from hpt.api.jobs import TuningJobs
from hpt.api.records import ApiStore
from hpt.api.training_jobs import TrainingJobs
from hpt.api.transform_jobs import TransformJobs
from hpt.core.schema import Column



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
        # The training jobs asked for on their own (CreateTrainingJob) beside the tuning
        # jobs' ones: each operation on a training job looks in both.
        self.training = TrainingJobs(store.root, jobs.server, lambda: jobs.ray_address,
                                     jobs.say)
        t = self.training
        self.transform = TransformJobs(store.root, endpoints.records, jobs.say)
        x = self.transform
        self.tags = Tags(store.root / "tags.json")
        j, e, r = jobs, endpoints, endpoints.records
        self.sagemaker: dict[str, Callable[[dict, Context], dict]] = {
            "CreateHyperParameterTuningJob": self._created(
                lambda p, c: j.create(p, c.region), "HyperParameterTuningJobArn"),
            "DescribeHyperParameterTuningJob":
                lambda p, c: j.describe(p["HyperParameterTuningJobName"]),
            "ListHyperParameterTuningJobs": lambda p, c: j.list(p),
            "StopHyperParameterTuningJob": lambda p, c: j.stop(p["HyperParameterTuningJobName"]),
            "ListTrainingJobsForHyperParameterTuningJob": lambda p, c: j.training_jobs(p),
            "CreateTrainingJob": self._created(
                lambda p, c: t.create(p, c.region, j.has_training_job), "TrainingJobArn"),
            "DescribeTrainingJob": lambda p, c: self._training_job(p, t.describe,
                                                                   j.describe_training_job),
            "ListTrainingJobs": lambda p, c: j.list_all_training_jobs(p, t.summaries()),
            "StopTrainingJob": lambda p, c: self._training_job(p, t.stop, j.stop_training_job),
            "UpdateTrainingJob": lambda p, c: t.update(p),
            "CreateTransformJob": self._created(lambda p, c: x.create(p, c.region),
                                                "TransformJobArn"),
            "DescribeTransformJob": lambda p, c: x.describe(p["TransformJobName"]),
            "ListTransformJobs": lambda p, c: x.list(p),
            "StopTransformJob": lambda p, c: x.stop(p["TransformJobName"]),
            "CreateModel": self._created(lambda p, c: r.create_model(p, c.region), "ModelArn"),
            "DescribeModel": lambda p, c: r.describe_model(p["ModelName"]),
            "DeleteModel": lambda p, c: r.delete_model(p["ModelName"]),
            "CreateEndpointConfig": self._created(lambda p, c: r.create_config(p, c.region),
                                                  "EndpointConfigArn"),
            "DescribeEndpointConfig": lambda p, c: r.describe_config(p["EndpointConfigName"]),
            "DeleteEndpointConfig": lambda p, c: r.delete_config(p["EndpointConfigName"]),
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
        self.logs = JobLogs({
            LOG_GROUP: lambda name: t.log_of(name) if t.has(name)
            else jobs.training_job_log(name),
            TRANSFORM_LOG_GROUP: x.log_of}, endpoint_hosts=endpoints.logs_of).operations()
        self.cloudwatch = TrainingJobMetrics(
            lambda: [*t.folders(), *jobs.training_job_folders()]).operations()

    def _created(self, create, arn_key: str):
        def handler(params: dict, context: Context) -> dict:
            result = create(params, context)
            if params.get("Tags"):
                self.tags.add(result[arn_key], params["Tags"])
            return result
        return handler

    def _training_job(self, params: dict, alone: Callable[[str], dict],
                      of_tuning_job: Callable[[str], dict]) -> dict:
        """An operation on a training job: one on its own, else one of a tuning job."""
        name = params[Column.TRAINING_JOB_NAME]
        return alone(name) if self.training.has(name) else of_tuning_job(name)

