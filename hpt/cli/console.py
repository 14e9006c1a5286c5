"""The console of a long-running command (`hpt launch`, `hpt api`, `hpt serve`): a view of the
work, never part of it.

A reader that goes away (`hpt launch space.yaml | head -3`, a terminal closed under `nohup`)
makes the next write fail with EPIPE or EIO. The journal is the record of a tuning job, so
such a failure must not stop it: the stream's descriptor is pointed at /dev/null (what is
still buffered, later writes and the processes started afterwards all go there), a line on
the other stream says so once, and the work goes on.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TextIO

# The errors of a reader that went away (a pipe's reader exited, a terminal closed).
READER_GONE = (errno.EPIPE, errno.EIO, errno.ECONNRESET)


class ReaderProofStream:
    """A text stream whose writes never fail because its reader went away."""

    def __init__(self, stream: TextIO, name: str, other: TextIO | None = None):
        self._stream, self._name, self._other = stream, name, other
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lost(exc)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):  # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)

    def _lost(self, exc: OSError) -> None:
        if exc.errno not in READER_GONE and not isinstance(exc, BrokenPipeError):
            raise exc
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            self._stream.flush()  # what was buffered goes to /dev/null now
        except (OSError, ValueError):
            pass
        if self._other is not None:
            try:
                self._other.write(f"hpt: {self._name} was closed by its reader "
                                  f"({os.strerror(exc.errno or errno.EPIPE)}); the work goes on "
                                  f"without printing: its journal is the record\n")
                self._other.flush()
            except (OSError, ValueError):
                pass


def outlive_readers() -> None:
    """From now on, stdout and stderr never fail this process for a reader that went away."""
    if not isinstance(sys.stdout, ReaderProofStream) and sys.stdout is not None:
        sys.stdout = ReaderProofStream(sys.stdout, "its output", sys.__stderr__)
    if not isinstance(sys.stderr, ReaderProofStream) and sys.stderr is not None:
        sys.stderr = ReaderProofStream(sys.stderr, "its error output")
