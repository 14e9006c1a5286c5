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

from pathlib import Path
from typing import Any, Callable

from hpt.api.tuning import ACCOUNT
from hpt.api.wire_protocol import ApiError
from hpt.core.log_times import read_times, time_at

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
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
    """The log groups served, each with how to find a job's hosts' logs."""

    def __init__(self, groups: dict[str, HostsOf]):
        self.groups = groups

    def operations(self) -> dict[str, Callable[[dict, Any], dict]]:
        return {"DescribeLogStreams": lambda p, c: self.describe_log_streams(p, c.region),
                "GetLogEvents": lambda p, c: self.get_log_events(p)}

    def streams(self, group: str, job: str) -> dict[str, Path]:
        try:
            found = self.groups[group](job) if job else None
        except ApiError:  # no such job: no streams
            found = None
        if found is None:
            return {}
        hosts, start = found
        named = {}
        for host, log in sorted(hosts.items()):
            began = _first_line_time(log, start)
            if began is not None:
                named[f"{job}/{host}-{int(began)}"] = log
        return named

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
        group = params.get("logGroupName") or params.get("logGroupIdentifier")
        if group not in self.groups:
            raise ApiError(NOT_FOUND, "The specified log group does not exist.")
        return group

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
