"""A toy runtime: what a new runtime is, in one file plus one registration.

Its job runs the entry point as a plain child process here (no contract's files, no tree:
SM_MODEL_DIR and SM_OUTPUT_DIR only, hyperparameters as --name value). Everything hpt
observes of it (metrics.jsonl, the objective's stream, max runtime, an objective never
printed, a stop, the record) is runtime/observed_job.py's; this file says only how the job
executes. Registering it is one line:

    RUNTIMES[TOY.name] = TOY        # hpt/runtime/runtimes: space.yaml's `runtime: toy`,
                                    # `hpt launch --runtime toy`
"""

import os
import queue
import subprocess
import sys
import threading
import time

from hpt.core.trial import FailureCategory, FailureReason, TrialStatus
from hpt.runtime.job_protocol import Runtime, Staged
from hpt.runtime.observed_job import Exit, ObservedJob
from hpt.runtime.host_process import LogLine, pack_model

_END = object()


class ToyTrainingJob(ObservedJob):
    def __init__(self, spec, assignment, trial_dir):
        super().__init__(spec, assignment, trial_dir)
        self.log_path = self.trial_dir / "algo-1.log"
        self.model_dir = self.trial_dir / "algo-1" / "model"
        self.lines: queue.Queue = queue.Queue()
        self.tail: list[str] = []
        self.proc = None

    def _execute(self):
        self.model_dir.mkdir(parents=True, exist_ok=True)
        trainer = self.spec.trainer
        args = [a for k, v in self.assignment.job_hyperparameters(
            self.spec.static_hyperparameters).items() for a in (f"--{k}", str(v))]
        self.start_time = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, str(trainer.source_dir / trainer.entry_point), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=trainer.source_dir, env={**os.environ, "SM_MODEL_DIR": str(self.model_dir),
                                                      "SM_OUTPUT_DIR": str(self.trial_dir / "output")})
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        with open(self.log_path, "a") as log:
            for text in self.proc.stdout:
                log.write(text)
                self.lines.put(LogLine("stdout", text.rstrip("\n"), time.time()))
        self.lines.put(_END)

    def _lines(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return []
        if line is _END:
            return None
        self.tail = (self.tail + [line.text])[-5:]
        return [line]

    def _exit(self, deadline):
        code = self.proc.wait()
        if code == 0:
            return Exit(TrialStatus.COMPLETED, exit_code=0)
        return Exit(TrialStatus.FAILED, FailureReason(FailureCategory.ALGORITHM_ERROR,
                                                      f"exit code {code}"), code)

    def _halt(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        return Exit(TrialStatus.STOPPED, exit_code=self.proc.wait() if self.proc else None)

    def _artifact(self):
        return str(pack_model(self.model_dir, self.trial_dir / "model.tar.gz"))

    def _output_tail(self):
        return self.tail


TOY = Runtime("toy", problems=lambda values: [], bundles=lambda trainer: [{"CPU": 1}],
              stage=lambda ctx: Staged(ctx.spec),
              job=lambda ctx: ToyTrainingJob(ctx.spec, ctx.assignment, ctx.trial_dir),
              placement=lambda ctx: "a child process here", host_actors=False,
              forks_trials=False)
