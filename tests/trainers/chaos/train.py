"""A SageMaker-style trainer that misbehaves on request: the `fault` hyperparameter names how.

Every fault is real (a real segfault, a real SIGKILL, a real orphaned grandchild); the chaos
run (scripts/chaos.py) checks that each one ends with the status and reason hpt promises.
Processes it leaves behind carry HPT_CHAOS_MARK in their argv so the run can look for them.
"""
import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--fault", default="none")
parser.add_argument("--x", type=float, default=0.5)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--mark", default="hpt-chaos")
parser.add_argument("--state_dir", default="")
args, _ = parser.parse_known_args()
fault = args.fault


def epochs():
    for epoch in range(1, args.epochs + 1):
        print(f"epoch={epoch} loss={1.0 / epoch:.4f} val_acc={args.x * epoch / args.epochs:.4f}",
              flush=True)


def save_model():
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
        f.write(f"x={args.x}\n")


def linger(seconds=3600):
    """A process that would outlive the trial: marked in argv, so a leftover is found."""
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})",
                             args.mark], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


if fault == "failure_file":
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
        f.write("ValueError: chaos failure_file")
    sys.exit(2)
elif fault == "exit_code":
    print("chaos: exiting with code 3 and no failure file", file=sys.stderr, flush=True)
    sys.exit(3)
elif fault == "segfault":
    print("epoch=1 loss=1.0 val_acc=0.1", flush=True)
    ctypes.string_at(0)  # a real SIGSEGV: reads address 0
elif fault == "oom_kill":
    print("epoch=1 loss=1.0 val_acc=0.1", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does, from the outside
elif fault == "hang":
    print("chaos: hanging without output", flush=True)
    time.sleep(3600)
elif fault == "ignore_sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    linger()  # also a grandchild: both must go with the group's SIGKILL
    print("chaos: ignoring SIGTERM", flush=True)
    time.sleep(3600)
elif fault == "grandchild":
    linger()  # outlives the script: the trial's end must reap it through the process group
    epochs()
    save_model()
elif fault == "grandchild_holding_stdout":
    # Inherits the script's stdout: the log pipe never reaches EOF while it lives.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", args.mark])
    epochs()
    save_model()
elif fault == "silent":
    print("chaos: training, never printing the objective", flush=True)
elif fault == "long_line":
    chunk = "x" * (1 << 20)
    for _ in range(50):  # 50 MB without a newline
        sys.stdout.write(chunk)
    sys.stdout.write("\n")
    sys.stdout.flush()
    epochs()
    save_model()
elif fault == "flood":
    for i in range(200_000):  # 200k lines as fast as the pipe takes them
        print(f"chaos flood line {i}")
    epochs()
    save_model()
elif fault in ("killed_from_outside", "worker_killed"):
    # Waits to be killed from outside (scripts/chaos.py kills, then leaves a flag); a retry
    # of the same training job finds the flag and trains normally.
    job = os.environ["TRAINING_JOB_NAME"]
    flag = os.path.join(args.state_dir, job + ".killed")
    if not os.path.exists(flag):
        # Found through this file: a process forked from the warm interpreter shows the
        # interpreter's command line and environment in /proc, not the trial's.
        with open(os.path.join(args.state_dir, job + ".pid.tmp"), "w") as f:
            f.write(f"{os.getpid()} {fault}")
        os.replace(os.path.join(args.state_dir, job + ".pid.tmp"),
                   os.path.join(args.state_dir, job + ".pid"))
        print(f"chaos: waiting to be killed pid={os.getpid()}", flush=True)
        while not os.path.exists(flag):
            time.sleep(0.1)
    epochs()
    save_model()
elif fault == "slow":
    for epoch in range(1, args.epochs + 1):
        time.sleep(0.5)
        print(f"epoch={epoch} loss={1.0 / epoch:.4f} val_acc={args.x * epoch / args.epochs:.4f}",
              flush=True)
    save_model()
else:
    epochs()
    save_model()
