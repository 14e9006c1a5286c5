"""Per-variant request statistics and their Prometheus text exposition (format 0.0.4)."""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

from hpt.serving.plan import Window

QUANTILES = (0.5, 0.9, 0.99)
WINDOW = 10_000  # latest requests kept per variant for quantiles and canary windows


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class VariantStats:
    """Counts by status code since start, and a window of the latest (time, seconds, code)."""
    codes: Counter = field(default_factory=Counter)
    latency_sum: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=WINDOW))

    def record(self, now: float, seconds: float, code: int) -> None:
        self.codes[code] += 1
        self.latency_sum += seconds
        self.recent.append((now, seconds, code))

    @property
    def count(self) -> int:
        return sum(self.codes.values())

    def quantiles(self) -> dict[float, float | None]:
        values = sorted(s for _, s, _ in self.recent)
        return {q: quantile(values, q) for q in QUANTILES}

    def window(self, since: float) -> Window:
        """Requests since `since`: errors are 5xx (the model's or the router's, 502)."""
        rows = [(s, c) for t, s, c in self.recent if t >= since]
        p99 = quantile(sorted(s for s, _ in rows), 0.99)
        return Window(len(rows), sum(1 for _, c in rows if c >= 500),
                      None if p99 is None else p99 * 1000)


def escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Exposition:
    """Builds a text-format page: one HELP/TYPE header per family, then its samples."""

    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: list[tuple[str, dict[str, str], float]]) -> None:
        help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.lines += [f"{sample}{_labels(labels)} {_number(value)}"
                       for sample, labels, value in samples]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_metrics(variants: dict[str, VariantStats], weights: dict[str, float],
                   shadow_counts: dict[str, int], shadow_agreement: float | None,
                   shadow_latency: VariantStats | None, canary: dict | None,
                   dropped_log_lines: int = 0) -> str:
    """The router's /metrics page."""
    page = Exposition()
    page.family("hpt_serving_requests_total", "counter",
                "Invocations answered, by production variant and HTTP status code.",
                [("hpt_serving_requests_total", {"variant": v, "code": str(code)}, n)
                 for v, stats in sorted(variants.items())
                 for code, n in sorted(stats.codes.items())])
    latency = []
    for v, stats in sorted(variants.items()):
        for q, value in stats.quantiles().items():
            latency.append(("hpt_serving_latency_seconds", {"variant": v, "quantile": str(q)},
                            math.nan if value is None else value))
        latency.append(("hpt_serving_latency_seconds_sum", {"variant": v}, stats.latency_sum))
        latency.append(("hpt_serving_latency_seconds_count", {"variant": v}, stats.count))
    page.family("hpt_serving_latency_seconds", "summary",
                "Invocation latency through the router, over the latest requests.", latency)
    page.family("hpt_serving_variant_weight", "gauge",
                "Current traffic weight of each variant.",
                [("hpt_serving_variant_weight", {"variant": v}, float(w))
                 for v, w in sorted(weights.items())])
    if shadow_latency is not None:
        page.family("hpt_serving_shadow_requests_total", "counter",
                    "Shadow copies by outcome: ok (2xx), error (other status or unreachable), "
                    "dropped (too many in flight).",
                    [("hpt_serving_shadow_requests_total", {"outcome": o}, n)
                     for o, n in sorted(shadow_counts.items())])
        page.family("hpt_serving_shadow_agreement_ratio", "gauge",
                    "Share of compared shadow responses whose predictions equal production's.",
                    [("hpt_serving_shadow_agreement_ratio", {},
                      math.nan if shadow_agreement is None else shadow_agreement)])
        samples = [("hpt_serving_shadow_latency_seconds", {"quantile": str(q)},
                    math.nan if value is None else value)
                   for q, value in shadow_latency.quantiles().items()]
        samples += [("hpt_serving_shadow_latency_seconds_sum", {}, shadow_latency.latency_sum),
                    ("hpt_serving_shadow_latency_seconds_count", {}, shadow_latency.count)]
        page.family("hpt_serving_shadow_latency_seconds", "summary",
                    "Shadow request latency, over the latest requests.", samples)
    if canary is not None:
        from hpt.serving.canary import STATES

        page.family("hpt_serving_canary_state", "gauge",
                    "1 for the canary rollout's current state.",
                    [("hpt_serving_canary_state", {"green": canary["green"], "state": s},
                      1.0 if s == canary["state"] else 0.0) for s in STATES])
        page.family("hpt_serving_canary_step_percent", "gauge",
                    "Traffic percent the canary (green) gets now.",
                    [("hpt_serving_canary_step_percent", {"green": canary["green"]},
                      float(canary["step_percent"]))])
    page.family("hpt_serving_log_dropped_total", "counter",
                "Access-log and shadow-log lines dropped because the writer fell behind.",
                [("hpt_serving_log_dropped_total", {}, dropped_log_lines)])
    return page.text()
