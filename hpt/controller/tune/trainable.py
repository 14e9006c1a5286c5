"""The Ray Tune trainable: one Tune trial = one SageMaker-style training job.

A class trainable rather than a function: `step()` hands Tune each objective data point as it
streams, and `cleanup()` (early stop, actor teardown) always stops the job's process group.
The script's own failure is reported as a result with status Failed, not raised: a raised
exception is reserved for hpt's or the machine's failures, which Tune may retry.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import ray
from ray import tune

from hpt.core.schema import Key
from hpt.experiment.checkpoints import carry_checkpoints
from hpt.runtime.artifacts import attempt_folder
from hpt.runtime.job_protocol import JobContext, Slot, TrialAssignment
from hpt.runtime.distribution_plan import processes_on_host
from hpt.runtime.ray_hosts import RayHost
from hpt.runtime.runtimes import RUNTIMES
from hpt.spacefile import Spec
from hpt.core.trial import final_result, point_result


class HostLostError(RuntimeError):
    """A host of the training job was lost (its Ray actor or node died)."""


class TrainingJobTrainable(tune.Trainable):
    def setup(self, config, spec_dict=None, experiment_dir=None, settings=None):
        """`settings`: what the runtime's staging produced (runtime/job_protocol.py's Staged)."""
        self.spec = Spec.from_frozen_dict(spec_dict)
        self.runtime = RUNTIMES[self.spec.runtime]
        self.settings = dict(settings or {})
        self.experiment_dir = Path(experiment_dir)
        self.job = None
        trainer = self.spec.trainer
        self.port_count = processes_on_host(trainer.distribution, trainer.processes_per_host)
        # Hosts algo-2..N: one actor per bundle of this trial's placement group, kept for
        # every trial this (reused) trainable runs.
        hosts = trainer.instance_count if self.runtime.host_actors else 1
        self.other_hosts = tuple(
            RayHost(index, trainer.cpus_per_host, trainer.gpus_per_host, self.port_count,
                    self.settings.get("warm_socket"))
            for index in range(1, hosts))
        self.pending_config = config
        self.trial_dir: Path | None = None  # the running attempt's folder
        self.restored: Path | None = None  # a Tune checkpoint to start the next attempt from

    def __repr__(self):
        # Ray's dashboard and log prefixes show an actor's repr: name it after its job. Ray
        # records the repr once, when setup() returns, so a reused actor keeps the name of the
        # first training job it ran (hpt status / the table say which job runs where).
        job = getattr(self, "job", None)
        if job is not None:
            return f"{job.assignment.training_job_name}/algo-1"
        pending = getattr(self, "pending_config", None) or {}
        return f"{pending.get(Key.TRAINING_JOB_NAME, 'hpt-trainable')}/algo-1"

    def _start(self, config) -> None:
        assignment = TrialAssignment.of(config)
        trial_dir = attempt_folder(self.spec, self.experiment_dir,
                                   assignment.training_job_name, carry_from=self.restored)
        self._drop_restored()
        self.trial_dir = trial_dir
        slot = Slot(ip=ray.util.get_node_ip_address(),
                    num_cpus=max(1, math.ceil(self.spec.trainer.cpus_per_host)),
                    gpu_ids=tuple(str(g) for g in ray.get_gpu_ids()),
                    other_hosts=self.other_hosts)
        context = JobContext(self.spec, assignment, trial_dir, self.settings, slot)
        self.placement = self.runtime.placement(context)
        self.job = self.runtime.job(context)
        self.job.start()

    def step(self):
        # The job starts at the first step, not in setup()/reset_config(): Tune may set up an
        # actor for a trial and then run the trial on another (reused) one; only the actor
        # that steps a trial may run its training job.
        if self.pending_config is not None:
            config, self.pending_config = self.pending_config, None
            self._start(config)
        progress = self.job.advance()
        if progress.point is not None:
            return point_result(progress.point.value, progress.point.step, self.placement,
                                progress.objectives)
        record = progress.record
        if record.infrastructure_failure:
            # hpt's or the machine's failure, not the script's: raising lets Tune retry it.
            raise HostLostError(record.failure_reason)
        return final_result(record)

    def cleanup(self):
        self._stop_job()
        self._drop_restored()
        for host in self.other_hosts:
            host.close()

    def _stop_job(self):
        if self.job is not None:
            self.job.stop()

    def save_checkpoint(self, checkpoint_dir):
        """Tune pauses this trial, or PBT takes it as a donor: the running attempt's
        checkpoints/ (each host's) and data points as they are now. The script keeps
        writing its own; this is a copy (hpt/experiment/checkpoints.py)."""
        if self.trial_dir is not None:
            carry_checkpoints(self.trial_dir, Path(checkpoint_dir))
        return checkpoint_dir

    def load_checkpoint(self, checkpoint):
        """The next attempt starts from this snapshot: its own (a paused trial resumed) or a
        donor's (PBT's exploit: the steps, and the script's state, continue the donor's).
        Copied at once: Tune may hand a temporary folder that is gone by the first step."""
        self._drop_restored()
        self.restored = Path(tempfile.mkdtemp(prefix="hpt-restore-"))
        carry_checkpoints(Path(checkpoint), self.restored)

    def _drop_restored(self) -> None:
        if self.restored is not None:
            shutil.rmtree(self.restored, ignore_errors=True)
            self.restored = None

    def reset_config(self, new_config):
        # Actor reuse: the next training job starts in this warm actor (and its host actors).
        # Tune restores a checkpoint after a reset, never before: the snapshot is dropped.
        self._stop_job()
        self.job = None
        self._drop_restored()
        for host in self.other_hosts:
            host.refresh_ports(self.port_count)
        self.pending_config = new_config
        return True
