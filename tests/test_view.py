"""The live view: a progress bar, counts, best so far and the running jobs' placement on a
terminal; plain lines only elsewhere."""

import io

from rich.console import Console

from hpt.view import LaunchView


def test_terminal_view_shows_progress_and_running_jobs_with_placement():
    view = LaunchView("job", 4, maximize=True, stream=io.StringIO())
    view.trial_started("job-001-aaaaaaaa")
    view.trial_started("job-002-bbbbbbbb")
    view.trial_progress("job-001-aaaaaaaa", 0.75, 3, "10.0.0.5 GPU 2,3")
    view.trial_ended("job-002-bbbbbbbb", "Completed", 0.5, 1.0, None)
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, width=140, color_system=None).print(view._status())
    text = screen.getvalue()
    assert "job: 1/4 done" in text and "best 0.5 (job-002-bbbbbbbb)" in text
    assert "job-001-aaaaaaaa" in text and "10.0.0.5 GPU 2,3" in text and "0.75" in text
    assert "job-002-bbbbbbbb" not in text.split("running training job")[1]  # ended: not listed
    assert "━" in text  # the progress bar


def test_without_a_terminal_only_plain_lines_are_printed():
    out = io.StringIO()
    with LaunchView("job", 2, maximize=False, stream=out) as view:
        view.trial_started("job-001-aaaaaaaa")
        view.trial_progress("job-001-aaaaaaaa", 0.3, 1, "127.0.0.1")
        view.trial_ended("job-001-aaaaaaaa", "Failed", None, 2.0, "AlgorithmError: exit code 1")
    lines = out.getvalue().splitlines()
    assert lines == ["job-001-aaaaaaaa  Failed     objective=-  2.0s  AlgorithmError: exit code 1"]
