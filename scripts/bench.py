"""hpt's benchmarks, each a ratio measured side by side in one run; JSON lines on stdout.

    python scripts/bench.py all            # every benchmark (several minutes)
    python scripts/bench.py overhead       # one benchmark (names below)
    python scripts/bench.py --quick all    # small sizes, a smoke check (about a minute)

overhead     80 trials of a script that sleeps 1 s at max_parallel 2: wall / ideal (40 s) for
             a whole `hpt launch` (cold, and with trainer.warm_start), bare Ray Tune (a
             function trainable that sleeps) and a bare Optuna loop running the same
             subprocess (n_jobs=2).
launch       spawn -> first output line of a no-op script through hpt's training job
             (contract, tree, process group) vs a bare `python -c pass`.
torch        a trial whose script imports torch, spawn -> its first line (training starts),
             with trainer.warm_start (forked from the warm interpreter) and cold, vs a cold
             `python -c "import torch"`.
search       R suggest+tell rounds of hpt's searcher with its durable journal storage vs
             bare in-memory Optuna TPE.
metrics      a script printing 2000 metric lines/s through hpt's log pump and parser vs the
             same script writing to /dev/null; lines lost must be 0.
utilisation  trials of mixed lengths (0.2-5 s) at max_parallel 2: busy / available slot-seconds.
cnn          the default job (search_spaces/digits-cnn.yaml): wall time and best accuracy.
containers   spawn -> first output line of a no-op script as a container trial (runtime:
             docker, the toolkit's `train` in hpt-cnn:latest) vs a local trial, and vs a bare
             `docker run --rm IMAGE python -c print()`; needs a running engine and the image.
startup      whole `hpt launch` of 2 no-op trials (cold: hpt starts its own Ray, and without
             the dashboard; joining a Ray already running, `--address`, on Ray Tune and on
             the local controller) vs a bare `ray.init(); ray.shutdown()` and a bare Optuna
             loop running the same 2 trials, each a whole command, interleaved.
sweep        1000 no-op trials (TPE, 2 parameters) at max_parallel 2, whole commands: hpt
             (cold, without the dashboard, and with trainer.warm_start) vs a bare Optuna loop
             with a subprocess per trial (n_jobs=2) and vs bare Ray Tune running the same
             subprocess (a tenth of the trials: its wall is also given scaled to all).
scale        10 000 no-op trials (strategy random, warm_start) at max_parallel 2: throughput
             of the last tenth vs the first, the launcher's peak RSS, and how long `hpt
             status` and `hpt report` take on the finished job.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import harness  # noqa: E402
from benchlib.commands import bench_scale, bench_startup, bench_sweep  # noqa: E402
from benchlib.first_line import bench_containers, bench_launch, bench_torch  # noqa: E402
from benchlib.in_process import bench_metrics, bench_search  # noqa: E402
from benchlib.jobs import bench_cnn, bench_overhead, bench_utilisation  # noqa: E402

BENCHES = {"overhead": bench_overhead, "launch": bench_launch, "torch": bench_torch,
           "search": bench_search,
           "metrics": bench_metrics, "utilisation": bench_utilisation, "cnn": bench_cnn,
           "containers": bench_containers, "startup": bench_startup, "sweep": bench_sweep,
           "scale": bench_scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke check)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpt-bench-") as root:
        harness.ROOT = Path(root)
        for name in (BENCHES if opts.bench == "all" else [opts.bench]):
            BENCHES[name](opts.quick)


if __name__ == "__main__":
    main()
