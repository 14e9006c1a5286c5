"""A SageMaker-style test trainer whose behaviour is a hyperparameter: ok | fail | hang | silent."""
import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--mode", default="ok")
parser.add_argument("-x", "--x", type=float, default=0.5)
parser.add_argument("--epochs", type=int, default=3)
args, _ = parser.parse_known_args()

if args.mode == "fail":
    os.makedirs(os.environ["SM_OUTPUT_DIR"], exist_ok=True)
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
        f.write("ValueError: deliberate failure for mode=fail")
    print("about to fail", file=sys.stderr)
    sys.exit(1)
if args.mode == "hang":
    print("hanging", flush=True)
    time.sleep(3600)
if args.mode == "silent":
    print("training without ever printing the objective", flush=True)
    sys.exit(0)

for epoch in range(1, args.epochs + 1):
    print(f"epoch={epoch} loss={1.0 / epoch:.4f} val_acc={args.x * epoch / args.epochs:.4f}", flush=True)
intermediate = os.environ.get("SM_OUTPUT_INTERMEDIATE_DIR")
if intermediate:  # what SageMaker syncs to S3 while a job runs
    os.makedirs(intermediate, exist_ok=True)
    with open(os.path.join(intermediate, "progress.txt"), "w") as f:
        f.write(f"{args.epochs} epochs\n")
model_dir = os.environ["SM_MODEL_DIR"]
with open(os.path.join(model_dir, "seen.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
               "cwd": os.getcwd(),
               # True only when forked from hpt's warm interpreter (trainer.warm_start).
               "warm": "hpt.runtime" in sys.modules}, f)
