"""The lineage plot of a `strategy: pbt` job: each training job's objective over its steps,
and each exploit (the journal's `trial_exploited` events) as a dashed link from the donor's
value at the step it was copied to the recipient's first value after it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpt.core.schema import Column, Event, Key, Point
from hpt.experiment.store import JOURNAL, read_journal
from hpt.report.summary import load_metrics

TITLE = "Lineage (population-based training)"


def exploits(root: Path) -> list[dict]:
    return [e for e in read_journal(Path(root) / JOURNAL)
            if e.get(Key.EVENT) == Event.TRIAL_EXPLOITED]


def _value_at(curve: pd.DataFrame, step: int | None, after: bool) -> tuple[int, float] | None:
    """The curve's point at `step` (or, `after`, its first point past it)."""
    if step is None or curve.empty:
        return None
    rows = curve[curve[Point.STEP] > step] if after else curve[curve[Point.STEP] <= step]
    if rows.empty:
        return None
    row = rows.iloc[0] if after else rows.iloc[-1]
    return int(row[Point.STEP]), float(row[Point.VALUE])


def lineage_figure(root: Path, objective: str):
    import plotly.graph_objects as go

    metrics = load_metrics(root)
    curves = {name: points.sort_values("step") for name, points in
              metrics[metrics["metric"] == objective].groupby(Column.TRAINING_JOB_NAME)} \
        if not metrics.empty else {}
    fig = go.Figure()
    for name, points in curves.items():
        fig.add_trace(go.Scatter(x=points[Point.STEP], y=points[Point.VALUE], mode="lines+markers",
                                 name=name))
    empty = pd.DataFrame(columns=["step", "value"])
    for event in exploits(root):
        donor = _value_at(curves.get(event[Key.PARENT], empty), event.get(Key.STEP), after=False)
        recipient = _value_at(curves.get(event[Key.TRAINING_JOB_NAME], empty), event.get(Key.STEP),
                              after=True)
        if donor is None or recipient is None:
            continue
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in (event.get(Key.HYPERPARAMETERS) or {}).items())
        fig.add_trace(go.Scatter(
            x=[donor[0], recipient[0]], y=[donor[1], recipient[1]], mode="lines",
            line={"dash": "dash", "color": "grey"}, showlegend=False,
            hovertext=f"{event[Key.TRAINING_JOB_NAME]} exploits {event[Key.PARENT]} at step "
                      f"{event.get(Key.STEP)}: {values}", hoverinfo="text"))
    fig.update_layout(title=f"{len(exploits(root))} exploits: dashed, donor -> recipient",
                      xaxis_title="step (objective report)", yaxis_title=objective)
    return fig
