"""SageMaker's encodings of a value, as the sagemaker-training toolkit reads and writes them:
in hyperparameters.json, in the `SM_*` variables, on the script's command line (pure)."""

from __future__ import annotations

import json
from typing import Any


def encode_hyperparameters(values: dict[str, Any]) -> dict[str, str]:
    """hyperparameters.json encoding: each value as JSON text, so `json.loads` gives it back."""
    encoded = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ValueError(f"hyperparameter names must be strings (got {key!r})")
        try:
            encoded[key] = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"hyperparameter {key!r}: value {value!r} is not JSON "
                             f"serializable ({exc}); use str, int, float, bool, list, dict "
                             f"or None") from None
    return encoded


def _decode(obj: Any) -> str:
    """The toolkit's mapping._decode."""
    if obj is None:
        return ""
    if isinstance(obj, bytes):
        return obj.decode("latin1")
    return str(obj)


def user_args(user_hps: dict[str, Any]) -> list[str]:
    """The script's command-line arguments: `mapping.to_cmd_args` of the user hyperparameters."""
    args: list[str] = []
    for key in sorted(user_hps):
        name = _decode(key)
        args.append(("--%s" % name if len(name) > 1 else "-%s" % name) if name else "")
        value = user_hps[key]
        if hasattr(value, "items"):
            args.append(",".join("%s=%s" % (k, v) for k, v in sorted(value.items())))
        else:
            args.append(_decode(value))
    return args


def env_value(v: Any) -> str:
    """The value of an `SM_*` variable: `mapping.to_env_vars`' encoding."""
    if isinstance(v, bytes):
        return v.decode("latin1")
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
