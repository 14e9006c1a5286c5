"""The process that runs one batch transform job `hpt api` was asked for (CreateTransformJob):

    python -m hpt.api.transform_runner FOLDER --container-engine ENGINE

FOLDER (`.hpt-api/transform-jobs/<name>/`) holds the request as the server validated it,
with the model's container and how it serves (request.json). This process starts the model's
serving process once per instance (the same serving path as an endpoint's variant:
hpt/api/model_server.py), lists the input objects (an S3 prefix or a manifest), and hands
them out to the instances; each object is split, filtered, sent in mini-batches
(MaxConcurrentTransforms requests at a time), joined and assembled by
hpt/serving/batch_records.py, and its output put at `<S3OutputPath>/<relative key>.out` in one
PUT, so an output is whole or absent. Each object done is appended to done.jsonl: a runner
started again after the server's death (the next server does that) skips them, and writes no
output twice.

The job's state (state.json: status, reason, times, counts) is written when it starts and when
it ends; a stop (StopTransformJob: the folder's stop-requested file, or SIGTERM) is seen
between requests. A record the model refuses, or that a filter cannot read, ends the job
Failed, naming the object and the record.
"""

from __future__ import annotations

import argparse
import gzip
import json
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpt.core.schema import Column, File
from hpt.core.trial import TrialStatus
from hpt.experiment.api_requests import STATE, TRANSFORM_STATUS as STATUS
from hpt.serving.batch_records import (ModelRefused, RecordError, TransformPlan, output_key,
                                       relative_key, transform_object)

REQUEST = File.API_REQUEST  # the request, the model's container and how it serves
DONE = "done.jsonl"
RUNNER_LOG = "runner.log"
HOSTS_DIR = "hosts"
DATA_LOG = "data-log.log"
# TransformJobStatus: a training job's words (and Stopping, hpt.api.tuning's, while a stop waits)
IN_PROGRESS, COMPLETED, FAILED, STOPPED = (str(s) for s in (
    TrialStatus.IN_PROGRESS, TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.STOPPED))
ENDED = (COMPLETED, FAILED, STOPPED)
START_TIMEOUT_SECONDS = 180.0
DEFAULT_TIMEOUT_SECONDS = 600  # ModelClientConfig's defaults
DEFAULT_RETRIES = 3


INTERRUPTED_EXIT = 130  # SIGINT: the server's clean stop; the job goes on at its next start


class Stopped(Exception):
    """A stop was asked for."""


class Interrupted(Exception):
    """The server is stopping: the job ends nothing and goes on when it starts again."""


class JobFailed(Exception):
    """The job cannot go on; the message is its FailureReason."""


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_state(folder: Path, **changes) -> dict[str, Any]:
    from hpt.experiment.store import write_json_atomic

    state = {**(read_json(Path(folder) / STATE) or {}), **changes}
    write_json_atomic(Path(folder) / STATE, state)
    return state


def done_keys(folder: Path) -> set[str]:
    """The input objects whose output is in place (a torn last line is not one)."""
    try:
        lines = (Path(folder) / DONE).read_text().split("\n")[:-1]
    except OSError:
        return set()
    return {json.loads(line)["Key"] for line in lines if line.strip()}


@dataclass(frozen=True)
class InputObject:
    bucket: str
    key: str
    relative: str  # its place under the input prefix, which its output keeps

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def list_inputs(client, source: dict[str, Any]) -> list[InputObject]:
    """Every object of an S3Prefix (folder markers left out), or those a manifest lists."""
    from hpt.runtime.channels import parse_s3

    uri = source["S3Uri"]
    location = parse_s3(uri)
    if source["S3DataType"] == "ManifestFile":
        body = client.get_object(Bucket=location.bucket, Key=location.prefix)["Body"].read()
        entries = json.loads(body)
        base = parse_s3(entries[0]["prefix"])
        return [InputObject(base.bucket, base.prefix + rel, rel) for rel in entries[1:]]
    found = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                found.append(InputObject(location.bucket, item["Key"],
                                         relative_key(location.prefix, item["Key"])))
    return found


class Transform:
    """One run of the job: its hosts, its objects, its stop."""

    def __init__(self, folder: Path, engine: str):
        self.folder, self.engine = Path(folder), engine
        self.job = read_json(self.folder / REQUEST)
        self.request = self.job["Request"]
        self.plan = TransformPlan.from_request(self.request)
        client_config = self.request.get("ModelClientConfig") or {}
        self.timeout = client_config.get("InvocationsTimeoutInSeconds") or \
            DEFAULT_TIMEOUT_SECONDS
        self.retries = client_config.get("InvocationsMaxRetries", DEFAULT_RETRIES)
        self.concurrency = max(1, self.request.get("MaxConcurrentTransforms") or 1)
        self.stopping = threading.Event()
        self.interrupted = threading.Event()
        self._log_lock = threading.Lock()

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from hpt.runtime.channels import s3_client

        client = s3_client()
        try:
            objects = list_inputs(client, self.request["TransformInput"]["DataSource"][
                "S3DataSource"])
        except Exception as exc:  # noqa: BLE001 - S3's reasons are the job's
            raise JobFailed(f"ClientError: the input could not be listed: "
                            f"{type(exc).__name__}: {exc}") from None
        if not objects:
            uri = self.request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
            raise JobFailed(f"ClientError: No S3 objects found under S3 URL \"{uri}\" given in "
                            f"input data source. Please ensure that the bucket exists in the "
                            f"selected region, that objects exist under that S3 prefix, and "
                            f"that the role has permissions")
        done = done_keys(self.folder)
        todo = [o for o in objects if o.key not in done]
        self.say(f"{len(objects)} input objects, {len(objects) - len(todo)} done already")
        write_state(self.folder, ObjectCount=len(objects))
        if todo:
            self._on_hosts(todo, client)
        return {"ObjectCount": len(objects)}

    def _on_hosts(self, todo: list[InputObject], client) -> None:
        from hpt.serving.backends import stop_backends

        backends = self._start_hosts()
        try:
            work: queue.Queue = queue.Queue()
            for item in todo:
                work.put(item)
            failures: list[BaseException] = []
            threads = [threading.Thread(target=self._host_loop, args=(b, work, client, failures),
                                        name=f"transform-{host}", daemon=True)
                       for host, b in backends.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if failures:
                raise failures[0]
        finally:
            stop_backends(backends)

    def _start_hosts(self) -> dict:
        from hpt.api.model_server import start_model
        from hpt.runtime.host import free_ports
        from hpt.serving.backends import HOST, stop_backends

        count = self.request["TransformResources"]["InstanceCount"]
        container = dict(self.job["Container"])
        container["Environment"] = {**(container.get("Environment") or {}),
                                    **(self.request.get("Environment") or {})}
        backends = {}
        try:
            for k, port in enumerate(free_ports(count, HOST), start=1):
                host = f"algo-{k}"
                backends[host] = start_model(
                    f"{self.request['TransformJobName']}-{host}", container,
                    tuple(self.job["Serving"]), self.engine, self.folder / HOSTS_DIR / host,
                    port, f"transform-{self.request['TransformJobName']}")
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            for backend in backends.values():
                backend.wait_ready(deadline)
        except BaseException as exc:
            stop_backends(backends)
            if isinstance(exc, Exception):
                raise JobFailed(f"ClientError: the model did not start: {exc}") from None
            raise
        self.say(f"model serving on {len(backends)} instance(s)")
        return backends

    def _host_loop(self, backend, work: queue.Queue, client, failures: list) -> None:
        while not failures:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            try:
                self._one_object(item, backend, client)
            except BaseException as exc:  # noqa: BLE001 - the first one ends the job
                failures.append(exc)
                return

    def _one_object(self, item: InputObject, backend, client) -> None:
        from hpt.runtime.channels import parse_s3

        self._check_stop()
        try:
            data = client.get_object(Bucket=item.bucket, Key=item.key)["Body"].read()
            if self.request["TransformInput"].get("CompressionType") == "Gzip":
                data = gzip.decompress(data)
        except Exception as exc:  # noqa: BLE001 - S3's and gzip's reasons are the job's
            raise JobFailed(f"ClientError: {item.uri}: cannot be read: {type(exc).__name__}: "
                            f"{exc}") from None
        began = time.time()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            try:
                output, count = transform_object(
                    data, self.plan, lambda payloads: list(pool.map(
                        lambda indexed: self._invoke(backend.url, *indexed),
                        enumerate(payloads))))
            except RecordError as exc:
                raise JobFailed(f"ClientError: {item.uri}: {exc}") from None
        out = parse_s3(self.request["TransformOutput"]["S3OutputPath"])
        key = output_key(out.prefix, item.relative)
        client.put_object(Bucket=out.bucket, Key=key, Body=output)  # whole, or not there
        with self._log_lock:
            with open(self.folder / DONE, "a") as f:
                f.write(json.dumps({"Key": item.key, "Output": f"s3://{out.bucket}/{key}",
                                    "Records": count}) + "\n")
        self.say(f"{item.uri}: {count} records -> s3://{out.bucket}/{key} "
                 f"({time.time() - began:.2f}s)")

    def _invoke(self, url: str, index: int, payload: bytes) -> bytes:
        """One request to the model, retried on a 5xx or no answer as ModelClientConfig
        says; a refusal is ModelRefused."""
        headers = {"Content-Type": self.plan.content_type or "application/octet-stream"}
        if self.plan.accept:
            headers["Accept"] = self.plan.accept
        problem = ""
        for _attempt in range(1 + max(0, self.retries)):
            self._check_stop()
            request = urllib.request.Request(f"{url}/invocations", data=payload,
                                             headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return answer.read()
            except urllib.error.HTTPError as exc:
                # its first line: a framework server's 500 goes on with a traceback
                body = exc.read()[:2000].decode("utf-8", errors="replace").strip()
                problem = f"the model answered {exc.code}: {(body.splitlines() or [''])[0]}"
                if exc.code < 500:
                    break
            except OSError as exc:
                problem = f"no answer from the model ({type(exc).__name__}: {exc})"
        raise ModelRefused(index, problem)

    def _check_stop(self) -> None:
        if self.interrupted.is_set():
            raise Interrupted()
        if self.stopping.is_set() or (self.folder / File.STOP_REQUESTED).exists():
            self.stopping.set()
            raise Stopped()

    def say(self, line: str) -> None:
        """A line of the job's data log (its CloudWatch stream `<job>/algo-1/data-log-…`)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self._log_lock:
            logs = self.folder / HOSTS_DIR
            logs.mkdir(parents=True, exist_ok=True)
            with open(logs / DATA_LOG, "a") as f:
                f.write(f"{stamp} {line}\n")
        print(line, flush=True)


def run(folder: Path, engine: str) -> int:
    state = read_json(folder / STATE) or {}
    write_state(folder, **{STATUS: IN_PROGRESS,
                           "TransformStartTime": state.get("TransformStartTime") or time.time(),
                           "Attempts": state.get("Attempts", 0) + 1})
    transform = Transform(folder, engine)
    signal.signal(signal.SIGTERM, lambda *_: transform.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: transform.interrupted.set())
    try:
        counts = transform.run()
    except Interrupted:
        transform.say("interrupted: the server is stopping; the job goes on at its next start")
        return INTERRUPTED_EXIT
    except Stopped:
        ending = {STATUS: STOPPED}
    except JobFailed as exc:
        ending = {STATUS: FAILED, Column.FAILURE_REASON: str(exc)[:1024]}
    except Exception as exc:  # noqa: BLE001 - anything else is the service's failure
        ending = {STATUS: FAILED, Column.FAILURE_REASON: f"InternalServerError: "
                                                   f"{type(exc).__name__}: {exc}"[:1024]}
    else:
        ending = {STATUS: COMPLETED, **counts}
    if ending.get(Column.FAILURE_REASON):
        transform.say(ending[Column.FAILURE_REASON])
    write_state(folder, **ending, TransformEndTime=time.time())
    return 0 if ending[STATUS] == COMPLETED else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpt.api.transform_runner",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--container-engine", default="docker")
    args = parser.parse_args(argv)
    return run(args.folder, args.container_engine)


if __name__ == "__main__":
    sys.exit(main())
