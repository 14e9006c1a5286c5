"""The Pareto front figure of a multi-objective tuning job's report (`hpt report NAME --format
html|png`): objective 1 against objective 2 with 2 objectives, parallel coordinates with 3+.

Drawn from the experiment table, not from Optuna's `plot_pareto_front`: the table's `Feasible`
and `ParetoOptimal` columns are hpt's definition (hpt.core.objectives), the one `hpt best`,
`hpt.pareto_front` and `--pick` use, so the picture never disagrees with them. Pure: a table
and the frozen spec (spec.json) in, a figure out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from hpt.core.schema import Column
from hpt.experiment.table import FEASIBLE, PARETO_OPTIMAL, metric_column
from hpt.report.front import objectives_of
from hpt.core.trial import TrialStatus

TITLE = "Pareto front"
# One colour per kind of job, the same on the page and in the PNG.
FRONT_COLOUR, FEASIBLE_COLOUR, INFEASIBLE_COLOUR = "#ef553b", "#636efa", "#c8c8c8"


def is_multi_objective(spec: dict[str, Any]) -> bool:
    return len(objectives_of(spec)) > 1


def column_of(spec: dict[str, Any], metric: str) -> str:
    """The table's column of a metric's final value (hpt.experiment.table names it)."""
    return metric_column(metric, spec["hyperparameters"])


def axis_label(objective: dict[str, Any]) -> str:
    return f"{objective['metric']} ({objective['type']})"


def placed(table: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """The Completed jobs that have every objective's value (the only ones with a place on
    the figure), with boolean `Feasible` and `ParetoOptimal` (a job the table left unjudged
    counts as infeasible and off the front)."""
    columns = [column_of(spec, o["metric"]) for o in objectives_of(spec)]
    done = table[(table[Column.TRAINING_JOB_STATUS] == TrialStatus.COMPLETED)
                 & table.reindex(columns=columns).notna().all(axis=1)]
    flags = {flag: done[flag].fillna(False).astype(bool) if flag in done.columns
             else pd.Series(flag == FEASIBLE, index=done.index, dtype=bool)
             for flag in (FEASIBLE, PARETO_OPTIMAL)}
    return done.assign(**flags).sort_values(Column.TRIAL_NUMBER)


def _groups(done: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """(legend name, jobs, colour): infeasible, feasible off the front, the front; drawn in
    that order so the front lies on top."""
    front = done[PARETO_OPTIMAL]
    return [("infeasible", done[~done[FEASIBLE]], INFEASIBLE_COLOUR),
            ("feasible", done[done[FEASIBLE] & ~front], FEASIBLE_COLOUR),
            ("Pareto front", done[front], FRONT_COLOUR)]


def _step_shape(spec: dict[str, Any]) -> str:
    """Plotly's line shape of the front's staircase, the front sorted by objective 1: each
    corner is the point worse than both neighbours (the edge of what the front dominates), so
    vertical first when objective 1 is maximized, horizontal first when it is minimized."""
    return "vh" if objectives_of(spec)[0]["type"] == "maximize" else "hv"


def _code(done: pd.DataFrame) -> pd.Series:
    """0: infeasible, 1: feasible off the front, 2: on the front (parcoords line colour)."""
    return done[FEASIBLE].astype(int) + done[PARETO_OPTIMAL].astype(int)


# -- plotly (HTML) ----------------------------------------------------------------------------

def pareto_figure(table: pd.DataFrame, spec: dict[str, Any]):
    """The report's Pareto front figure (plotly): a scatter with 2 objectives, parallel
    coordinates with 3 or more. Raises ValueError when no job has a place on it yet."""
    done = placed(table, spec)
    if done.empty:
        raise ValueError("no Completed training job has every objective's value yet")
    if len(objectives_of(spec)) == 2:
        return _scatter_figure(done, spec)
    return _parcoords_figure(done, spec)


def _scatter_figure(done: pd.DataFrame, spec: dict[str, Any]):
    import plotly.graph_objects as go

    first, second = objectives_of(spec)
    x, y = column_of(spec, first["metric"]), column_of(spec, second["metric"])
    fig = go.Figure()
    for name, jobs, colour in _groups(done):
        if jobs.empty:
            continue
        on_front = name == "Pareto front"
        jobs = jobs.sort_values([x, Column.TRIAL_NUMBER]) if on_front else jobs
        fig.add_trace(go.Scatter(
            x=jobs[x], y=jobs[y], name=name, text=jobs[Column.TRAINING_JOB_NAME],
            mode="lines+markers" if on_front else "markers",
            line={"shape": _step_shape(spec), "color": colour, "width": 1.5},
            marker={"color": colour, "size": 11 if on_front else 8,
                    "line": {"width": 0.5, "color": "grey"}},
            hovertemplate="%{text}<br>" + f"{first['metric']}=%{{x:.6g}}<br>"
                          f"{second['metric']}=%{{y:.6g}}<extra>{name}</extra>"))
    fig.update_layout(title=f"{TITLE}: {len(done[done[PARETO_OPTIMAL]])} of {len(done)} "
                            "completed training jobs (grey: infeasible)",
                      xaxis_title=axis_label(first), yaxis_title=axis_label(second))
    return fig


def _parcoords_figure(done: pd.DataFrame, spec: dict[str, Any]):
    """One axis per objective. A parcoords line carries no hover text, so the first axis is
    the job's TrialNumber (its training job name's number) to tell the lines apart."""
    import plotly.graph_objects as go

    dimensions = [{"label": Column.TRIAL_NUMBER, "values": done[Column.TRIAL_NUMBER]}]
    dimensions += [{"label": axis_label(o), "values": done[column_of(spec, o["metric"])]}
                   for o in objectives_of(spec)]
    # A discrete colour scale: cmin 0 .. cmax 2 split in thirds, one per kind of job.
    scale = [[0.0, INFEASIBLE_COLOUR], [1 / 3, INFEASIBLE_COLOUR], [1 / 3, FEASIBLE_COLOUR],
             [2 / 3, FEASIBLE_COLOUR], [2 / 3, FRONT_COLOUR], [1.0, FRONT_COLOUR]]
    line = {"color": _code(done), "cmin": 0, "cmax": 2, "colorscale": scale, "showscale": True,
            "colorbar": {"tickvals": [1 / 3, 1, 5 / 3], "thickness": 14,
                         "ticktext": ["infeasible", "feasible", "Pareto front"]}}
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line=line,
                                 unselected={"line": {"opacity": 0.1}}))
    fig.update_layout(title=f"{TITLE}: {int(done[PARETO_OPTIMAL].sum())} of {len(done)} "
                            "completed training jobs, one axis per objective")
    return fig


# -- matplotlib (PNG) -------------------------------------------------------------------------

def pareto_axes(table: pd.DataFrame, spec: dict[str, Any]):
    """The same figure for `--format png` (matplotlib axes): a scatter with 2 objectives, a
    parallel-coordinates line plot (each axis scaled to its own range) with 3 or more."""
    import matplotlib.pyplot as plt

    done = placed(table, spec)
    if done.empty:
        raise ValueError("no Completed training job has every objective's value yet")
    _, ax = plt.subplots()
    if len(objectives_of(spec)) == 2:
        _draw_scatter(ax, done, spec)
    else:
        _draw_parallel(ax, done, spec)
    ax.set_title(f"{TITLE}: {int(done[PARETO_OPTIMAL].sum())} of {len(done)} completed "
                 "training jobs")
    ax.legend(fontsize=8)
    return ax


def _draw_scatter(ax, done: pd.DataFrame, spec: dict[str, Any]) -> None:
    first, second = objectives_of(spec)
    x, y = column_of(spec, first["metric"]), column_of(spec, second["metric"])
    for name, jobs, colour in _groups(done):
        if jobs.empty:
            continue
        if name == "Pareto front":
            jobs = jobs.sort_values([x, Column.TRIAL_NUMBER])
            # steps-pre is plotly's "vh" (vertical first), steps-post its "hv".
            ax.plot(jobs[x], jobs[y], color=colour, linewidth=1, zorder=2,
                    drawstyle="steps-pre" if _step_shape(spec) == "vh" else "steps-post")
        ax.scatter(jobs[x], jobs[y], color=colour, label=name, zorder=3,
                   edgecolors="grey", linewidths=0.5, s=60 if name == "Pareto front" else 30)
    ax.set_xlabel(axis_label(first))
    ax.set_ylabel(axis_label(second))


def _draw_parallel(ax, done: pd.DataFrame, spec: dict[str, Any]) -> None:
    objectives = objectives_of(spec)
    values = done[[column_of(spec, o["metric"]) for o in objectives]].astype(float)
    low, high = values.min(), values.max()
    scaled = (values - low) / (high - low).where(high > low, 1.0)
    positions = list(range(len(objectives)))
    for name, jobs, colour in _groups(done):
        for i, index in enumerate(jobs.index):
            ax.plot(positions, scaled.loc[index], color=colour, marker="o",
                    label=name if i == 0 else None, alpha=0.5 if name == "infeasible" else 0.9,
                    linewidth=2 if name == "Pareto front" else 1)
    ax.set_xticks(positions, [f"{axis_label(o)}\n{lo:.4g} .. {hi:.4g}"
                              for o, lo, hi in zip(objectives, low, high)], fontsize=8)
    ax.set_yticks([0, 1], ["min", "max"])
    for position in positions:
        ax.axvline(position, color="black", linewidth=0.5)
