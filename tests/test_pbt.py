"""Population-based training (`strategy: pbt`): Ray Tune's PBT scheduler decides, an exploiting
trial restarts from the donor's checkpoint with perturbed hyperparameters, and the lineage is
journaled and in the table. Real: the reference CNN, Ray Tune, checkpoints on disk."""

import re
from pathlib import Path

import pytest

import hpt
from hpt.spacefile import SpecError, load_spec
from helpers import cnn_space, events

EPOCHS = 6


def pbt_space(name, channels, **config):
    space = cnn_space(name, channels, epochs=EPOCHS, max_trials=8)
    space["strategy"] = "pbt"
    space["trainer"]["cpus_per_host"] = 0.5  # a population of 4 on this machine's 2 CPUs
    space["limits"]["max_parallel"] = 4
    space["static_hyperparameters"]["batch_size"] = 32
    space["hyperparameters"]["lr"] = {"type": "continuous", "min": 0.0005, "max": 0.3,
                                      "scaling": "log"}
    space["strategy_config"] = {"perturbation_interval": 2, "quantile_fraction": 0.25,
                                "hyperparam_mutations": {"lr": True}, **config}
    return space


def _points(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    from hpt.experiment.data_points import read_points  # a line being written is left out

    return [p for p in read_points(path) if p["metric"] == "validation:accuracy"]


def _losses(log: str) -> dict[int, float]:
    return {int(e): float(loss) for e, loss in
            re.findall(r"^epoch=(\d+) loss=([0-9.eE+-]+) ", log, re.M)}


def _attempts(trial_dir: Path) -> list[Path]:
    return [trial_dir, *trial_dir.glob("attempt-*")]


def _log(attempt: Path) -> str:
    path = attempt / "algo-1.log"
    return path.read_text() if path.exists() else ""


def _resumed_from_donor(recipient: Path, donor: Path) -> Path | None:
    """The recipient's attempt that started from the donor's checkpoint: its data points begin
    with those of one of the donor's attempts, its script resumed from that checkpoint, and its
    first epoch continues the donor's count and loss."""
    donor_runs = [({p["step"]: p["value"] for p in _points(a / "metrics.jsonl")}, _losses(_log(a)))
                  for a in _attempts(donor)]
    scratch = _losses(_log(recipient / "attempt-1" if (recipient / "attempt-1").exists()
                           else recipient)).get(1)  # its own first epoch, from scratch
    for attempt in _attempts(recipient):
        log = _log(attempt)
        resumed = re.search(r"resumed from checkpoint-(\d+)\.pt", log)
        if not resumed:
            continue
        epoch = int(resumed.group(1))
        carried = _points(attempt / "metrics.jsonl")[:epoch]
        runs = [losses for values, losses in donor_runs if len(carried) == epoch and
                all(values.get(p["step"]) == p["value"] for p in carried)]
        if not runs:
            continue  # resumed from its own checkpoint (Tune's time-sharing pause)
        losses = _losses(log)
        if not losses:
            continue  # stopped (a pause, the launcher's kill) before its first epoch ended
        first = min(losses)
        assert first == epoch + 1  # the donor's step count continues
        donor_loss = next((r[epoch] for r in runs if epoch in r), None)
        if donor_loss is not None:  # ...and its loss, near the donor's at that epoch
            assert abs(losses[first] - donor_loss) < 0.5 * donor_loss
        if scratch is not None:  # far below a first epoch's from scratch
            assert losses[first] < 0.8 * scratch
        return attempt
    return None


def _proven(exp: Path) -> list[dict]:
    """The exploits whose recipient resumed from its donor's checkpoint (so far)."""
    return [e for e in events(exp, "pbt") if e["event"] == "trial_exploited" and
            _resumed_from_donor(exp / "pbt" / e["training_job_name"], exp / "pbt" / e["parent"])]


@pytest.mark.parametrize("config, field, says", [
    ({"hyperparam_mutations": {"momentum": True}}, "hyperparam_mutations.momentum",
     "not a tuned hyperparameter"),
    ({"hyperparam_mutations": None}, "hyperparam_mutations", "required for strategy: pbt"),
    ({"quantile_fraction": 0.7}, "quantile_fraction", "must be <= 0.5"),
    ({"hyperparam_mutations": {"lr": "yes"}}, "hyperparam_mutations", "must be true"),
])
def test_bad_pbt_settings_name_the_field_and_the_fix(write_space, digits_channels, config,
                                                     field, says):
    space = pbt_space("badpbt", digits_channels, **config)
    if config.get("hyperparam_mutations", 0) is None:
        space["strategy_config"].pop("hyperparam_mutations")
    with pytest.raises(SpecError) as caught:
        load_spec(write_space(space))
    assert field in str(caught.value) and says in str(caught.value)


def test_pbt_is_refused_by_export_and_by_the_local_controller(write_space, digits_channels):
    import subprocess
    import sys

    from hpt.controller import choose_controller
    from hpt.core.errors import UserError
    from hpt.runtime.runtimes import RUNTIMES

    path = write_space(pbt_space("refused", digits_channels))
    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "export-sagemaker", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "strategy: pbt" in done.stderr
    spec = load_spec(path)
    assert choose_controller(spec, RUNTIMES[spec.runtime], None) == "tune"
    with pytest.raises(UserError, match="drop --controller local"):
        choose_controller(spec, RUNTIMES[spec.runtime], None, "local")


@pytest.mark.smoke
def test_pbt_exploits_from_the_donors_checkpoint_and_survives_a_kill_9_of_the_launcher(
        write_space, digits_channels, tmp_path):
    """A PBT job of the CNN (8 trials, a population of 4): the launcher is killed after the
    first exploit and the job resumed. In the end every job completed once, the lineage is
    journaled and in the table, and a recipient provably resumed from its donor's checkpoint
    (its first epoch continues the donor's step count and loss)."""
    import os
    import signal
    import subprocess
    import sys

    from helpers import wait_for

    path = write_space(pbt_space("pbt", digits_channels))
    exp = tmp_path / "exp"
    command = [sys.executable, "-m", "hpt.cli.main", "launch", str(path), "--experiments-dir",
               str(exp), "--no-dashboard"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        # Killed once a recipient has provably continued from its donor's checkpoint: an
        # exploit decided just before the kill may never have restarted its recipient (its
        # resumed run then starts from the recipient's own checkpoint), so proving it on
        # what the kill leaves would depend on timing.
        wait_for(lambda: _proven(exp) or first.poll() is not None, timeout=300,
                 what="a recipient that resumed from its donor's checkpoint")
        assert first.poll() is None, "the job ended before a proven exploit"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = {e["training_job_name"] for e in events(exp, "pbt")
              if e["event"] == "trial_exploited"}
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    df = hpt.load_experiment("pbt", exp).set_index("TrainingJobName")
    assert len(df) == 8 and df.index.is_unique  # nothing lost, nothing twice
    assert (df["TrainingJobStatus"] == "Completed").all(), df["FailureReason"].tolist()
    exploits = [e for e in events(exp, "pbt") if e["event"] == "trial_exploited"]
    assert all(e["training_job_name"] != e["parent"] for e in exploits)
    assert df["ExploitCount"].sum() == len(exploits)
    for name in before:  # the lineage of before the kill is kept
        assert df.loc[name, "ExploitCount"] >= 1
    for name, parent in {e["training_job_name"]: e["parent"] for e in exploits}.items():
        assert df.loc[name, "ParentTrainingJob"] == parent
    from hpt.report.page import render_html

    page = render_html(exp / "pbt")  # the HTML report draws the lineage
    assert "Lineage (population-based training)" in page and "exploits: dashed" in page
    assert _proven(exp), "no recipient resumed from its donor's checkpoint"
    # The steps continue: every job's data points are numbered 1.. without a gap or repeat.
    for _, row in df.iterrows():
        steps = [p["step"] for p in _points(Path(row["LogPath"]).parent / "metrics.jsonl")]
        assert steps == list(range(1, len(steps) + 1)) and steps[-1] >= EPOCHS - 1


def test_an_exploit_of_a_donor_that_wrote_no_checkpoint_is_said_and_journaled(
        write_space, digits_channels, tmp_path):
    import io

    from hpt.controller.recorder import TrialRecorder
    from hpt.experiment.store import ExperimentStore
    from hpt.experiment.best import BestSoFar
    from hpt.live.view import LaunchView

    spec = load_spec(write_space(pbt_space("nockpt", digits_channels)))
    store = ExperimentStore(tmp_path / "nockpt")
    store.create(spec.to_frozen_dict())
    out = io.StringIO()
    recorder = TrialRecorder(store, spec, LaunchView("nockpt", 8, BestSoFar(True), stream=out))
    (tmp_path / "nockpt" / "donor" / "algo-1" / "checkpoints").mkdir(parents=True)  # empty
    recorder.trial_exploited({"training_job_name": "recipient", "hyperparameters": {"lr": 0.02}},
                             {"training_job_name": "donor", "hyperparameters": {"lr": 0.01}}, 4)
    kinds = [e["event"] for e in events(tmp_path, "nockpt")]
    assert kinds[-2:] == ["trial_exploited", "trial_exploit_without_checkpoint"]
    said = out.getvalue()
    assert "recipient: exploits donor at step 4" in said and "lr=0.02" in said
    assert "wrote no checkpoint" in said and "starts from scratch" in said


def test_a_perturbed_value_stays_inside_its_range_and_the_recipient_keeps_its_name(
        write_space, digits_channels):
    """Tune's ×1.2 perturbation of momentum 0.95 would give 1.14 (training diverges): hpt
    clips it to the hyperparameter's range, and the recipient keeps its own job name."""
    from types import SimpleNamespace

    from hpt.schedule.scheduler import make_scheduler

    space = pbt_space("clip", digits_channels, resample_probability=0.0,
                      hyperparam_mutations={"lr": True, "momentum": True})
    space["hyperparameters"]["momentum"] = {"type": "continuous", "min": 0.5, "max": 0.99}
    pbt = make_scheduler(load_spec(write_space(space)))
    pbt._perturbation_factors = (1.2,)
    donor = SimpleNamespace(config={"trial_number": 1, "training_job_name": "clip-001",
                                    "hyperparameters": {"lr": 0.29, "momentum": 0.95}})
    recipient = SimpleNamespace(config={"trial_number": 2, "training_job_name": "clip-002",
                                        "hyperparameters": {"lr": 0.01, "momentum": 0.6}})
    config, _ = pbt._get_new_config(recipient, donor)
    assert config["training_job_name"] == "clip-002" and config["trial_number"] == 2
    assert config["hyperparameters"] == {"lr": 0.3, "momentum": 0.99}
