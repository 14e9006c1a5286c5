"""hpt report --format html / png: one self-contained page with every plot, on a job whose
training jobs Completed, Failed and were Stopped; rendered in headless Chromium when present."""

import re
import shutil
import subprocess
import sys

import pytest

import hpt
from hpt.launch import launch
from hpt.report_visual import render_html, write_pngs
from hpt.spec import load_spec
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
    from hpt.report_visual import plotly_figures

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
