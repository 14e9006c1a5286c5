"""`hpt report NAME --format tensorboard`: every training job's metric series as TensorBoard
event files, one run (folder) per training job, so `tensorboard --logdir` shows the jobs'
curves side by side.

The files are written here, without TensorFlow or the tensorboard package (hpt does not add
them to the user's stack): an event file is a TFRecord stream of `Event` protocol buffers,
of which hpt needs three fields. The encoding is pure (`event_record`); the test reads the
files back with tensorboard's own EventAccumulator.
"""

from __future__ import annotations

import shutil
import socket
import struct
from pathlib import Path

import pandas as pd

from hpt.core.schema import Column, Point
from hpt.report.summary import load_metrics


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C (Castagnoli), rotated and offset."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 fields: two's complement, as protobuf does
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2, _varint(len(payload)) + payload)


def event_record(wall_time: float, step: int = 0, tag: str | None = None,
                 value: float | None = None, file_version: str | None = None) -> bytes:
    """One TFRecord holding one Event: wall_time (1, double), step (2, int64), and either
    file_version (3, string) or a summary (5) with one scalar: Summary.Value tag (1) and
    simple_value (2, float)."""
    event = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        event += _length_delimited(3, file_version.encode())
    if tag is not None:
        scalar = _length_delimited(1, tag.encode()) + _field(2, 5, struct.pack("<f", value))
        event += _length_delimited(5, _length_delimited(1, scalar))
    length = struct.pack("<Q", len(event))
    return (length + struct.pack("<I", _masked_crc32c(length)) + event +
            struct.pack("<I", _masked_crc32c(event)))


def write_event_files(root: Path, logdir: Path) -> list[Path]:
    """One event file per training job that has data points, under `logdir/<job>/`; an
    earlier export in `logdir` is replaced (the files are a view of metrics.jsonl)."""
    points = load_metrics(root)
    written = []
    for job, series in points.groupby(Column.TRAINING_JOB_NAME, sort=True):
        folder = logdir / str(job)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        start = _seconds(series[Point.TIMESTAMP].min())
        path = folder / f"events.out.tfevents.{int(start)}.{socket.gethostname()}.hpt"
        records = [event_record(start, file_version="brain.Event:2")]
        records += [event_record(_seconds(t), int(s), str(m), float(v)) for m, s, v, t in
                    series[["metric", "step", "value", "timestamp"]].itertuples(index=False)]
        path.write_bytes(b"".join(records))
        written.append(path)
    return written


def _seconds(timestamp: pd.Timestamp) -> float:
    return timestamp.timestamp()
