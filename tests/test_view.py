"""The live view: a progress bar, counts, best so far and the running jobs' placement on a
terminal; plain lines only elsewhere."""

import io

from rich.console import Console

from hpt.experiment.best import BestSoFar
from hpt.live.view import LaunchView


def record(name, status, objective, elapsed, reason=None):
    """A training job's record as the recorder hands it to the view."""
    return {"training_job_name": name, "trial_number": int(name.split("-")[-2]),
            "status": status, "objective_value": objective, "start_time": 100.0,
            "end_time": 100.0 + elapsed, "failure_reason": reason}


def test_terminal_view_shows_progress_and_running_jobs_with_placement():
    view = LaunchView("job", 4, BestSoFar(True), stream=io.StringIO())
    view.trial_started("job-001-aaaaaaaa")
    view.trial_started("job-002-bbbbbbbb")
    view.trial_progress("job-001-aaaaaaaa", 0.75, 3, "10.0.0.5 GPU 2,3")
    view.trial_ended(record("job-002-bbbbbbbb", "Completed", 0.5, 1.0, None))
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, width=140, color_system=None).print(view._status())
    text = screen.getvalue()
    assert "job: 1/4 done" in text and "best 0.5 (job-002-bbbbbbbb)" in text
    assert "job-001-aaaaaaaa" in text and "10.0.0.5 GPU 2,3" in text and "0.75" in text
    assert "job-002-bbbbbbbb" not in text.split("running training job")[1]  # ended: not listed
    assert "━" in text  # the progress bar


def test_without_a_terminal_only_plain_lines_are_printed():
    out = io.StringIO()
    with LaunchView("job", 2, BestSoFar(False), stream=out) as view:
        view.trial_started("job-001-aaaaaaaa")
        view.trial_progress("job-001-aaaaaaaa", 0.3, 1, "127.0.0.1")
        view.trial_ended(record("job-001-aaaaaaaa", "Failed", None, 2.0,
                                "AlgorithmError: exit code 1"))
    lines = out.getvalue().splitlines()
    assert lines == ["job-001-aaaaaaaa  Failed     objective=-  2.0s  AlgorithmError: exit code 1"]


def render(view, width):
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, width=width, color_system=None).print(
        view._status())
    return screen.getvalue()


def test_a_resumed_job_counts_what_it_already_has():
    kept = tuple({"training_job_name": f"job-{i:03d}-aaaaaaaa", "trial_number": i,
                  "status": status, "objective_value": value}
                 for i, (status, value) in enumerate(
                     [("Completed", 0.9)] * 18 + [("Failed", None), ("Stopped", 0.4)], 1))
    view = LaunchView("job", 30, BestSoFar(True), stream=io.StringIO(), kept=kept)
    text = render(view, 120)
    assert "job: 20/30 done" in text and "completed 18" in text and "failed 1" in text
    assert "best 0.9 (job-001-aaaaaaaa)" in text
    assert view.eta_seconds() is None  # no pace yet: nothing ended in this run
    view.trial_started("job-021-bbbbbbbb")
    view.trial_ended(record("job-021-bbbbbbbb", "Completed", 0.95, 1.0, None))
    assert "job: 21/30 done" in render(view, 120) and "best 0.95" in render(view, 120)


def test_the_panel_keeps_the_bar_apart_from_its_text_and_fits_the_terminal():
    view = LaunchView("a-rather-long-tuning-job-name", 1, BestSoFar(True), stream=io.StringIO())
    view.trial_ended(record("a-rather-long-tuning-job-name-001-aaaaaaaa", "Completed", 0.5,
                            1.0))
    for width in (80, 160):
        lines = render(view, width).splitlines()
        assert all(len(line) <= width for line in lines), (width, lines)
        bar_line = next(line for line in lines if "━" in line)  # a full bar: 1/1 done
        # The bar, then space, then its text: never the text glued to the bar's last cell.
        assert "━━  a-rather-long-tuning-job-name: 1/1 done" in bar_line, bar_line
        words = " ".join("\n".join(lines).split())  # wrapped where narrow, never cut
        assert "best 0.5 (a-rather-long-tuning-job-name-001-aaaaaaaa)" in words
        assert "eta" in words


def test_a_multi_line_reason_keeps_its_last_lines_on_the_console():
    out = io.StringIO()
    reason = ("ObjectiveMetricNeverMatched: the objective metric 'acc' never matched its regex "
              "'acc=([0-9.]+)' in the job's output; last log lines:\nepoch 1 loss 0.5\n"
              "epoch 2 loss 0.4\n" + "x" * 500 + "\nepoch 3 accuracy 0.9")
    with LaunchView("job", 1, BestSoFar(True), stream=out) as view:
        view.trial_ended(record("job-001-aaaaaaaa", "Failed", None, 2.0, reason))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("last log lines:")
    assert [line.strip()[:20] for line in lines[1:]] == ["epoch 2 loss 0.4", "x" * 20,
                                                          "epoch 3 accuracy 0.9"]
    assert all(len(line) <= 170 for line in lines[1:])  # shortened


def test_the_progress_line_stays_one_line_on_an_80_column_terminal():
    """`eta` and its value landed on a second line of the panel at 80 columns."""
    view = LaunchView("digits-cnn", 20, BestSoFar(True), stream=io.StringIO())
    assert view.console.width == 80  # what a plain terminal (and a StringIO) has
    for i in range(1, 4):
        view.trial_started(f"digits-cnn-{i:03d}-aaaaaaaa")
        view.trial_ended(record(f"digits-cnn-{i:03d}-aaaaaaaa", "Completed", 0.9, 1.0, None))
    lines = render(view, 80).splitlines()
    (progress,) = [line for line in lines if "done" in line]
    assert "━" in progress and "eta " in progress and progress.rstrip().endswith("s"), lines
    assert all(len(line) <= 80 for line in lines)
