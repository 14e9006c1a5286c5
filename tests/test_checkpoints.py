"""Checkpoints carried across the attempts of a training job (hpt/experiment/checkpoints.py):
a retried job starts with the checkpoints/ its earlier attempt left, the reference CNN resumes
from them, and the objective's steps continue from where the checkpoint was taken."""

import re
from pathlib import Path

import pytest

import hpt
from hpt.experiment.checkpoints import carry_checkpoints, carried_steps
from hpt.experiment.store import attempt_dir
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec
from helpers import (cnn_space, counts, events, launch_killing_the_actor, live_processes_of,
                     wait_for)

EPOCHS = 20  # at batch size 16, ~0.3 s each: the kill lands mid-run


def _space(name, channels):
    space = cnn_space(name, channels, epochs=EPOCHS)
    space["static_hyperparameters"]["batch_size"] = 16
    return space


def _points(trial_dir: Path, metric="validation:accuracy") -> int:
    text = (trial_dir / "metrics.jsonl").read_text() if (trial_dir / "metrics.jsonl").exists() \
        else ""
    return text.count(f'"metric": "{metric}"')


def _logged_epochs(trial_dir: Path) -> int:
    log = trial_dir / "algo-1.log"  # written as it streams (metrics.jsonl is buffered)
    return len(re.findall(r"^epoch=", log.read_text(), re.M)) if log.exists() else 0


def _assert_resumed(exp: Path, name: str) -> None:
    (row,) = [r for _, r in hpt.load_experiment(name, exp).iterrows()]  # one row
    assert row["TrainingJobStatus"] == "Completed", row["FailureReason"]
    assert row["Retries"] == 1 and counts(events(exp, name), "trial_retried") == 1
    trial_dir = Path(row["LogPath"]).parent
    resumed = int(row["ResumedFromStep"])
    assert resumed > 0
    log = (trial_dir / "algo-1.log").read_text()
    # The script itself says where it resumed: the checkpoint of the step hpt counts from
    # (or, killed between its checkpoint and its report, the one after).
    epoch = int(re.search(r"resumed from checkpoint-(\d+)\.pt", log).group(1))
    assert epoch in (resumed, resumed + 1)
    first = int(re.search(r"^epoch=(\d+) ", log, re.M).group(1))
    assert first == epoch + 1
    # The steps continue: every epoch is counted once (a kill between checkpoint and report
    # loses that one report), and the curve holds the earlier attempt's points.
    assert row["ObjectiveSteps"] in (EPOCHS, EPOCHS - 1)
    assert _points(trial_dir) == row["ObjectiveSteps"]
    assert (trial_dir / "attempt-1" / "algo-1" / "checkpoints").is_dir()  # nothing lost


def test_a_host_killed_mid_run_is_retried_from_its_last_checkpoint(
        ray_session, write_space, digits_channels, tmp_path, monkeypatch):
    """kill -9 of the trial's host (its Ray actor) after a few epochs: Tune retries the
    training job, which resumes from the checkpoint the killed attempt wrote."""
    monkeypatch.setenv("HPT_CONTROLLER", "tune")
    spec = load_spec(write_space(_space("lost", digits_channels)))
    exp = tmp_path / "exp"

    def script_pid():
        wait_for(lambda: any(_logged_epochs(d) >= 3 for d in exp.glob("lost/lost-*")),
                 timeout=120, what="three epochs of the first attempt")
        (trial_dir,) = exp.glob("lost/lost-*")
        (pid,) = live_processes_of([trial_dir.name])  # the script, started by the actor
        return pid

    launch_killing_the_actor(spec, exp, script_pid)
    _assert_resumed(exp, "lost")


def test_a_local_job_lost_mid_run_is_retried_from_its_last_checkpoint(
        ray_session, write_space, digits_channels, tmp_path, monkeypatch):
    """The local controller's lost job (hpt's own code driving it fails after three epochs):
    the retry resumes from the checkpoint, as on Tune."""
    from hpt.runtime.local_job import LocalTrainingJob

    monkeypatch.setenv("HPT_CONTROLLER", "local")
    spec = load_spec(write_space(_space("lostlocal", digits_channels)))
    advance = LocalTrainingJob.advance

    def failing_once(self, *args, **kwargs):
        if not (self.trial_dir / "attempt-1").exists() and \
                len(self.parser.series["validation:accuracy"].points) >= 3:
            raise OSError(24, "Too many open files")
        return advance(self, *args, **kwargs)

    monkeypatch.setattr(LocalTrainingJob, "advance", failing_once)
    launch(spec, tmp_path / "exp", dashboard=False)
    _assert_resumed(tmp_path / "exp", "lostlocal")


def test_only_an_attempt_that_wrote_a_checkpoint_is_carried_and_the_newest_wins(tmp_path):
    job = tmp_path / "job-001-abc"

    def attempt(points: int, checkpoint: bool) -> None:
        trial_dir = attempt_dir(tmp_path, job.name)
        (trial_dir / "algo-1" / "checkpoints").mkdir(parents=True, exist_ok=True)
        if checkpoint:
            (trial_dir / "algo-1" / "checkpoints" / f"c{points}").write_text("x")
        with open(trial_dir / "metrics.jsonl", "a") as f:
            for step in range(carried_steps(trial_dir) + 1, points + 1):
                f.write(f'{{"metric": "acc", "step": {step}, "value": 0.5}}\n')
            f.write('{"metric": "acc", "st')  # torn by the kill

    attempt(3, checkpoint=True)
    attempt(5, checkpoint=False)  # a checkpoint carried in counts: it is this attempt's too
    third = attempt_dir(tmp_path, job.name)
    assert sorted(p.name for p in (third / "algo-1" / "checkpoints").iterdir()) == ["c3"]
    assert carried_steps(third) == 5
    assert (third / "attempt-1" / "algo-1" / "checkpoints" / "c3").is_file()  # copied


def test_nothing_is_carried_without_a_checkpoint(tmp_path):
    earlier, new = tmp_path / "earlier", tmp_path / "new"
    (earlier / "algo-1" / "checkpoints").mkdir(parents=True)
    (earlier / "metrics.jsonl").write_text('{"metric": "acc", "step": 1, "value": 0.5}\n')
    new.mkdir()
    assert carry_checkpoints(earlier, new) == 0
    assert not (new / "metrics.jsonl").exists()


@pytest.mark.parametrize("torn", [False, True])
def test_carried_points_are_rewritten_whole(tmp_path, torn):
    earlier, new = tmp_path / "earlier", tmp_path / "new"
    (earlier / "algo-1" / "checkpoints").mkdir(parents=True)
    (earlier / "algo-1" / "checkpoints" / "c").write_text("x")
    lines = '{"metric": "acc", "step": 1, "value": 0.5}\n' + ('{"met' if torn else "")
    (earlier / "metrics.jsonl").write_text(lines)
    new.mkdir()
    assert carry_checkpoints(earlier, new) == 1
    assert (new / "metrics.jsonl").read_text().endswith("}\n")
