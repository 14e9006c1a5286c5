"""hpt report --format html / png: one self-contained page with every plot, on a job whose
training jobs Completed, Failed and were Stopped; rendered in headless Chromium when present."""

import re
import shutil
import subprocess
import sys

import pytest

import hpt
from hpt.launcher.launch import launch
from hpt.report.page import render_html
from hpt.report.plots import write_pngs
from hpt.spacefile import load_spec
from helpers import faulty_space


@pytest.fixture(scope="module")
def mixed_job(ray_session, tmp_path_factory):
    """4 grid jobs, 2 at a time: ok and fail end on their own; hang is still running when the
    tuning job's 8 s budget runs out (Stopped); the last one may never start."""
    import yaml

    folder = tmp_path_factory.mktemp("report")
    space = faulty_space(name="mixed", limits={"max_parallel": 2, "max_runtime_seconds": 8},
                         hyperparameters={"mode": {"type": "categorical",
                                                   "values": ["ok", "fail", "hang", "ok2"]}})
    space["trainer"]["max_runtime_seconds"] = 60
    space["static_hyperparameters"]["epochs"] = 4
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    launch(load_spec(folder / "space.yaml"), folder / "experiments", dashboard=False)
    return folder / "experiments" / "mixed"


def test_the_table_and_summary_show_completed_failed_and_stopped(mixed_job):
    df = hpt.load_experiment(mixed_job)
    statuses = set(df["TrainingJobStatus"])
    assert {"Completed", "Failed", "Stopped"} <= statuses, df[["mode", "TrainingJobStatus"]]
    page = render_html(mixed_job)
    for state in ("Completed", "Failed", "Stopped"):
        assert f'class="status-{state}">{state}</td>' in page
    assert "MaxRuntimeExceeded" in page  # why the tuning job ended
    best = hpt.best_trial(mixed_job)
    assert best["TrainingJobName"] in page
    assert "hpt overhead" in page and "ms per training job" in page


def test_the_page_is_self_contained_and_has_every_plot(mixed_job, tmp_path):
    page = render_html(mixed_job)
    assert not re.search(r'<script[^>]+src="http', page)  # plotly.js inlined, no CDN
    assert page.count("Plotly.newPlot") >= 3
    for title in ("Optimization history", "Learning curves", "Slices"):
        assert f"<h2>{title}</h2>" in page
    # One completed job with a value: importance and parallel coordinates say why not.
    assert page.count('class="missing"') <= 2

    pngs = write_pngs(mixed_job, tmp_path / "png")
    assert {p.name for p in pngs} >= {"optimization_history.png", "learning_curves.png"}
    assert all(p.stat().st_size > 5000 for p in pngs)


def test_the_cli_writes_the_report_beside_the_experiment(mixed_job):
    out = subprocess.run([sys.executable, "-m", "hpt", "report", str(mixed_job), "--format",
                          "html"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (mixed_job / "report.html").is_file()
    assert f"wrote {mixed_job / 'report.html'}" in out.stdout


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                    "(apt-get install chromium); the screenshot check needs it")
def test_headless_chromium_draws_non_empty_plots(mixed_job, tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(render_html(mixed_job))
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--virtual-time-budget=10000",
                    "--window-size=1280,4200", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import numpy as np

    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Plotly's first trace colour (#636efa) marks drawn data, not just axes or text.
    plotted = int(((abs(r - 99) < 20) & (abs(g - 110) < 20) & (b > 220)).sum())
    assert plotted > 2000, f"only {plotted} data-coloured pixels in {shot}"


@pytest.fixture(scope="module")
def wide_job(ray_session, tmp_path_factory):
    """Six tuned hyperparameters: Optuna's slice plot asks for 300 px per parameter."""
    import yaml

    folder = tmp_path_factory.mktemp("wide")
    space = faulty_space(name="wide", strategy="random", limits={"max_trials": 4,
                                                                 "max_parallel": 2},
                         hyperparameters={f"h{i}": {"type": "continuous", "min": 0.001,
                                                    "max": 1.0} for i in range(6)})
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    launch(load_spec(folder / "space.yaml"), folder / "experiments", dashboard=False)
    return folder / "experiments" / "wide"


def test_every_plot_takes_the_pages_width_and_the_jobs_own_trial_numbers(wide_job):
    from hpt.report.plots import plotly_figures

    import json

    spec = json.loads((wide_job / "spec.json").read_text())
    table = hpt.load_experiment(wide_job)
    figures = {title: fig for title, fig, _ in plotly_figures(wide_job, spec, table)}
    assert all(fig.layout.width is None for fig in figures.values() if fig is not None)
    numbers = sorted(table["TrialNumber"])
    assert numbers[0] == 1
    history = figures["Optimization history"]
    assert sorted(history.data[0].x) == numbers  # 1..4, as TrialNumber and the names say
    slices = figures["Slices"]
    assert len(slices.data) == 6
    assert sorted(slices.data[0].marker.color) == numbers


def test_every_plot_and_the_table_speak_the_spaces_terms(ray_session, tmp_path):
    """Parallel coordinates said `1-momentum` (how a reverse_log range is searched) where the
    slices said `momentum`; the table's times had nanoseconds and an offset."""
    import json

    import yaml
    from hpt.report.plots import plotly_figures

    space = faulty_space(name="terms", strategy="random", limits={"max_trials": 3,
                                                                  "max_parallel": 2},
                         hyperparameters={"momentum": {"type": "continuous", "min": 0.5,
                                                       "max": 0.99, "scaling": "reverse_log"},
                                          "lr": {"type": "continuous", "min": 0.1, "max": 0.9}})
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    launch(load_spec(tmp_path / "space.yaml"), tmp_path / "experiments", dashboard=False)
    root = tmp_path / "experiments" / "terms"
    spec = json.loads((root / "spec.json").read_text())
    table = hpt.load_experiment(root)
    figures = {title: fig for title, fig, _ in plotly_figures(root, spec, table)}
    labels = figures["Parallel coordinates"].layout.xaxis.ticktext  # Optuna 5: an axis each
    assert "momentum" in labels and "1-momentum" not in labels, labels
    page = render_html(root)
    assert "1-momentum" not in page
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", page)
    assert not re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+", page)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                    "(apt-get install chromium); the layout check needs it")
def test_the_page_never_scrolls_sideways_in_a_browser(wide_job, tmp_path):
    page = tmp_path / "report.html"
    # After the plots are drawn, the page writes its own width into its title.
    measure = ("<script>window.addEventListener('load', () => setTimeout(() => {"
               "document.title = 'scrollWidth=' + document.documentElement.scrollWidth"
               " + ' innerWidth=' + window.innerWidth; }, 1500));</script></body>")
    page.write_text(render_html(wide_job).replace("</body>", measure))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--no-first-run",
                           "--virtual-time-budget=10000", "--window-size=1024,2000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True,
                          timeout=120, check=True)
    found = re.search(r"scrollWidth=(\d+) innerWidth=(\d+)", done.stdout)
    assert found, done.stdout[-500:]
    scroll, inner = map(int, found.groups())
    assert scroll <= inner, f"the page is {scroll} px wide in a {inner} px window"


# -- multi-objective reports, from experiment folders written directly (no Ray) ---------------

ACC = {"metric": "validation:accuracy", "type": "maximize"}
SIZE = {"metric": "model:size_mb", "type": "minimize"}
LATENCY = {"metric": "latency:p99_ms", "type": "minimize"}
CONSTRAINTS = [{"metric": "validation:accuracy", "min": 0.9},
               {"metric": "latency:p99_ms", "max": 20}]
# (lr, units, accuracy, size, latency). Jobs 1-3 are the front; 4 is dominated by 1; 5 would
# dominate every job but is too slow and 6 too inaccurate (infeasible, so off the front).
JOBS = [(0.01, 8, 0.95, 1.0, 5), (0.02, 32, 0.97, 2.0, 6), (0.005, 4, 0.93, 0.5, 4),
        (0.03, 12, 0.94, 1.5, 5), (0.04, 2, 0.99, 0.2, 50), (0.001, 1, 0.85, 0.1, 3),
        (0.06, 16, 0.92, 1.8, 7), (0.002, 24, 0.91, 1.9, 8)]


def synthetic_job(folder, name, objectives, constraints=(), jobs=JOBS, failed=1):
    """An experiment folder as a finished launcher leaves it, written directly: spec.json,
    the journal's trial events, each job's metrics.jsonl and the Optuna study (multi-objective
    when several objectives), in milliseconds. The last `failed` jobs are extra Failed ones."""
    import json

    import optuna
    import yaml
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from hpt.experiment.store import ExperimentStore

    space = faulty_space(name=name, strategy="bayesian", limits={"max_trials": len(jobs) + failed,
                                                                "max_parallel": 2},
                         hyperparameters={"lr": {"type": "continuous", "min": 0.001, "max": 0.1,
                                                 "scaling": "log"},
                                          "units": {"type": "integer", "min": 1, "max": 64}},
                         metric_definitions=[{"name": m, "regex": m + "=([0-9.]+)"} for m in
                                             ("validation:accuracy", "model:size_mb",
                                              "latency:p99_ms")])
    space.pop("objective")
    space.update({"objectives": list(objectives)} if len(objectives) > 1
                 else {"objective": objectives[0]})
    if constraints:
        space["constraints"] = list(constraints)
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    root = folder / "experiments" / name
    store = ExperimentStore(root)
    store.create(load_spec(folder / "space.yaml").to_frozen_dict())
    storage = JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    study = optuna.create_study(study_name=name, storage=storage,
                                directions=[o["type"] for o in objectives])
    distributions = {"lr": FloatDistribution(0.001, 0.1, log=True),
                     "units": IntDistribution(1, 64)}
    store.append("job_started", name=name, max_trials=len(jobs) + failed, seed=0)
    rows = [(lr, units, {"validation:accuracy": acc, "model:size_mb": size,
                         "latency:p99_ms": latency}) for lr, units, acc, size, latency in jobs]
    rows += [(0.05, 3, None)] * failed
    for number, (lr, units, metrics) in enumerate(rows, start=1):
        job = f"{name}-{number:03d}-{number:08x}"
        params = {"lr": lr, "units": units}
        store.append("trial_started", trial_number=number, training_job_name=job,
                     hyperparameters=params)
        (root / job).mkdir()
        (root / job / "metrics.jsonl").write_text("".join(json.dumps(
            {"metric": objectives[0]["metric"], "step": step, "timestamp": 1.0e9 + step,
             "value": metrics[objectives[0]["metric"]] * step / 3}) + "\n"
            for step in (1, 2, 3)) if metrics else "")
        store.append("trial_ended", training_job_name=job, record={
            "trial_number": number, "training_job_name": job, "hyperparameters": params,
            "status": "Completed" if metrics else "Failed",
            "failure_reason": None if metrics else "AlgorithmError: exit code 1",
            "objective_value": metrics[objectives[0]["metric"]] if metrics else None,
            "final_metrics": metrics or {}, "objective_steps": 3 if metrics else 0,
            "start_time": 1.0e9, "end_time": 1.0e9 + 5, "exit_code": 0 if metrics else 1,
            "log_path": str(root / job / "algo-1.log"), "model_artifact": None,
            "hosts": ["algo-1"], "gpu_ids": []})
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions,
            values=[metrics[o["metric"]] for o in objectives] if metrics else None,
            state=optuna.trial.TrialState.COMPLETE if metrics else
            optuna.trial.TrialState.FAIL))
    store.append("job_ended", reason="MaxNumberOfTrainingJobsReached",
                 counts={"Completed": len(jobs), "Failed": failed})
    store.close()
    return root


def _job(root, number):
    return f"{root.name}-{number:03d}-{number:08x}"


def _sections(page):
    return re.findall(r"<h2>([^<]*)</h2>", page)


@pytest.fixture(scope="module")
def pareto_job(tmp_path_factory):
    return synthetic_job(tmp_path_factory.mktemp("pareto"), "pareto", [ACC, SIZE], CONSTRAINTS)


def test_a_two_objective_report_shows_the_front_and_greys_infeasible_jobs(pareto_job):
    import json

    from hpt.report.pareto import INFEASIBLE_COLOUR
    from hpt.report.plots import plotly_figures

    spec = json.loads((pareto_job / "spec.json").read_text())
    table = hpt.load_experiment(pareto_job)
    figures = {title: (fig, missing) for title, fig, missing in
               plotly_figures(pareto_job, spec, table)}
    pareto, _ = figures["Pareto front"]
    traces = {trace.name: trace for trace in pareto.data}
    front = traces["Pareto front"]
    # The front, joined by its staircase in objective 1's order, names its jobs on hover.
    assert list(front.text) == [_job(pareto_job, n) for n in (3, 1, 2)]
    assert front.mode == "lines+markers" and front.line.shape == "vh"
    assert list(front.x) == [0.93, 0.95, 0.97] and list(front.y) == [0.5, 1.0, 2.0]
    infeasible = traces["infeasible"]
    assert set(infeasible.text) == {_job(pareto_job, 5), _job(pareto_job, 6)}
    assert infeasible.marker.color == INFEASIBLE_COLOUR
    assert set(traces["feasible"].text) == {_job(pareto_job, n) for n in (4, 7, 8)}
    assert _job(pareto_job, 9) not in {name for t in pareto.data for name in t.text}  # Failed
    assert pareto.layout.xaxis.title.text == "validation:accuracy (maximize)"
    # Optuna's plots of a multi-objective study: one importance per objective, none raising.
    for title in ("Parallel coordinates", "Hyperparameter importance for validation:accuracy",
                  "Hyperparameter importance for model:size_mb", "Optimization history",
                  "Slices", "Learning curves"):
        fig, missing = figures[title]
        assert fig is not None, (title, missing)
    importance, _ = figures["Hyperparameter importance for model:size_mb"]
    assert {bar.orientation for bar in importance.data} == {"h"}


def test_the_multi_objective_page_names_objectives_constraints_and_the_front(pareto_job):
    page = render_html(pareto_job)
    assert _sections(page) == [
        "Training jobs", "Pareto front", "Optimization history", "Learning curves",
        "Parallel coordinates", "Hyperparameter importance for validation:accuracy",
        "Hyperparameter importance for model:size_mb", "Slices"]
    assert 'class="missing"' not in page
    assert "<th>Objectives</th><td>maximize validation:accuracy, minimize model:size_mb</td>" \
        in page
    assert "<th>Constraints</th><td>validation:accuracy &gt;= 0.9; latency:p99_ms &lt;= 20</td>" \
        in page
    front = ", ".join(_job(pareto_job, n) for n in (2, 1, 3))  # best first on accuracy
    assert f"<th>Pareto front</th><td>3 training jobs: {front}</td>" in page


def test_the_multi_objective_pngs_have_the_front_and_an_importance_per_objective(pareto_job,
                                                                                 tmp_path):
    pngs = {p.name for p in write_pngs(pareto_job, tmp_path)}
    assert pngs == {"pareto_front.png", "optimization_history.png", "learning_curves.png",
                    "parallel_coordinates.png", "param_importances_validation_accuracy.png",
                    "param_importances_model_size_mb.png"}
    assert (tmp_path / "pareto_front.png").stat().st_size > 5000


def test_three_objectives_give_parallel_coordinates_coloured_by_the_front(tmp_path):
    import json

    import plotly.graph_objects as go

    from hpt.report.pareto import pareto_axes, pareto_figure

    root = synthetic_job(tmp_path, "three", [ACC, SIZE, LATENCY], CONSTRAINTS[:1])
    spec = json.loads((root / "spec.json").read_text())
    table = hpt.load_experiment(root)
    fig = pareto_figure(table, spec)
    (parcoords,) = fig.data
    assert isinstance(parcoords, go.Parcoords)
    assert [d.label for d in parcoords.dimensions] == [
        "TrialNumber", "validation:accuracy (maximize)", "model:size_mb (minimize)",
        "latency:p99_ms (minimize)"]
    # 0 infeasible (grey), 1 feasible, 2 Pareto-optimal, per Completed job in TrialNumber order.
    assert list(parcoords.dimensions[0].values) == [1, 2, 3, 4, 5, 6, 7, 8]
    colours = dict(zip(parcoords.dimensions[0].values, parcoords.line.color))
    assert colours[6] == 0  # accuracy 0.85 < 0.9
    assert colours[5] == 2 and colours[1] == 2 and colours[4] == 1
    assert list(table["ParetoOptimal"])[:8] == [c == 2 for c in colours.values()]
    assert len(pareto_axes(table, spec).lines) >= 8  # the PNG: one line per job (+ axes)
    assert "Pareto front" in _sections(render_html(root))


def test_a_single_objective_report_keeps_its_sections_and_has_no_front(tmp_path):
    root = synthetic_job(tmp_path, "single", [ACC])
    page = render_html(root)
    assert _sections(page) == ["Training jobs", "Optimization history", "Learning curves",
                               "Parallel coordinates", "Hyperparameter importance", "Slices"]
    assert 'class="missing"' not in page
    assert "<th>Objective</th><td>maximize validation:accuracy</td>" in page
    assert "<th>Best training job</th>" in page
    for new in ("Objectives", "Constraints", "Pareto front"):
        assert f"<th>{new}</th>" not in page
    pngs = {p.name for p in write_pngs(root, tmp_path / "png")}
    assert pngs == {"optimization_history.png", "learning_curves.png",
                    "parallel_coordinates.png", "param_importances.png"}
