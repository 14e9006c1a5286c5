"""Secrets never land on disk: environment variables whose names look secret are redacted in
everything hpt writes (spec.json, reports) and given back from the environment when a stored
spec is used again (`hpt rerun`)."""

from __future__ import annotations

import fnmatch
import os
from typing import Any

# Names that look secret (case-insensitive): the list plus the usual suspects.
SECRET_PATTERNS = ("*SECRET*", "*TOKEN*", "*KEY*", "AWS_*", "*PASSWORD*", "*PASSWD*",
                   "*CREDENTIAL*")
REDACTED = "<redacted: set in the environment>"


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_PATTERNS)


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if looks_secret(k) else v) for k, v in env.items()}


def redact_spec(frozen: dict[str, Any]) -> dict[str, Any]:
    """The frozen spec as written to spec.json: trainer.environment secrets redacted."""
    trainer = dict(frozen.get("trainer") or {})
    if trainer.get("environment"):
        trainer["environment"] = redact_env(trainer["environment"])
    return {**frozen, "trainer": trainer}


def restore_env(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Redacted values taken from this process's environment; returns (env, names missing)."""
    out, missing = {}, []
    for key, value in env.items():
        if value == REDACTED:
            if key in os.environ:
                out[key] = os.environ[key]
            else:
                missing.append(key)
        else:
            out[key] = value
    return out, missing
