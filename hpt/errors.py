"""Errors hpt shows to users: a clear message, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input or a request that cannot be carried out; the message says how to fix it."""
