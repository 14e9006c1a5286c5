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
from typing import Any, Callable

from hpt.controller import LOCAL
from hpt.core.errors import UserError
from hpt.core.schema import Event
from hpt.runtime.job_protocol import Runtime
from hpt.runtime.warm import WarmInterpreter, modules_to_preload
from hpt.schedule.control import StopOnSignals
from hpt.schedule.promotion import is_paused
from hpt.search.searcher import OptunaSearcher, fail_orphans, open_study, seed_from_parents
from hpt.core.words import plural


def run_trials(job, runtime: Runtime, staged, store, control, recorder, view,
               ray_options: dict[str, Any], controller: str,
               cannot_go_on: Callable[[str], None]) -> None:
    """Runs the job's trials on `controller` (controller/__init__.py: choose_controller).
    `cannot_go_on(why)` ends the launcher, the job left resumable, when the Ray that Ray
    Tune's controller runs the trials on is lost; the local controller goes on without it.
    Raises RunEndedEarly when the controller returned short of the job's end."""
    spec, root = job.spec, store.root
    ray_options = {k: v for k, v in ray_options.items() if k != "controller"}
    on_ray_lost = _without_ray(store, view, recorder) if controller == LOCAL else cannot_go_on
    connect = _connect_once(store, view, recorder, ray_options, _metadata(job, root),
                            on_ray_lost)
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
            try:
                if controller == LOCAL and ray_wanted and work:
                    _beside_ray(runner, connect)
                elif work:
                    runner()
            finally:
                connect.close()
    _check_ended(job, store, control, searcher, controller)


class RunEndedEarly(Exception):
    """The controller returned before the tuning job's end: fewer training jobs ended than it
    allows, and nothing (a stop, a completion criterion, the deadline, an exhausted grid)
    ended it. Not an ending: the job is left resumable."""

    expected = True  # a state hpt recognises, said in one line (no traceback)


def _check_ended(job, store, control, searcher, controller: str) -> None:
    """Only a real decision ends a tuning job: its limit reached, a criterion, a stop."""
    if control.end_reason is not None or searcher.exhausted:
        return
    from hpt.experiment.resume import plan_resume
    from hpt.experiment.store import read_journal
    from hpt.experiment.table import trial_rows

    plan = plan_resume(trial_rows(list(read_journal(store.journal_path))))
    if plan.done < job.max_trials:
        raise RunEndedEarly(f"the {controller} controller returned with {plan.done} of "
                            f"{job.max_trials} training jobs ended and nothing that ends the "
                            f"job")


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
    except Exception as exc:  # noqa: BLE001 - the dashboard is a view, never the job's end
        # (A Ray to join was checked before the job's start was written.)
        connect.view.print(f"Ray did not start ({type(exc).__name__}: {exc}); the tuning job "
                           f"runs on without the Ray dashboard")
    while thread.is_alive():
        thread.join(timeout=0.2)  # a short wait: signals reach this thread's handlers
    if failed:
        raise failed[0]


def _connect_once(store, view, recorder, ray_options, metadata, on_lost):
    """Connects to Ray (start_or_join) once; the journal and the console say where it is,
    the Ray metrics start, and a watch calls `on_lost(why)` if Ray goes away
    (hpt/cluster/watch.py)."""
    def connect():
        if recorder.ray_session is not None:
            return
        from hpt.cluster.session import start_or_join, token_source
        from hpt.cluster.watch import RayWatch

        session = start_or_join(metadata=metadata, **ray_options)
        recorder.ray_session = session
        store.append(Event.RAY_CONNECTED, address=ray_options["address"],
                     session_dir=session.session_dir, started_here=session.started_here,
                     dashboard_url=session.dashboard_url, gcs_address=session.gcs_address)
        if session.gcs_address:  # a Ray this launch started or joined (not one it was given)
            watches.append(RayWatch(session.gcs_address, on_lost).start())
        recorder.metrics.connect()
        if session.dashboard_url:
            view.print(f"Ray dashboard: {session.dashboard_url} (token auth: the token is in "
                       f"{token_source()})")

    watches: list = []
    connect.view = view
    connect.close = lambda: [watch.close() for watch in watches]  # the run is over
    return connect


def _without_ray(store, view, recorder) -> Callable[[str], None]:
    """What the local controller does when its Ray is lost: Ray only served the dashboard and
    its metrics, so the trials go on; this process leaves Ray (else Ray's driver would end
    it a minute later)."""
    def on_lost(why: str) -> None:
        store.append(Event.RAY_LOST, why=why, effect="the job goes on without the Ray dashboard")
        view.print(f"Ray lost ({why}); the tuning job goes on without the Ray dashboard")
        recorder.metrics.disconnect()
        import ray

        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - a Ray that is gone may fail to say goodbye
            pass
    return on_lost


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


def check_placement(spec, runtime: Runtime, controller: str) -> None:
    """The local controller's trials must fit this machine (checked before the job starts)."""
    if controller != LOCAL:
        return
    from hpt.controller.slots import machine_pool

    pool = machine_pool()
    (need,) = runtime.bundles(spec.trainer)
    if not pool.fits_at_all(need.get("CPU", 0), spec.trainer.gpus_per_host):
        machine = pool.machine
        raise UserError(f"{spec.source_path}: trainer: one host needs "
                        f"{need.get('CPU', 0):g} CPUs and {spec.trainer.gpus_per_host:g} GPUs; "
                        f"this machine has {machine.cpus:g} CPUs and "
                        f"{len(machine.gpu_ids)} GPUs: lower trainer.cpus_per_host / "
                        f"gpus_per_host, or run on a Ray cluster (--address)")


def _local_controller(job, runtime, staged, settings, store, searcher, control, recorder):
    from hpt.controller.local_controller import LocalController
    from hpt.controller.slots import machine_pool
    from hpt.schedule.scheduler import local_scheduler, stops_jobs

    spec = job.spec
    pool = machine_pool()
    controller = LocalController(spec, staged.trial_spec, runtime, settings, store.root, searcher,
                         local_scheduler(spec) if stops_jobs(spec) else None, control,
                         recorder, job.to_run, pool)
    controller.seed_paused(list(job.resume.kept))  # promotion mode: a resumed job's rungs
    return controller.run


def _tuner(job, runtime, staged, settings, root, searcher, control, recorder):
    from hpt.controller.tune.callbacks import JournalCallback
    from hpt.controller.tune.tuner import build_tuner

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
