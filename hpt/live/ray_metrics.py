"""A tuning job's progress as Ray custom metrics (the Ray dashboard's Metrics view, Prometheus).

`hpt_training_jobs{tuning_job, status}` counts training jobs by status (InProgress included)
and `hpt_best_objective{tuning_job}` is the best final objective so far, by the tuning job's
one rule (hpt.experiment.best: constraints and tie-breaks included). A resumed job's gauges
start from the rows it kept, as the live view does.
"""

from __future__ import annotations

import logging

from typing import Any

from hpt.experiment.best import BestSoFar
from hpt.core.trial import TrialStatus
from hpt.core.schema import Key

logger = logging.getLogger(__name__)


class TuningJobMetrics:
    def __init__(self, tuning_job: str, best: BestSoFar, kept: tuple[dict[str, Any], ...] = ()):
        """`best`: the tuning job's rule (`BestSoFar.of(frozen spec)`); `kept`: the finished
        rows a resumed job already has (journal rows)."""
        self.tuning_job = tuning_job
        self.counts = {status: 0 for status in TrialStatus}
        for row in kept:
            self.counts[TrialStatus(row[Key.STATUS])] += 1
        self.best = best.seeded(kept)
        self._jobs = self._best = None

    def connect(self) -> None:
        """Publishes from now on (Ray is up; the local engine starts it in the background)."""
        try:
            from ray.util.metrics import Gauge

            self._jobs = Gauge("hpt_training_jobs", "training jobs of a tuning job, by status",
                               tag_keys=("tuning_job", "status"))
            self._best = Gauge("hpt_best_objective", "best final objective of a tuning job",
                               tag_keys=("tuning_job",))
        except Exception as exc:  # metrics are a view: never a reason for a job to fail
            logger.debug("Ray metrics unavailable: %s", exc)
            self._jobs = self._best = None
        self._publish()

    def disconnect(self) -> None:
        """Publishes no more (the Ray is gone)."""
        self._jobs = self._best = None

    def started(self) -> None:
        self.counts[TrialStatus.IN_PROGRESS] += 1
        self._publish()

    def ended(self, record: dict[str, Any]) -> None:
        """A training job ended (`record`: its record dict)."""
        self.counts[TrialStatus.IN_PROGRESS] = max(0, self.counts[TrialStatus.IN_PROGRESS] - 1)
        self.counts[TrialStatus(record[Key.STATUS])] += 1
        self.best.offer(record)
        self._publish()

    def _publish(self) -> None:
        if self._jobs is None:
            return
        for status, count in self.counts.items():
            self._jobs.set(count, tags={"tuning_job": self.tuning_job, "status": str(status)})
        if self.best.value is not None:
            self._best.set(self.best.value, tags={"tuning_job": self.tuning_job})
