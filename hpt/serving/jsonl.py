"""Log lines written off the request path: a bounded queue and one writer thread per file."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path


class JsonlWriter:
    """Appends JSON lines to a file from a thread, fed by a bounded queue: `write` never
    blocks (a full queue drops the line and counts it); `close` writes what is queued."""

    def __init__(self, path: Path, maxsize: int = 10_000):
        self.path = Path(path)
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name=f"writer:{self.path.name}",
                                        daemon=True)
        self._thread.start()

    def write(self, record: dict) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            while True:
                record = self._queue.get()
                if record is None:
                    return
                f.write(json.dumps(record, default=str) + "\n")
                if self._queue.empty():
                    f.flush()

    def close(self) -> None:
        self._queue.put(None)  # blocking on purpose: after every queued line
        self._thread.join(timeout=30)
