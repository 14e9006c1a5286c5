"""Errors hpt shows to users: a clear message, exit code 2, no traceback; and the exit code of
a launcher that could not go on."""

# `hpt launch` could not go on (the Ray its trials run on was lost): no ending was written,
# the job is resumable (sysexits' EX_TEMPFAIL: try again later).
LAUNCHER_LOST_EXIT = 75


class UserError(Exception):
    """Bad input or a request that cannot be carried out; the message says how to fix it."""


class CannotGoOn(Exception):
    """The launcher cannot go on (its Ray was lost, its controller stopped short): no ending
    was written and the job is resumable; the message says what happened and how to go on."""
