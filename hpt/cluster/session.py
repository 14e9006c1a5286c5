"""The Ray a tuning job runs on: one hpt starts for itself, or a cluster it joins.

A Ray of its own is bound to 127.0.0.1 and dies with the launcher: its session is handed to
the reaper, because Ray's agents outlive a SIGKILLed driver. Joining (`--address auto`,
`--address HOST:PORT`) is checked before `ray.init`, which would otherwise retry for 20 s to
80 s and end in a traceback: the address must answer, and a cluster that uses Ray's token
authentication must accept the token this machine has (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token, where `ray start` keeps it). Ray itself enables the token only for
`auto`; hpt does the same for every address form.

An address is joined as given. Ray rewrites a loopback address (127.0.0.1, localhost) to the
machine's routed one unless its switch for laptops, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, was
set before Ray was imported; a Ray bound to 127.0.0.1 (hpt api's, `ray start` with that
switch) does not answer there. hpt flips the same switch on the module for this process
only, for a loopback address and for a Ray of its own (which it binds to 127.0.0.1): no
user needs to set it, and the training jobs it starts do not inherit it.
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

from hpt.core.errors import UserError
from hpt.processes.reaper import REAPER

# hpt prints the dashboard URL and where the token is; Ray's own warning that token auth is
# on would be noise in every launch (it stays at ERROR and above).
logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
    logging.ERROR)

PROBE_SECONDS = 3.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Ray's usage statistics are sent by the dashboard of a Ray hpt starts, to Ray's servers: off
# unless the user's environment says otherwise (read by Ray's processes, so set in theirs).
USAGE_STATS = "RAY_USAGE_STATS_ENABLED"
TOKEN_HELP = ("put the cluster's token in ~/.ray/auth_token (`ray get-auth-token` prints it on "
              "the head node) or in RAY_AUTH_TOKEN")


@dataclass(frozen=True)
class RaySession:
    dashboard_url: str | None
    session_dir: str | None
    started_here: bool  # a Ray of hpt's own, which ends with the launcher
    gcs_address: str | None = None  # HOST:PORT of its GCS (watched: hpt/cluster/watch.py)


def start_or_join(address: str | None, dashboard: bool, dashboard_host: str = "127.0.0.1",
                  metadata: dict[str, str] | None = None,
                  checked_gcs: str | None = None) -> RaySession:
    """Starts a Ray of its own (address None) or joins `address`; the tuning job is this Ray
    job, its metadata naming it in the dashboard's Jobs view. `checked_gcs`: what
    check_cluster(address) returned already (hpt launch checks before it writes anything).
    Does nothing (and returns an empty session) when this process is already connected."""
    if ray.is_initialized():
        return RaySession(None, _session_dir(), started_here=False)
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level="WARNING",
                                  configure_logging=True,
                                  job_config=JobConfig(metadata=metadata or {}))
    if address:
        gcs = address if address.startswith("ray://") else \
            checked_gcs or check_cluster(address)
        if address != "auto":
            os.environ.pop("RAY_ADDRESS", None)  # Ray would join that one instead
        try:
            context = ray.init(address=gcs, **kwargs)
        except (ConnectionError, RuntimeError) as exc:
            raise UserError(f"--address {address}: Ray could not join the cluster at {gcs} "
                            f"({exc}); check `ray status` on the head node") from None
        started = False
    else:
        # "local": a Ray of our own, never a cluster some earlier `ray start` left running
        # (plain ray.init() would join it); --address auto joins one on purpose.
        keep_on_loopback()
        os.environ.setdefault(USAGE_STATS, "0")
        context = ray.init(address="local", include_dashboard=dashboard,
                           dashboard_host=dashboard_host, **kwargs)
        started = True
    session_dir = _session_dir()
    if started and session_dir:
        REAPER.ray_session(session_dir)
    url = getattr(context, "dashboard_url", None)
    gcs = None if address and address.startswith("ray://") else \
        ray.get_runtime_context().gcs_address
    return RaySession(f"http://{url}" if url else None, session_dir, started, gcs)


def keep_on_loopback() -> None:
    """Ray's switch for laptops, for this process: a Ray it starts binds 127.0.0.1, and a
    loopback address is joined as it is, not as the machine's routed address. (The switch
    is a constant Ray reads from the environment when it is imported; Ray reads it from
    the module when it picks a node's address.)"""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def check_cluster(address: str) -> str:
    """The cluster's GCS address once it answers and accepts this machine's token; a
    UserError saying why and how to fix it otherwise. Writes nothing: `hpt launch` calls it
    before it records a run of the job."""
    from ray._private.services import get_ray_address_from_environment, parse_address

    try:
        # `auto`: RAY_ADDRESS, or the cluster `ray start` last started here.
        gcs = get_ray_address_from_environment(address, None) if address == "auto" else address
        parsed = parse_address(gcs) if gcs else None
    except (ConnectionError, OSError, ValueError) as exc:
        gcs, parsed, found = None, None, exc
    else:
        found = None if parsed or not gcs else f"{gcs!r} is not HOST:PORT"
    if not parsed:
        raise UserError(f"--address {address}: no running Ray cluster found"
                        + (f" ({found})" if found else "") + "; start one (`ray start --head`) "
                        "or give the head's HOST:PORT")
    host, port = parsed
    if host in LOOPBACK_HOSTS:
        keep_on_loopback()
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
