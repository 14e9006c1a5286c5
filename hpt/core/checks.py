"""The checks of hpt's input values, each raising a problem in hpt's style ("what is wrong
(got X); how to fix it"): numbers, choices, mappings, names. The space file's models
(hpt/spacefile) use them, and so does each strategy and early-stopping rule for the
`strategy_config` keys it declares (hpt/search/strategies, hpt/schedule/rules), which is why
they sit at the bottom layer.

A problem is a pydantic error whose message is already the user's line;
`hpt.spacefile.messages` prefixes it with the file and the field's path. A check may report
several problems at once, each on a sub-path of the field (`problems([(("min",), msg),
(("max",), msg)])`).
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from typing import Any, Callable, Iterable

from pydantic_core import PydanticCustomError

from hpt.core.sagemaker_names import is_reserved

HPT_ERROR = "hpt"

# A check of one value: returns it (normalized) or raises `problem(...)`.
Check = Callable[[Any], Any]


# -- raising problems ------------------------------------------------------------------------

def problem(message: str) -> PydanticCustomError:
    return PydanticCustomError(HPT_ERROR, "{message}", {"message": message})


def problems(found: list[tuple[tuple, str]]) -> PydanticCustomError:
    """Several problems at once, each at a sub-path (a tuple of keys) of the checked field."""
    return PydanticCustomError(HPT_ERROR, "{message}",
                               {"message": found[0][1], "problems": list(found)})


# -- showing values ---------------------------------------------------------------------------

def show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        more = ", ..." if len(value) > 6 else ""
        text = "[" + ", ".join(show(v) for v in value[:6]) + more + "]"
        return "a list " + text if len(text) <= 60 else "a list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value.isoformat()}"
    return f"a {type(value).__name__}"


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


def did_you_mean(word: Any, choices: Iterable[str]) -> str | None:
    """The closest choice to a misspelt word, or None."""
    if not isinstance(word, str):
        return None
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return close[0]
    starting = [c for c in choices if word and _norm(c).startswith(_norm(word))]
    if len(starting) == 1 and len(_norm(word)) >= 3:
        return starting[0]
    normalized = {_norm(c): c for c in choices}
    if _norm(word) in normalized:
        return normalized[_norm(word)]
    close = difflib.get_close_matches(_norm(word), list(normalized), n=1, cutoff=0.6)
    return normalized[close[0]] if close else None


def _got_text(value: Any) -> str:
    """' ; write it without quotes' when a number or bool was quoted."""
    if isinstance(value, str):
        try:
            float(value)
            return "; write the number without quotes"
        except ValueError:
            pass
    return ""


# -- scalar checks ----------------------------------------------------------------------------

def integer(ge: int | None = None, le: int | None = None,
            fix: str = "") -> Callable[[Any], int]:
    """A whole number (an integral float such as 1e3 counts); bools and strings rejected."""
    def check(value: Any) -> int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise problem(f"must be an integer (got {show(value)})"
                          + (_got_text(value) or (f"; {fix}" if fix else "")))
        if ge is not None and value < ge:
            raise problem(f"must be >= {ge} (got {value})" + (f"; {fix}" if fix else ""))
        if le is not None and value > le:
            raise problem(f"must be <= {le} (got {value})" + (f"; {fix}" if fix else ""))
        return value
    return check


def number(gt: float | None = None, ge: float | None = None) -> Callable[[Any], float]:
    """A finite int or float; bools, strings, NaN and inf rejected."""
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise problem(f"must be a number (got {show(value)})" + _got_text(value))
        if not math.isfinite(value):
            raise problem(f"must be a finite number (got {show(value)}); give a real bound")
        if gt is not None and value <= gt:
            raise problem(f"must be > {show(gt)} (got {show(value)})")
        if ge is not None and value < ge:
            raise problem(f"must be >= {show(ge)} (got {show(value)})")
        return float(value)
    return check


_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def boolean(value: Any) -> bool:
    """true/false; also YAML 1.1's on/off/yes/no, quoted or not."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise problem(f"must be true or false (got {show(value)})")


def text(value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise problem(f"must be a string (got {show(value)}); quote it")
    if not value.strip():
        raise problem("must not be empty (got '')")
    return value


def refused_by(reason_against: Callable[[Any], str | None]) -> Check:
    """A check from a rule that says why a value is wrong (or None when it is right): the
    rule stays a plain function other callers (the API, the SageMaker JSON) can ask too."""
    def check(value: Any) -> Any:
        reason = reason_against(value)
        if reason:
            raise problem(reason)
        return value
    return check


def optional(check: Callable[..., Any]) -> Callable[..., Any]:
    def maybe(value: Any) -> Any:
        return None if value is None else check(value)
    return maybe


def choice(*options: str) -> Callable[[Any], str]:
    """One of `options`; case, '-', '_' and spaces are ignored (SageMaker's `Maximize`,
    `ReverseLogarithmic`-style spellings normalize to hpt's)."""
    table = {_norm(o): o for o in options}

    def check(value: Any) -> str:
        if isinstance(value, str) and _norm(value) in table:
            return table[_norm(value)]
        guess = did_you_mean(value, options)
        raise problem(f"must be one of {', '.join(options)} (got {show(value)})"
                      + (f"; did you mean {guess!r}?" if guess else "; use one of them"))
    return check


def aliased_choice(aliases: dict[str, str], *options: str) -> Callable[[Any], str]:
    """`choice` that also accepts SageMaker's long names (e.g. Logarithmic -> log)."""
    base = choice(*options)

    def check(value: Any) -> str:
        if isinstance(value, str) and _norm(value) in aliases:
            return aliases[_norm(value)]
        return base(value)
    return check


# -- names and sections -------------------------------------------------------------------

def hyperparameter_name(value: Any) -> str:
    """A key of static_hyperparameters / hyperparameters."""
    if not isinstance(value, str):
        raise problem(f"the name must be a string (got {show(value)}); quote it")
    if not value:
        raise problem("the name must not be empty; name the hyperparameter")
    if any(c.isspace() or c in "=\0" for c in value):
        fixed = re.sub(r"[\s=\0]+", "_", value)
        raise problem(f"the name must not contain whitespace, '=' or NUL (got {show(value)}); "
                      f"e.g. {fixed!r}")
    if is_reserved(value):
        raise problem(f"{value!r} is reserved: SageMaker keeps every sagemaker_* key, "
                      f"_tuning_objective_metric and default_user_module_name for itself "
                      f"(distribution switches come from trainer.distribution); rename it")
    return value


def static_value_problem(value: Any, depth: int = 0) -> str | None:
    """Static hyperparameter values must survive JSON (hyperparameters.json)."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"must be a finite number (got {show(value)})"
    if depth < 20 and isinstance(value, (list, tuple)):
        return next((p for v in value if (p := static_value_problem(v, depth + 1))), None)
    if depth < 20 and isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "mapping keys must be strings; quote them"
        return next((p for v in value.values() if (p := static_value_problem(v, depth + 1))), None)
    return (f"must be a string, number, bool, list or mapping (got {show(value)}); "
            f"quote it to pass it as a string")



def collect(found: list, at: tuple, check: Callable[[Any], Any], value: Any) -> Any:
    """Runs `check`; a problem it raises is appended to `found` at sub-path `at`."""
    try:
        return check(value)
    except PydanticCustomError as exc:
        found.append((at, exc.message()))
        return value


def mapping(value: Any, what: str, example: str) -> dict:
    """A YAML mapping section; empty (null) means {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise problem(f"must be a mapping of {what} (got {show(value)}); e.g. {example}")
    return value
