"""One trial, spawn -> its first output line (the script's first objective data point):
through hpt's training job vs a bare interpreter (launch), with torch imported warm or cold
(torch), and in a container (containers)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from benchlib.harness import emit, workdir, write_space


def seconds_to_first_line(job) -> float:
    """Starts a training job, waits for its first objective data point (the script's first
    line), stops it; the seconds from start to that point."""
    began = time.perf_counter()
    job.start()
    job.advance()
    took = time.perf_counter() - began
    job.stop()
    return took


def bench_launch(quick: bool) -> None:
    from hpt.runtime.job_protocol import TrialAssignment
    from hpt.runtime.local_job import LocalTrainingJob
    from hpt.spacefile import load_spec

    runs = 5 if quick else 20
    folder = workdir()
    (folder / "code").mkdir()
    (folder / "code" / "noop.py").write_text("print('val_acc=1', flush=True)\n")
    space = write_space(folder, "launch", 1, {"x": {"type": "continuous", "min": 0, "max": 1}},
                        entry="noop.py")
    spec = load_spec(space)
    bare, ours = [], []
    for i in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - began)
        ours.append(seconds_to_first_line(LocalTrainingJob(
            spec, TrialAssignment(i + 1, f"launch-{i:03d}", {"x": 0.5}),
            folder / "exp" / f"launch-{i:03d}")))
    b, o = statistics.median(bare), statistics.median(ours)
    emit(bench="launch", runs=runs, bare_python_seconds=round(b, 4),
         hpt_first_line_seconds=round(o, 4), ratio=round(o / b, 3), target_ratio=4.0,
         quick=quick)


def bench_containers(quick: bool) -> None:
    from hpt.runtime.job_protocol import JobContext, Slot, TrialAssignment
    from hpt.runtime.runtimes import RUNTIMES
    from hpt.spacefile import load_spec

    image, engine = "hpt-cnn:latest", os.environ.get("HPT_CONTAINER_ENGINE", "docker")
    if subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode:
        emit(bench="containers", skipped=f"{engine} has no {image} here: start an engine "
             "(scripts/container_engine.py) and build it (scripts/build_images.py)")
        return
    runs = 3 if quick else 10
    folder = workdir()
    (folder / "code").mkdir()
    (folder / "code" / "noop.py").write_text("print('val_acc=1', flush=True)\n")
    spec = load_spec(write_space(folder, "boxed", 1, {"x": {"type": "continuous", "min": 0,
                                                             "max": 1}}, entry="noop.py"))
    boxed = load_spec(write_space(folder, "boxed-docker", 1, {"x": {
        "type": "continuous", "min": 0, "max": 1}}, entry="noop.py"), {
        "runtime": "docker", "trainer.image": image})

    def first_line(runtime: str, the_spec, i: int) -> float:
        name = f"{runtime}-{i:03d}"
        return seconds_to_first_line(RUNTIMES[runtime].job(JobContext(
            the_spec, TrialAssignment(i + 1, name, {"x": 0.5}), folder / "exp" / name,
            {"container_engine": engine}, Slot(num_cpus=1))))

    bare, local, container = [], [], []
    for i in range(runs):
        began = time.perf_counter()
        subprocess.run([engine, "run", "--rm", image, "python", "-c", "print()"], check=True,
                       capture_output=True)
        bare.append(time.perf_counter() - began)
        local.append(first_line("local", spec, i))
        container.append(first_line("docker", boxed, i))
    b, lo, c = (statistics.median(x) for x in (bare, local, container))
    emit(bench="containers", runs=runs, local_first_line_seconds=round(lo, 4),
         container_first_line_seconds=round(c, 4), bare_docker_run_seconds=round(b, 4),
         ratio=round(c / lo, 3), ratio_vs_bare_docker_run=round(c / b, 3), quick=quick)


def bench_torch(quick: bool) -> None:
    from hpt.runtime.job_protocol import TrialAssignment
    from hpt.runtime.local_job import LocalTrainingJob
    from hpt.runtime.warm import WarmInterpreter, modules_to_preload
    from hpt.spacefile import load_spec

    runs = 3 if quick else 10
    folder = workdir()
    (folder / "code").mkdir()
    (folder / "code" / "torchy.py").write_text(
        "import torch\nprint('val_acc=1', flush=True)\n")
    spec = load_spec(write_space(folder, "torch", 1, {"x": {"type": "continuous", "min": 0,
                                                               "max": 1}}, entry="torchy.py"))
    began = time.perf_counter()
    warm = WarmInterpreter(modules_to_preload(folder / "code" / "torchy.py", folder / "code"),
                           folder / "warm.log")
    socket_path = warm.wait_ready()
    ready = time.perf_counter() - began

    def first_line(i: int, socket: str | None) -> float:
        name = f"torch-{'warm' if socket else 'cold'}-{i:03d}"
        return seconds_to_first_line(LocalTrainingJob(
            spec, TrialAssignment(i + 1, name, {"x": 0.5}), folder / "exp" / name,
            warm_socket=socket))

    cold_import, hot, cold = [], [], []
    try:
        for i in range(runs):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            cold_import.append(time.perf_counter() - began)
            hot.append(first_line(i, socket_path))
            cold.append(first_line(i, None))
    finally:
        warm.close()
    b, w, c = (statistics.median(x) for x in (cold_import, hot, cold))
    emit(bench="torch", runs=runs, cold_import_torch_seconds=round(b, 4),
         hpt_warm_first_line_seconds=round(w, 4), hpt_cold_first_line_seconds=round(c, 4),
         warm_interpreter_ready_seconds=round(ready, 3), ratio=round(w / b, 4),
         cold_ratio=round(c / b, 3), target_ratio=0.05, quick=quick)
