"""The plots of a tuning job: plotly figures for its HTML page (hpt/report/page.py, `hpt report
NAME --format html`) and PNG images of the main ones (`--format png`). Works while the job
still runs: it only reads the journal, the metrics files and the Optuna study.

Plots: optimization history and slices (drawn from the table, so trials carry the job's own
numbers, TrialNumber, from 1), parallel coordinates and hyperparameter importance (Optuna's
visualization; its default evaluator, PED-ANOVA in Optuna 5), and the learning curves of the
top trials (from every objective data point hpt recorded). Every plot takes the page's width.

A multi-objective job's page opens with its Pareto front (hpt.report.pareto) and has one
importance plot per objective; the plots of one value (history, curves, slices, parallel
coordinates) show the first objective, FinalObjectiveValue's. The summary names them all.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from hpt.core.schema import Column, File, Point
from hpt.experiment.table import resolve_experiment
from hpt.report.front import objectives_of
from hpt.report.summary import load_experiment, load_metrics
from hpt.report.lineage import TITLE as LINEAGE_TITLE, exploits, lineage_figure
from hpt.report.pareto import TITLE as PARETO_TITLE
from hpt.report.pareto import is_multi_objective, pareto_axes, pareto_figure, placed
from hpt.core.trial import TrialStatus
from hpt.schedule.rules import rule_of

TOP_CURVES = 5


def _study(root: Path, spec: dict[str, Any]):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", module="optuna")  # experimental / equal-importance notes
    path = root / File.STUDY
    if not path.is_file():
        return None
    # Optuna's own reader: it never writes (hpt's writer is the launcher's alone).
    from hpt.search.space import in_user_terms
    from hpt.spacefile import Spec

    storage = JournalStorage(JournalFileBackend(str(path)))
    return in_user_terms(optuna.load_study(study_name=spec["name"], storage=storage),
                         Spec.from_frozen_dict(spec).hyperparameters)


def _finished(study) -> int:
    from optuna.trial import TrialState
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def _top_curves(root: Path, table: pd.DataFrame, objective: str, maximize: bool
                ) -> pd.DataFrame:
    ranked = table.dropna(subset=[Column.FINAL_OBJECTIVE_VALUE]).sort_values(
        Column.FINAL_OBJECTIVE_VALUE, ascending=not maximize).head(TOP_CURVES)
    metrics = load_metrics(root)
    if metrics.empty:
        return metrics
    curves = metrics[(metrics["metric"] == objective)
                     & metrics[Column.TRAINING_JOB_NAME].isin(ranked[Column.TRAINING_JOB_NAME])]
    return curves


def _scored(table: pd.DataFrame) -> pd.DataFrame:
    """Completed jobs with an objective, in the job's own order (TrialNumber, as in the table,
    the training job names and `hpt rerun N`; Optuna's trial numbers start at 0)."""
    return table[(table[Column.TRAINING_JOB_STATUS] == TrialStatus.COMPLETED)
                 & table[Column.FINAL_OBJECTIVE_VALUE].notna()].sort_values(Column.TRIAL_NUMBER)


def _best_so_far(values: pd.Series, maximize: bool) -> pd.Series:
    return values.cummax() if maximize else values.cummin()


def _study_plots(plots, study, spec: dict[str, Any]) -> list[tuple[str, str, Callable[[], Any]]]:
    """(title, PNG file name, build) of Optuna's plots of the study, from `plots`
    (optuna.visualization or its matplotlib twin). On a multi-objective study each gets a
    `target` (Optuna raises without one): parallel coordinates show the first objective, and
    importance is one plot per objective."""
    objectives = objectives_of(spec)
    first = objectives[0]["metric"]
    if not is_multi_objective(spec):
        return [("Parallel coordinates", "parallel_coordinates", lambda: plots.
                 plot_parallel_coordinate(study, target_name=first)),
                ("Hyperparameter importance", "param_importances", lambda: plots.
                 plot_param_importances(study, target_name=first))]
    out = [("Parallel coordinates", "parallel_coordinates", lambda: plots.
            plot_parallel_coordinate(study, target=_value_of(0), target_name=first))]
    for i, objective in enumerate(objectives):
        metric = objective["metric"]
        out.append((f"Hyperparameter importance for {metric}",
                    "param_importances_" + re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_"),
                    _importance(plots, study, i, objective)))
    return out


def _value_of(index: int, sign: float = 1.0) -> Callable[[Any], float]:
    return lambda trial: sign * trial.values[index]


def _importance(plots, study, index: int, objective: dict[str, Any]) -> Callable[[], Any]:
    """Importance for reaching an objective's better values: given a target, PED-ANOVA ranks
    parameters by how they reach its low values, so a maximized objective is negated."""
    sign = -1.0 if objective["type"] == "maximize" else 1.0
    return lambda: plots.plot_param_importances(study, target=_value_of(index, sign),
                                                target_name=objective["metric"])


def _log_scaled(spec: dict[str, Any]) -> set[str]:
    from hpt.search.space import effective_scaling
    from hpt.spacefile import Spec

    ranges = Spec.from_frozen_dict(spec).hyperparameters
    return {name for name, rng in ranges.items() if effective_scaling(rng) == "log"}


# -- plotly (HTML) ----------------------------------------------------------------------------

SLICE_COLUMNS = 3


def history_figure(table: pd.DataFrame, objective: str, maximize: bool):
    import plotly.graph_objects as go

    done = _scored(table)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=done[Column.TRIAL_NUMBER], y=done[Column.FINAL_OBJECTIVE_VALUE],
                             mode="markers", name=objective, text=done[Column.TRAINING_JOB_NAME]))
    fig.add_trace(go.Scatter(x=done[Column.TRIAL_NUMBER],
                             y=_best_so_far(done[Column.FINAL_OBJECTIVE_VALUE], maximize),
                             mode="lines", name="best so far"))
    fig.update_layout(title="Optimization history", xaxis_title="trial number (TrialNumber)",
                      yaxis_title=objective)
    return fig


def slices_figure(table: pd.DataFrame, spec: dict[str, Any]):
    """One panel per tuned hyperparameter (objective against its value, coloured by trial
    number), SLICE_COLUMNS to a row so the page never grows sideways."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    done = _scored(table)
    names = list(spec["hyperparameters"])
    rows = math.ceil(len(names) / SLICE_COLUMNS)
    fig = make_subplots(rows=rows, cols=min(SLICE_COLUMNS, len(names)), subplot_titles=names,
                        shared_yaxes=True, vertical_spacing=0.5 / rows)
    log = _log_scaled(spec)
    for i, name in enumerate(names):
        row, col = divmod(i, SLICE_COLUMNS)
        fig.add_trace(go.Scatter(
            x=done[name], y=done[Column.FINAL_OBJECTIVE_VALUE], mode="markers", name=name,
            text=[f"trial {n}" for n in done[Column.TRIAL_NUMBER]], showlegend=False,
            marker={"color": done[Column.TRIAL_NUMBER], "colorscale": "Blues",
                    "showscale": i == 0, "colorbar": {"title": "trial"},
                    "line": {"width": 0.5, "color": "grey"}}), row=row + 1, col=col + 1)
        if name in log:
            fig.update_xaxes(type="log", row=row + 1, col=col + 1)
    fig.update_yaxes(title_text=spec["objective"]["metric"], col=1)
    fig.update_layout(title="Slices", height=320 * rows + 80)
    return fig


def plotly_figures(root: Path, spec: dict[str, Any], table: pd.DataFrame
                   ) -> list[tuple[str, Any, str | None]]:
    """(title, plotly figure or None, why it is missing) for each plot of the report. The
    table's plots need completed jobs in the table, Optuna's completed trials in the study."""
    import optuna.visualization as ov

    study = _study(root, spec)
    objective = spec["objective"]["metric"]
    maximize = spec["objective"]["type"] == "maximize"
    scored = len(_scored(table))
    completed = _finished(study) if study is not None else 0
    out: list[tuple[str, Any, str | None]] = []

    def add(title: str, build: Callable[[], Any], needs: int, have: int = scored,
            where: str = "") -> None:
        if have < needs:
            out.append((title, None, f"needs {needs} completed training jobs "
                                     f"({have} so far{where})"))
            return
        try:
            out.append((title, build(), None))
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            out.append((title, None, f"{type(exc).__name__}: {exc}"))

    if is_multi_objective(spec):
        add(PARETO_TITLE, lambda: pareto_figure(table, spec), 1, len(placed(table, spec)))
    add("Optimization history", lambda: history_figure(table, objective, maximize), 1)
    add("Learning curves", lambda: curves_figure(root, table, objective, maximize), 1)
    rule = rule_of(spec.get("strategy"), spec.get("early_stopping"))
    if rule is not None and rule.has_lineage:
        add(LINEAGE_TITLE, lambda: lineage_figure(root, objective), 1, len(exploits(root)))
    for title, _, build in _study_plots(ov, study, spec):
        add(title, build, 2, completed, "" if completed == scored else " in the Optuna study")
    add("Slices", lambda: slices_figure(table, spec), 1)
    for _, fig, _ in out:
        if fig is not None:  # the page's width, whatever a plot asked for (Optuna's ask more)
            fig.update_layout(width=None, autosize=True)
    return out


def curves_figure(root: Path, table: pd.DataFrame, objective: str, maximize: bool):
    import plotly.graph_objects as go

    curves = _top_curves(root, table, objective, maximize)
    fig = go.Figure()
    for name, points in curves.groupby(Column.TRAINING_JOB_NAME, sort=False):
        points = points.sort_values("step")
        fig.add_trace(go.Scatter(x=points[Point.STEP], y=points[Point.VALUE], mode="lines+markers",
                                 name=name))
    fig.update_layout(title=f"Learning curves of the top {TOP_CURVES} training jobs",
                      xaxis_title="step (objective report)", yaxis_title=objective)
    return fig


# -- matplotlib (PNG) -------------------------------------------------------------------------

def write_pngs(name_or_path: str | os.PathLike, out_dir: Path,
               experiments_dir: str | os.PathLike | None = None) -> list[Path]:
    """The main plots as PNG files in out_dir; returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import optuna.visualization.matplotlib as om

    root = resolve_experiment(name_or_path, experiments_dir)
    spec = json.loads((root / File.SPEC).read_text())
    objective = spec["objective"]["metric"]
    maximize = spec["objective"]["type"] == "maximize"
    study = _study(root, spec)
    table = load_experiment(root)
    scored = len(_scored(table))
    completed = _finished(study) if study is not None else 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, draw: Callable[[], Any], needs: int, have: int = scored) -> None:
        if have >= needs:
            written.extend(_save_png(out_dir / f"{name}.png", draw))

    if is_multi_objective(spec):
        save("pareto_front", lambda: pareto_axes(table, spec), 1, len(placed(table, spec)))
    save("optimization_history", lambda: _png_history(table, objective, maximize), 1)
    save("learning_curves", lambda: _png_curves(root, table, objective, maximize), 1)
    for _, name, build in _study_plots(om, study, spec):
        save(name, build, 2, completed)
    return written


def _save_png(path: Path, draw: Callable[[], Any]) -> list[Path]:
    """[path] once the plot `draw` makes is saved there; [] when it cannot be drawn."""
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        try:
            axes = draw()
        except (ValueError, RuntimeError, ZeroDivisionError):
            plt.close("all")
            return []
    figure = getattr(axes, "figure", None) or plt.gcf()
    figure.set_size_inches(9, 5.5)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close("all")
    return [path]


def _png_curves(root: Path, table: pd.DataFrame, objective: str, maximize: bool):
    import matplotlib.pyplot as plt

    data = _top_curves(root, table, objective, maximize)
    _, ax = plt.subplots()
    for job, points in data.groupby(Column.TRAINING_JOB_NAME, sort=False):
        points = points.sort_values("step")
        ax.plot(points[Point.STEP], points[Point.VALUE], marker="o", label=job)
    ax.set_xlabel("step (objective report)")
    ax.set_ylabel(objective)
    ax.set_title(f"Learning curves of the top {TOP_CURVES} training jobs")
    ax.legend(fontsize=8)
    return ax


def _png_history(table: pd.DataFrame, objective: str, maximize: bool):
    import matplotlib.pyplot as plt

    done = _scored(table)
    _, ax = plt.subplots()
    ax.scatter(done[Column.TRIAL_NUMBER], done[Column.FINAL_OBJECTIVE_VALUE], label=objective)
    ax.plot(done[Column.TRIAL_NUMBER], _best_so_far(done[Column.FINAL_OBJECTIVE_VALUE], maximize),
            color="C1", label="best so far")
    ax.set_xlabel("trial number (TrialNumber)")
    ax.set_ylabel(objective)
    ax.set_title("Optimization history")
    ax.legend(fontsize=8)
    return ax
