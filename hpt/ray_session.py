"""The Ray a tuning job runs on: one hpt starts for itself, or a cluster it joins.

A Ray of its own is bound to 127.0.0.1 and dies with the launcher: its session is handed to
the reaper, because Ray's agents outlive a SIGKILLed driver. Joining (`--address auto`,
`--address HOST:PORT`) is checked before `ray.init`, which would otherwise retry for 20 s to
80 s and end in a traceback: the address must answer, and a cluster that uses Ray's token
authentication must accept the token this machine has (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token, where `ray start` keeps it). Ray itself enables the token only for
`auto`; hpt does the same for every address form.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from typing import Any

import ray
from ray.job_config import JobConfig

from hpt.errors import UserError
from hpt.runtime.reaper import REAPER

# hpt prints the dashboard URL and where the token is; Ray's own warning that token auth is
# on would be noise in every launch (it stays at ERROR and above).
logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
    logging.ERROR)

PROBE_SECONDS = 3.0
TOKEN_HELP = ("put the cluster's token in ~/.ray/auth_token (`ray get-auth-token` prints it on "
              "the head node) or in RAY_AUTH_TOKEN")


@dataclass(frozen=True)
class RaySession:
    dashboard_url: str | None
    session_dir: str | None
    started_here: bool  # a Ray of hpt's own, which ends with the launcher


def start_or_join(address: str | None, dashboard: bool, dashboard_host: str = "127.0.0.1",
                  metadata: dict[str, str] | None = None) -> RaySession:
    """Starts a Ray of its own (address None) or joins `address`; the tuning job is this Ray
    job, its metadata naming it in the dashboard's Jobs view. Does nothing (and returns an
    empty session) when this process is already connected."""
    if ray.is_initialized():
        return RaySession(None, _session_dir(), started_here=False)
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level="WARNING",
                                  configure_logging=True,
                                  job_config=JobConfig(metadata=metadata or {}))
    if address:
        gcs = address if address.startswith("ray://") else check_cluster(address)
        try:
            context = ray.init(address=gcs, **kwargs)
        except (ConnectionError, RuntimeError) as exc:
            raise UserError(f"--address {address}: Ray could not join the cluster at {gcs} "
                            f"({exc}); check `ray status` on the head node") from None
        started = False
    else:
        # "local": a Ray of our own, never a cluster some earlier `ray start` left running
        # (plain ray.init() would join it); --address auto joins one on purpose.
        context = ray.init(address="local", include_dashboard=dashboard,
                           dashboard_host=dashboard_host, **kwargs)
        started = True
    session_dir = _session_dir()
    if started and session_dir:
        REAPER.ray_session(session_dir)
    url = getattr(context, "dashboard_url", None)
    return RaySession(f"http://{url}" if url else None, session_dir, started)


def check_cluster(address: str) -> str:
    """The cluster's GCS address once it answers and accepts this machine's token; a
    UserError saying why and how to fix it otherwise."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        gcs = canonicalize_bootstrap_address(address)
    except (OSError, ValueError) as exc:  # a malformed address, a host that does not resolve
        gcs, found = None, exc
    else:
        found = None
    if not gcs:
        raise UserError(f"--address {address}: no running Ray cluster found"
                        + (f" ({found})" if found else "") + "; start one (`ray start --head`) "
                        "or give the head's HOST:PORT")
    host, _, port = gcs.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_SECONDS):
            pass
    except (OSError, ValueError) as exc:
        raise UserError(f"--address {address}: nothing answers at {gcs} "
                        f"({getattr(exc, 'strerror', None) or exc}); start the cluster "
                        f"(`ray start --head --port {port or 6379}`) or fix the address") from None
    _enable_token_if_available()
    _check_token(address, gcs)
    return gcs


def _enable_token_if_available() -> None:
    """Ray's own rule for `--address auto`: RAY_AUTH_MODE unset and a token on this machine
    turn token auth on (Ray 2.60 applies it to `auto` only; older Rays have no token auth)."""
    try:
        from ray._private.authentication.authentication_token_setup import \
            maybe_enable_token_auth_if_token_available
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _check_token(address: str, gcs: str) -> None:
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:
        return
    try:
        with _stderr_to_nowhere():  # the C++ client logs each refusal on fd 2
            GcsClient(address=gcs).cluster_id
    except AuthenticationError:
        mode = os.environ.get("RAY_AUTH_MODE", "")
        why = ("this shell disables token auth (RAY_AUTH_MODE=disabled)" if mode == "disabled"
               else "the token this machine has is not the cluster's" if mode == "token"
               else "no token found on this machine")
        raise UserError(f"--address {address}: the cluster at {gcs} refused the connection: it "
                        f"uses Ray's token authentication and {why}; {TOKEN_HELP}") from None
    except Exception as exc:  # noqa: BLE001 - what Ray says is the reason, whatever its class
        raise UserError(f"--address {address}: {gcs} answers but is not a Ray cluster Ray can "
                        f"join ({type(exc).__name__}: {exc}); check the port (the head's "
                        f"GCS port, 6379 by default)") from None


@contextlib.contextmanager
def _stderr_to_nowhere():
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def token_source() -> str:
    """Where this machine's Ray token is, as Ray looks for it."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the RAY_AUTH_TOKEN variable"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"


def _session_dir() -> str | None:
    node = getattr(ray._private.worker, "_global_node", None)
    return node.get_session_dir_path() if node is not None else None
