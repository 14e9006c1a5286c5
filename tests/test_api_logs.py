"""CloudWatch Logs of a training job as hpt api serves them: one stream per host under a name
that stays the same while the job writes (it was named after the log's ctime, which every
write changes: the SDK's next GetLogEvents on it was a ResourceNotFoundException), each line
once with the time it was written, paged by byte offsets."""

import sys
import time

import pytest

from hpt.api.cloudwatch_logs import LOG_GROUP, JobLogs, host_logs
from hpt.api.wire_protocol import ApiError
from hpt.core.log_times import LogTimes, read_times, time_at, times_path

JOB = "t-001-aaaaaaaa"
START = 1_800_000_000.0


def write_lines(log, times, lines, at, step=1.0):
    """Appends lines to a log as a host's pump does: the index entry, then the bytes."""
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as f:
        for i, text in enumerate(lines):
            times.line(offset, at + i * step)
            data = f"{text}\n".encode()
            f.write(data)
            offset += len(data)


def logs_of(folder, start=START):
    """The logs served for the training job JOB, whose hosts' logs are in `folder`."""
    return JobLogs({LOG_GROUP: lambda job: (host_logs(folder), start) if job == JOB else None})


def streams_of(served, job):
    return served.streams(LOG_GROUP, job)


def test_the_index_keeps_one_entry_a_second_and_gives_each_line_its_time(tmp_path):
    log = tmp_path / "algo-1.log"
    times = LogTimes(log)
    offset = 0
    for i, now in enumerate((10.1, 10.5, 10.9, 11.2, 13.0)):
        times.line(offset, now)
        offset += 5 + i
    times.close()
    times.line(999, 20.0)  # after close: nothing
    entries = read_times(log)
    assert entries == [(0, 10.1), (18, 11.2), (26, 13.0)]  # lines at 0, 5, 11, 18, 26
    assert [time_at(entries, o, 1.0) for o in (0, 5, 11, 18, 26)] == [10.1, 10.1, 10.1, 11.2,
                                                                      13.0]
    assert time_at([], 0, 7.5) == 7.5
    times_path(log).write_text("0 10.1\n15 11.")  # a torn last entry
    assert read_times(log) == [(0, 10.1)]


def test_a_stream_keeps_its_name_and_pages_every_line_once_while_the_log_grows(tmp_path):
    log = tmp_path / "algo-1.log"
    times = LogTimes(log)
    write_lines(log, times, [f"epoch={i}" for i in range(3)], START + 1)
    served = logs_of(tmp_path)
    name = f"{JOB}/algo-1-{int(START) + 1}"  # named after its first line
    described = served.describe_log_streams({"logGroupName": LOG_GROUP,
                                             "logStreamNamePrefix": f"{JOB}/"}, "us-east-1")
    assert [s["logStreamName"] for s in described["logStreams"]] == [name]
    # The job's start moves (from hpt's start to the script's, once it ended): not the name.
    later = logs_of(tmp_path, START + 50)
    assert list(streams_of(later, JOB)) == [name]
    first = served.get_log_events({"logGroupName": LOG_GROUP, "logStreamName": name,
                                   "startFromHead": True, "limit": 2})
    assert [e["message"] for e in first["events"]] == ["epoch=0", "epoch=1"]
    assert [e["timestamp"] for e in first["events"]] == [int((START + 1) * 1000),
                                                          int((START + 2) * 1000)]
    time.sleep(1.1)  # the log's ctime moves on: the name does not
    write_lines(log, times, ["epoch=3"], START + 4)
    assert [s["logStreamName"] for s in served.describe_log_streams(
        {"logGroupName": LOG_GROUP, "logStreamNamePrefix": JOB}, "r")["logStreams"]] == [name]
    rest = served.get_log_events({"logGroupName": LOG_GROUP, "logStreamName": name,
                                  "startFromHead": True, "nextToken": first["nextForwardToken"]})
    assert [e["message"] for e in rest["events"]] == ["epoch=2", "epoch=3"]
    end = served.get_log_events({"logGroupName": LOG_GROUP, "logStreamName": name,
                                 "nextToken": rest["nextForwardToken"]})
    assert end["events"] == [] and end["nextForwardToken"] == rest["nextForwardToken"]
    # From a time on, as the SDK resumes; the latest lines without startFromHead.
    since = served.get_log_events({"logGroupName": LOG_GROUP, "logStreamName": name,
                                   "startFromHead": True,
                                   "startTime": int((START + 3) * 1000)})
    assert [e["message"] for e in since["events"]] == ["epoch=2", "epoch=3"]
    latest = served.get_log_events({"logGroupName": LOG_GROUP, "logStreamName": name,
                                    "limit": 1})
    assert [e["message"] for e in latest["events"]] == ["epoch=3"]
    before = served.get_log_events({"logGroupName": LOG_GROUP, "logStreamName": name,
                                    "limit": 2, "nextToken": latest["nextBackwardToken"]})
    assert [e["message"] for e in before["events"]] == ["epoch=1", "epoch=2"]


def test_a_host_with_no_line_yet_has_no_stream_so_its_name_never_changes(tmp_path):
    """A host's log is created before its script prints: named then, the stream would carry
    the job's start and be renamed after the first line a moment later (the SDK then tailed
    two streams, one of them empty). On CloudWatch a stream appears with its first event."""
    log = tmp_path / "algo-1.log"
    log.touch()
    served = logs_of(tmp_path)
    assert streams_of(served, JOB) == {}
    assert served.describe_log_streams({"logGroupName": LOG_GROUP,
                                        "logStreamNamePrefix": JOB}, "r")["logStreams"] == []
    write_lines(log, LogTimes(log), ["epoch=0"], START + 2)
    assert list(streams_of(served, JOB)) == [f"{JOB}/algo-1-{int(START) + 2}"]
    older = tmp_path / "algo-2.log"  # lines and no index (before hpt kept times): the start
    older.write_text("epoch=0\n")
    assert list(streams_of(served, JOB))[1] == f"{JOB}/algo-2-{int(START)}"


def test_the_sdks_own_paging_prints_each_line_once_while_the_job_writes(tmp_path):
    """The SageMaker SDK's `_flush_log_streams` (what `logs_for_job` and `fit(logs=...)` call
    every few seconds), driven against the served logs while lines keep coming, several
    per second (the same timestamp: its skip count must line up)."""
    sagemaker_session = pytest.importorskip("sagemaker.session")

    log = tmp_path / "algo-1.log"
    times = LogTimes(log)
    client = _LocalLogsClient(logs_of(tmp_path))
    printed, positions, streams = [], {}, []
    expected = []
    for burst in range(4):
        lines = [f"burst={burst} line={i}" for i in range(5)]
        write_lines(log, times, lines, START + burst, step=0.0)  # five in the same second
        expected += lines
        sagemaker_session._flush_log_streams(streams, 1, client, LOG_GROUP, JOB, positions,
                                             False, lambda idx, text: printed.append(text))
    assert printed == expected


class _LocalLogsClient:
    """The two calls the SDK makes, answered by hpt's handlers (no HTTP: the wire is
    test_api_boto3's)."""

    def __init__(self, served):
        self.served = served

    def describe_log_streams(self, **params):
        return self.served.describe_log_streams(params, "us-east-1")

    def get_log_events(self, **params):
        return self.served.get_log_events(params)


def test_an_unknown_group_stream_or_token_is_cloudwatchs_error(tmp_path):
    served = logs_of(tmp_path)
    with pytest.raises(ApiError) as group:
        served.get_log_events({"logGroupName": "/other", "logStreamName": "x"})
    assert group.value.code == "ResourceNotFoundException"
    with pytest.raises(ApiError) as stream:
        served.get_log_events({"logGroupName": LOG_GROUP, "logStreamName": f"{JOB}/algo-9-1"})
    assert stream.value.code == "ResourceNotFoundException"
    (tmp_path / "algo-1.log").write_text("x\n")
    with pytest.raises(ApiError) as token:
        served.get_log_events({"logGroupName": LOG_GROUP, "nextToken": "zz",
                               "logStreamName": f"{JOB}/algo-1-{int(START)}"})
    assert token.value.code == "InvalidParameterException"
    assert served.describe_log_streams({"logGroupName": LOG_GROUP,
                                        "logStreamNamePrefix": "nope"}, "r") == {
        "logStreams": []}


def test_a_host_process_writes_the_index_beside_its_log(tmp_path):
    from hpt.runtime.host_process import HostProcess

    log = tmp_path / "algo-1.log"
    log.write_bytes(b"an earlier attempt's line\n")
    proc = HostProcess([sys.executable, "-c", "import time\nfor i in range(3):\n"
                        "    print(f'line {i}', flush=True); time.sleep(0.6)"],
                       env={}, cwd=str(tmp_path), log_path=log)
    proc.start()
    assert proc.wait(timeout=30) == 0
    proc.stop()
    data = log.read_bytes()
    starts = {i for i in range(len(data)) if i == 0 or data[i - 1:i] == b"\n"}
    entries = read_times(log)
    assert entries and all(offset in starts for offset, _ in entries)
    assert entries[0][0] == len(b"an earlier attempt's line\n")  # appended after it
    assert all(b > a for (_, a), (_, b) in zip(entries, entries[1:]))


def test_filter_log_events_goes_on_from_its_token_as_the_sdk3_endpoint_waiter_pages(tmp_path):
    """FilterLogEvents over an endpoint's group (`/aws/sagemaker/Endpoints/NAME`, one stream
    per variant): a page with events carries the token to go on from, a page at the end
    none (botocore's paginator stops there), and each line comes once."""
    from hpt.api.cloudwatch_logs import ENDPOINT_GROUP

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    logs = {"AllTraffic/algo-1": tmp_path / "a" / "serve.log",
            "Shadow/algo-1": tmp_path / "b" / "serve.log"}
    logs["AllTraffic/algo-1"].write_text("loading\nmodel loaded\n")
    logs["Shadow/algo-1"].write_text("shadow up\n")
    served = JobLogs({}, endpoint_hosts=lambda name: (logs, START) if name == "ep" else None)
    group = ENDPOINT_GROUP + "ep"
    first = served.filter_log_events({"logGroupName": group,
                                      "logStreamNamePrefix": "AllTraffic/"})
    assert [e["message"] for e in first["events"]] == ["loading", "model loaded"]
    assert first["events"][0]["logStreamName"] == f"AllTraffic/algo-1-{int(START)}"
    end = served.filter_log_events({"logGroupName": group, "logStreamNamePrefix": "AllTraffic/",
                                    "nextToken": first["nextToken"]})
    assert end["events"] == [] and "nextToken" not in end
    with open(logs["AllTraffic/algo-1"], "a") as f:
        f.write("ready\n")
    more = served.filter_log_events({"logGroupName": group, "logStreamNamePrefix": "AllTraffic/",
                                     "nextToken": first["nextToken"]})
    assert [e["message"] for e in more["events"]] == ["ready"]
    both = served.filter_log_events({"logGroupName": group, "filterPattern": "up"})
    assert [e["message"] for e in both["events"]] == ["shadow up"]
    with pytest.raises(ApiError, match="log group does not exist"):
        served.filter_log_events({"logGroupName": ENDPOINT_GROUP + "other"})
    with pytest.raises(ApiError, match="nextToken is invalid"):
        served.filter_log_events({"logGroupName": group, "nextToken": "junk!"})
