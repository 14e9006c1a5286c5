"""The HTML report of a tuning job (`hpt report NAME --format html`): one self-contained page,
its summary (status, objectives, the best job, hpt's overhead), the table of its training
jobs, then the plots of hpt/report/plots.py (plotly.js inlined once: no network needed)."""

from __future__ import annotations

import html
import json
import os
from typing import Any

import pandas as pd

from hpt.core.schema import Column, File
from hpt.experiment.table import resolve_experiment
from hpt.report.front import front_of, objectives_of
from hpt.report.summary import job_status, load_experiment
from hpt.report.pareto import is_multi_objective
from hpt.report.plots import plotly_figures
from hpt.core.trial import TrialStatus


def _summary_html(status: dict[str, Any], spec: dict[str, Any], table: pd.DataFrame) -> str:
    best = status.get("Best")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status["Counts"].items())) or "none yet"
    rows = [("Tuning job", status["TuningJobName"]),
            ("Status", status["Status"] + (f" ({status['EndReason']})"
                                           if status.get("EndReason") else "")),
            *_objective_rows(spec, table),
            ("Strategy", spec.get("strategy", "")),
            ("Training jobs", f"{counts} (max {status['MaxTrials']})")]
    if best:
        best_of = (f"Best on {spec['objective']['metric']}" if is_multi_objective(spec)
                   else "Best training job")
        rows += [(best_of,
                  f"{best[Column.TRAINING_JOB_NAME]}: {best[Column.FINAL_OBJECTIVE_VALUE]:.6g}"),
                 ("Best hyperparameters", json.dumps(best["HyperParameters"]))]
    overhead = status.get("Overhead") or {}
    if overhead:
        waited = overhead["TotalResourceWaitSeconds"]
        rows.append(("hpt overhead", f"{overhead['MedianPerTrialSeconds'] * 1000:.0f} ms per "
                     f"training job (median; mean {overhead['MeanPerTrialSeconds'] * 1000:.0f} "
                     f"ms); in all: queue wait {overhead['TotalQueueWaitSeconds'] - waited:.2f} s,"
                     f" launch {overhead['TotalLaunchSeconds']:.2f} s, teardown "
                     f"{overhead['TotalTeardownSeconds']:.2f} s"))
        if waited:
            rows.append(("Waiting for resources", f"{waited:.1f} "
                         f"s in all (not hpt's overhead: training jobs waiting for others to "
                         f"free the CPUs or GPUs they need)"))
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    return f'<table class="summary">{cells}</table>'


FRONT_NAMES_SHOWN = 10


def _objective_rows(spec: dict[str, Any], table: pd.DataFrame) -> list[tuple[str, str]]:
    """What the job optimizes: its objective (or every objective), its constraints, and the
    size of its Pareto front (its jobs, best first on the first objective, when few)."""
    objectives = objectives_of(spec)
    rows = [("Objectives" if len(objectives) > 1 else "Objective",
             ", ".join(f"{o['type']} {o['metric']}" for o in objectives))]
    if spec.get("constraints"):
        rows.append(("Constraints", "; ".join(_constraint_text(c)
                                              for c in spec["constraints"])))
    if is_multi_objective(spec):
        names = list(front_of(table, spec)[Column.TRAINING_JOB_NAME])
        rows.append(("Pareto front", f"{len(names)} training jobs" + (
            f": {', '.join(names)}" if 0 < len(names) <= FRONT_NAMES_SHOWN else "")))
    return rows


def _constraint_text(constraint: dict[str, Any]) -> str:
    low, high, metric = constraint.get("min"), constraint.get("max"), constraint["metric"]
    if low is not None and high is not None:
        return f"{low:g} <= {metric} <= {high:g}"
    return f"{metric} >= {low:g}" if low is not None else f"{metric} <= {high:g}"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
table.summary th { background: #f4f4f4; }
.status-Completed { color: #1a7f37; } .status-Failed { color: #cf222e; }
.status-Stopped { color: #9a6700; } .status-InProgress { color: #0969da; }
.missing { color: #777; font-style: italic; }
.table-wrap { overflow-x: auto; max-height: 40em; }
.plotly-graph-div { max-width: 100%; }
"""


def render_html(name_or_path: str | os.PathLike,
                experiments_dir: str | os.PathLike | None = None) -> str:
    """The whole report as one HTML page (plotly.js inlined once: no network needed)."""
    import plotly.io as pio

    root = resolve_experiment(name_or_path, experiments_dir)
    spec = json.loads((root / File.SPEC).read_text())
    status = job_status(root)
    table = load_experiment(root)  # read once for the table, the curves and the plots
    shown = table.drop(columns=[Column.LOG_PATH], errors="ignore")
    for column in shown.select_dtypes(include=["datetimetz", "datetime"]).columns:
        # To the second, in UTC (pandas would print nanoseconds and an offset).
        shown[column] = shown[column].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    table_html = shown.to_html(index=False, na_rep="", escape=True, border=0)
    for state in TrialStatus:
        table_html = table_html.replace(f"<td>{state}</td>",
                                        f'<td class="status-{state}">{state}</td>')
    parts = [f"<h1>{html.escape(spec['name'])}</h1>", _summary_html(status, spec, table),
             "<h2>Training jobs</h2>", f'<div class="table-wrap">{table_html}</div>']
    first = True
    for title, fig, missing in plotly_figures(root, spec, table):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if fig is None:
            parts.append(f'<p class="missing">Not drawn: {html.escape(missing or "")}</p>')
            continue
        parts.append(pio.to_html(fig, include_plotlyjs=first, full_html=False,
                                 default_width="100%", config={"responsive": True},
                                 default_height=fig.layout.height or 480))
        first = False
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(spec['name'])} - hpt report</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
