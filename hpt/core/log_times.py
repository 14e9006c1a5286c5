"""When the lines of a host's log were written, kept beside it in `<host>.log.times`.

A log is the script's own bytes; CloudWatch Logs (hpt api's GetLogEvents) gives every line a
timestamp, and a client that pages by time (the SageMaker SDK resumes at the last timestamp it
saw) needs the same timestamp for the same line on every call. So the process that writes a
log also writes, at most once per second of output, an entry `<offset> <time>`: the line that
starts at byte `offset`, and every line after it up to the next entry, was written at `time`
(within the second after it). Costs one short line a second next to the log's own writes.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

TIMES_SUFFIX = ".times"


def times_path(log: Path) -> Path:
    return Path(log).with_name(Path(log).name + TIMES_SUFFIX)


class LogTimes:
    """The writer: `line(offset, now)` before each line goes to the log at `offset`."""

    def __init__(self, log: Path):
        self.path = times_path(log)
        self._second: int | None = None
        self._fd: int | None = None
        self._closed = False

    def line(self, offset: int, now: float) -> None:
        second = int(now)
        if second == self._second or self._closed:
            return
        self._second = second
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._fd, f"{offset} {now:.3f}\n".encode())

    def close(self) -> None:
        self._closed = True  # a line written after (a pump still draining) gets no entry
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_times(log: Path) -> list[tuple[int, float]]:
    """The entries (offset, time), by offset; [] without an index (a log hpt did not write,
    or one from before hpt kept times). A torn last entry is left out."""
    try:
        text = times_path(log).read_text()
    except OSError:
        return []
    entries = []
    for line in text.split("\n")[:-1]:  # the part after the last newline is still torn
        offset, _, stamp = line.partition(" ")
        try:
            entries.append((int(offset), float(stamp)))
        except ValueError:
            continue
    return sorted(entries)


def time_at(entries: list[tuple[int, float]], offset: int, default: float) -> float:
    """The time of the line starting at `offset`: its entry's, or `default` (the job's start)
    for a line before the first entry."""
    i = bisect.bisect_right(entries, (offset, float("inf"))) - 1
    return entries[i][1] if i >= 0 else default
