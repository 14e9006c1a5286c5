"""The run stage of `hpt launch`: the warm interpreter, Ray, the study, and the controller that
runs the trials (hpt/controller/__init__.py says which).

On the local controller nothing waits for Ray: it starts (for the dashboard and its metrics)
while the first trials already run, and the job waits for it only at its end, so that what
Ray started is handed to the reaper before the launcher exits.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path
from typing import Any

from hpt.controller import LOCAL, choose_controller
from hpt.errors import UserError
from hpt.runtime.api import Runtime
from hpt.runtime.warm import WarmInterpreter, modules_to_preload
from hpt.schedule.control import StopOnSignals
from hpt.schedule.promotion import is_paused
from hpt.search.searcher import OptunaSearcher, fail_orphans, open_study, seed_from_parents
from hpt.words import plural


def run_trials(job, runtime: Runtime, staged, store, control, recorder, view,
               ray_options: dict[str, Any]) -> str:
    """Runs the job's trials on its controller; returns the controller's name."""
    spec, root = job.spec, store.root
    ray_options = dict(ray_options)
    controller = choose_controller(spec, runtime, ray_options["address"],
                                   ray_options.pop("controller", None))
    connect = _connect_once(store, view, recorder, ray_options, _metadata(job, root))
    # Ray serves the local controller's dashboard (and this process may be connected already).
    ray_wanted = controller != LOCAL or ray_options["dashboard"] or \
        bool(ray_options["address"]) or _connected_to_ray()
    # The warm interpreter imports the script's modules while Ray starts.
    with warm_interpreter(spec, root, runtime) as warm:
        if controller != LOCAL:
            connect()
        searcher = _searcher(job, store, view)
        settings = dict(staged.settings)
        if warm is not None:
            settings["warm_socket"] = warm.wait_ready()
            view.print(f"Warm interpreter: {', '.join(warm.info.get('imported', [])) or 'no'} "
                       f"modules preloaded; trials fork from it" if settings["warm_socket"]
                       else f"Warm interpreter not used ({warm.reason}); trials start cold")
        if controller == LOCAL:
            runner = _local_controller(job, runtime, staged, settings, store, searcher, control,
                                   recorder)
        else:
            runner = _tuner(job, runtime, staged, settings, root, searcher, control, recorder)
        view.print(f"Tuning job {spec.name}: up to "
                   f"{plural(job.resume.done + job.to_run, 'training job')}, "
                   f"{spec.limits.max_parallel} at a time, strategy {spec.strategy}, "
                   f"on the {controller} controller; experiment folder {root}")
        with view, StopOnSignals(control):
            # A resumed job with nothing new to run may still promote its paused trials.
            work = job.to_run or any(is_paused(row) for row in job.resume.kept)
            if controller == LOCAL and ray_wanted and work:
                _beside_ray(runner, connect)
            elif work:
                runner()
    return controller


def _beside_ray(runner, connect) -> None:
    """The local controller runs in a thread while this (main) thread starts Ray: Ray's driver
    must be connected from the main thread (connected from another, its shutdown hangs for
    15 s). Ray is only the dashboard's here: if it cannot start, the job goes on without."""
    failed: list[BaseException] = []

    def run():
        try:
            runner()
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="hpt local controller", daemon=True)
    thread.start()
    try:
        connect()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the dashboard is a view, never the job's end
        connect.view.print(f"Ray did not start ({type(exc).__name__}: {exc}); the tuning job "
                           f"runs on without the Ray dashboard")
    while thread.is_alive():
        thread.join(timeout=0.2)  # a short wait: signals reach this thread's handlers
    if failed:
        raise failed[0]


def _connect_once(store, view, recorder, ray_options, metadata):
    """Connects to Ray (start_or_join) once; the journal and the console say where it is,
    and the Ray metrics start."""
    def connect():
        if recorder.ray_session is not None:
            return
        from hpt.ray_session import start_or_join, token_source

        session = start_or_join(metadata=metadata, **ray_options)
        recorder.ray_session = session
        store.append("ray_connected", address=ray_options["address"],
                     session_dir=session.session_dir, started_here=session.started_here,
                     dashboard_url=session.dashboard_url)
        recorder.metrics.connect()
        if session.dashboard_url:
            view.print(f"Ray dashboard: {session.dashboard_url} (token auth: the token is in "
                       f"{token_source()})")

    connect.view = view
    return connect


def _connected_to_ray() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _metadata(job, root: Path) -> dict[str, str]:
    spec = job.spec
    return {"hpt_tuning_job": spec.name, "hpt_experiment_dir": str(root),
            "hpt_strategy": spec.strategy, "hpt_max_trials": str(job.resume.done + job.to_run),
            "hpt_objective": f"{spec.objective.type} {spec.objective.metric}"}


def _searcher(job, store, view) -> OptunaSearcher:
    spec, plan = job.spec, job.resume
    study = open_study(spec, store.study_path)
    fail_orphans(study)
    if not job.resumed and spec.warm_start:
        seeded = seed_from_parents(study, spec, job.parents)
        view.print(f"Warm start: {seeded} completed training jobs of "
                   f"{', '.join(spec.warm_start.parents)} seed the search")
    return OptunaSearcher(spec, study, job.max_trials, done=plan.done, replay=plan.replay,
                          next_number=plan.next_number, seen=plan.seen)


def _local_controller(job, runtime, staged, settings, store, searcher, control, recorder):
    from hpt.controller.local import LocalController
    from hpt.controller.slots import machine_pool
    from hpt.schedule.scheduler import make_scheduler, stops_jobs

    spec = job.spec
    pool = machine_pool()
    (need,) = runtime.bundles(spec.trainer)
    if not pool.fits_at_all(need.get("CPU", 0), spec.trainer.gpus_per_host):
        machine = pool.machine
        raise UserError(f"{spec.source_path}: trainer: one host needs "
                        f"{need.get('CPU', 0):g} CPUs and {spec.trainer.gpus_per_host:g} GPUs; "
                        f"this machine has {machine.cpus:g} CPUs and "
                        f"{len(machine.gpu_ids)} GPUs: lower trainer.cpus_per_host / "
                        f"gpus_per_host, or run on a Ray cluster (--address)")
    controller = LocalController(spec, staged.trial_spec, runtime, settings, store.root, searcher,
                         make_scheduler(spec) if stops_jobs(spec) else None, control,
                         recorder, job.to_run, pool)
    controller.seed_paused(list(job.resume.kept))  # promotion mode: a resumed job's rungs
    return controller.run


def _tuner(job, runtime, staged, settings, root, searcher, control, recorder):
    from hpt.raytune.callbacks import JournalCallback
    from hpt.raytune.tuner import build_tuner

    tuner = build_tuner(job.spec, staged.trial_spec, runtime, settings, root, searcher,
                        control, JournalCallback(recorder, control), job.to_run)
    return tuner.fit


@contextlib.contextmanager
def warm_interpreter(spec, root: Path, runtime: Runtime):
    """The job's warm interpreter (runtime/warm/) when trainer.warm_start asks for one and
    the runtime's trials are local processes."""
    trainer = spec.trainer
    if not (trainer.warm_start and runtime.forks_trials):
        yield None
        return
    modules = modules_to_preload(trainer.source_dir / trainer.entry_point, trainer.source_dir)
    warm = WarmInterpreter(modules, root / "warm.log")
    try:
        yield warm
    finally:
        warm.close()
