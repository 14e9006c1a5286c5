"""CloudWatch Logs of training and transform jobs, as SageMaker writes them: the log groups
`/aws/sagemaker/TrainingJobs` and `/aws/sagemaker/TransformJobs`, one stream per host named
`<job>/algo-1-<epoch seconds>` (the same name on every call, however long the job writes),
one event per line of the host's log.

The stream is named after its log's first line (when the host began writing), and appears
with that line. An event's
timestamp is when the line was written (core/log_times.py: the index beside each
log), so that a client paging by time gets each line once: the SageMaker SDK's
`logs_for_job` resumes at the last timestamp it saw, skipping the events it already printed
at that timestamp. Lines hpt kept no time for (an older log) carry the job's start.

Tokens are byte offsets into the log (`f/<offset>` forward, `b/<offset>` backward), so a
page costs what it returns, not the whole log.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable

from hpt.api.tuning import ACCOUNT
from hpt.api.wire_protocol import ApiError
from hpt.core.log_times import read_times, time_at

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
ENDPOINT_GROUP = "/aws/sagemaker/Endpoints/"  # + the endpoint's name
NOT_FOUND = "ResourceNotFoundException"
INVALID = "InvalidParameterException"
PAGE_EVENTS = 10_000  # GetLogEvents' own limits: 10,000 events or 1 MB
PAGE_BYTES = 1 << 20
HOST_LOGS = "algo-*.log"

# job name -> ({host: its log}, the job's start), or None for no such job
HostsOf = Callable[[str], "tuple[dict[str, Path], float] | None"]


def host_logs(folder: Path) -> dict[str, Path]:
    """A training job's hosts' logs, `algo-N.log` in its folder, by host."""
    return {log.stem: log for log in sorted(Path(folder).glob(HOST_LOGS))}


class JobLogs:
    """The log groups served: `groups`, each with how to find a job's hosts' logs (a stream
    `<job>/<host>-<start>`), and `/aws/sagemaker/Endpoints/<endpoint>`, whose streams are the
    endpoint's own (`<variant>/<host>-<start>`), found by `endpoint_hosts`."""

    def __init__(self, groups: dict[str, HostsOf], endpoint_hosts: HostsOf | None = None):
        self.groups, self.endpoint_hosts = groups, endpoint_hosts

    def operations(self) -> dict[str, Callable[[dict, Any], dict]]:
        return {"DescribeLogStreams": lambda p, c: self.describe_log_streams(p, c.region),
                "GetLogEvents": lambda p, c: self.get_log_events(p),
                "FilterLogEvents": lambda p, c: self.filter_log_events(p)}

    def streams(self, group: str, hint: str) -> dict[str, Path]:
        """The group's streams that a stream name or prefix `hint` may name: a job's (its
        name is the hint's first segment), or an endpoint group's all."""
        if group in self.groups:
            job = hint.split("/", 1)[0]
            found, prefix = self._hosts(self.groups[group], job) if job else None, f"{job}/"
        else:
            found, prefix = self._hosts(self.endpoint_hosts, group[len(ENDPOINT_GROUP):]), ""
        if found is None:
            return {}
        hosts, start = found
        named = {}
        for host, log in sorted(hosts.items()):
            began = _first_line_time(log, start)
            if began is not None:
                named[f"{prefix}{host}-{int(began)}"] = log
        return named

    @staticmethod
    def _hosts(hosts_of: HostsOf | None, key: str):
        try:
            return hosts_of(key) if hosts_of is not None and key else None
        except ApiError:  # no such job or endpoint: no streams
            return None

    def describe_log_streams(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        group = self._group(params)
        prefix = params.get("logStreamNamePrefix") or ""
        described = []
        for name, log in sorted(self.streams(group, prefix.split("/", 1)[0]).items()):
            if not name.startswith(prefix):
                continue
            stat = log.stat()
            times = read_times(log)
            first = int(times[0][1] * 1000) if times else int(stat.st_mtime * 1000)
            last = int(times[-1][1] * 1000) if times else first
            described.append({
                "logStreamName": name, "creationTime": int(name.rsplit("-", 1)[1]) * 1000,
                "firstEventTimestamp": first, "lastEventTimestamp": last,
                "lastIngestionTime": int(stat.st_mtime * 1000), "storedBytes": stat.st_size,
                "arn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{group}:log-stream:"
                       f"{name}"})
        if params.get("descending"):
            described.reverse()
        return {"logStreams": described[:int(params.get("limit") or 50)]}

    def _group(self, params: dict[str, Any]) -> str:
        group = params.get("logGroupName") or params.get("logGroupIdentifier") or ""
        if group in self.groups or (self.endpoint_hosts is not None and group.startswith(
                ENDPOINT_GROUP) and self._hosts(self.endpoint_hosts, group[len(ENDPOINT_GROUP):])):
            return group
        raise ApiError(NOT_FOUND, "The specified log group does not exist.")

    def filter_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """The events of the streams named (logStreamNames) or matched (logStreamNamePrefix)
        after the token, in time order, those whose message holds every term of the
        filterPattern; startTime/endTime (ms). `nextToken` (where each stream was left)
        comes with a page that has events; a page without one has reached the end, so a
        client that goes on from its last token sees each event once."""
        group = self._group(params)
        wanted = params.get("logStreamNames")
        prefix = params.get("logStreamNamePrefix") or ""
        streams = {n: log for n, log in self.streams(group, (wanted or [prefix])[0]).items()
                   if (n in wanted if wanted else n.startswith(prefix))}
        offsets = _filter_token(params.get("nextToken"))
        terms = [t.strip('"') for t in (params.get("filterPattern") or "").split() if t]
        low, high = params.get("startTime"), params.get("endTime")
        limit = min(int(params.get("limit") or PAGE_EVENTS), PAGE_EVENTS)
        found, moved = [], dict(offsets)
        for name, log in sorted(streams.items()):
            times, begun = read_times(log), float(name.rsplit("-", 1)[1])
            size = log.stat().st_size
            with open(log, "rb") as f:
                lines = _lines_after(f, min(offsets.get(name, 0), size), size)[:limit]
            for at, raw in lines:
                moved[name] = at + len(raw)
                stamp = int(time_at(times, at, begun) * 1000)
                message = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
                if (low is None or stamp >= low) and (high is None or stamp < high) and \
                        all(t in message for t in terms):
                    found.append({"logStreamName": name, "timestamp": stamp,
                                  "ingestionTime": stamp, "message": message,
                                  "eventId": f"{name}/{at}"})
        found.sort(key=lambda e: e["timestamp"])
        answer: dict[str, Any] = {"events": found[:limit], "searchedLogStreams": [
            {"logStreamName": n, "searchedCompletely": True} for n in sorted(streams)]}
        if moved != offsets:
            answer["nextToken"] = _encode_filter_token(moved)
        return answer

    def get_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """A page of the stream: forward from the head or a token, or (CloudWatch's default
        without startFromHead) the last lines; startTime/endTime (ms) filter the page."""
        group = self._group(params)
        name = params["logStreamName"]
        log = self.streams(group, name.split("/", 1)[0]).get(name)
        if log is None:
            raise ApiError(NOT_FOUND, "The specified log stream does not exist.")
        limit = min(int(params.get("limit") or PAGE_EVENTS), PAGE_EVENTS)
        size = log.stat().st_size
        direction, offset = _token(params.get("nextToken"), params.get("startFromHead"), size)
        with open(log, "rb") as f:
            if direction == "f":
                lines = _lines_after(f, offset, size)[:limit]
            else:
                lines = _lines_before(f, offset)[-limit:]
        first = lines[0][0] if lines else offset
        last = lines[-1][0] + len(lines[-1][1]) if lines else offset
        times, begun = read_times(log), float(name.rsplit("-", 1)[1])
        low, high = params.get("startTime"), params.get("endTime")
        events = []
        for at, raw in lines:
            stamp = int(time_at(times, at, begun) * 1000)
            if (low is None or stamp >= low) and (high is None or stamp < high):
                events.append({"timestamp": stamp, "ingestionTime": stamp, "message":
                               raw.rstrip(b"\r\n").decode("utf-8", errors="replace")})
        return {"events": events, "nextForwardToken": f"f/{last}",
                "nextBackwardToken": f"b/{first}"}


def _first_line_time(log: Path, start: float) -> float | None:
    """When the host's log began (its first index entry): what its stream is named after,
    the same on every call (the job's start time changes from when hpt began it to when the
    script began, once the job ended). An empty log has no stream yet, as on CloudWatch,
    where a stream appears with its first event: None. A log with lines and no index (one
    from before hpt kept times): the job's start.

    The log's size is read before the index: its writer puts a line's index entry down before
    the line, so a log seen with a line here has that entry by the time the index is read."""
    try:
        if log.stat().st_size == 0:
            return None
    except OSError:
        return None
    times = read_times(log)
    return times[0][1] if times else start




def _token(token: str | None, from_head: bool | None, size: int) -> tuple[str, int]:
    """(direction, byte offset) to read from: a token's, else the head or (CloudWatch's
    default) the end, backwards."""
    if not token:
        return ("f", 0) if from_head else ("b", size)
    direction, _, offset = token.partition("/")
    if direction not in ("f", "b") or not offset.isdigit():
        raise ApiError(INVALID, "The specified nextToken is invalid.")
    return direction, min(int(offset), size)


def _lines_after(f, offset: int, size: int) -> list[tuple[int, bytes]]:
    """Whole lines from `offset` on, at most a page; a last line still being written waits."""
    f.seek(offset)
    data = f.read(min(PAGE_BYTES, size - offset))
    cut = data.rfind(b"\n") + 1
    lines, at = [], offset
    for raw in data[:cut].splitlines(keepends=True)[:PAGE_EVENTS]:
        lines.append((at, raw))
        at += len(raw)
    return lines


def _lines_before(f, offset: int) -> list[tuple[int, bytes]]:
    """Whole lines ending at or before `offset`, the last page of them."""
    begin = max(0, offset - PAGE_BYTES)
    f.seek(begin)
    data = f.read(offset - begin)
    if begin > 0:  # the first line is cut by the page: it belongs to the page before
        skip = data.find(b"\n") + 1
        data, begin = data[skip:], begin + skip
    data = data[:data.rfind(b"\n") + 1]
    lines, at = [], begin
    for raw in data.splitlines(keepends=True):
        lines.append((at, raw))
        at += len(raw)
    return lines[-PAGE_EVENTS:]


def _encode_filter_token(offsets: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(offsets, sort_keys=True).encode()).decode()


def _filter_token(token: str | None) -> dict[str, int]:
    """FilterLogEvents' token: where each stream was left (byte offsets)."""
    if not token:
        return {}
    try:
        offsets = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(offsets, dict) and all(isinstance(v, int) for v in offsets.values()):
            return offsets
    except ValueError:
        pass
    raise ApiError(INVALID, "The specified nextToken is invalid.")
