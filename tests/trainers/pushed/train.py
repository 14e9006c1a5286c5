"""A trainer that reports only through the metrics file (metrics_file.py beside it, copied
from trainers/cnn by the test): objective at epoch t = quality * t / epochs; it prints no
metric a regex could read. Quality "none" pushes nothing but a malformed line."""
import argparse
import os
import time

import metrics_file

parser = argparse.ArgumentParser()
parser.add_argument("--profile", default="0.5:0.1")
parser.add_argument("--epochs", type=int, default=3)
args, _ = parser.parse_known_args()
quality, seconds = args.profile.split(":")
seconds = float(seconds)
for epoch in range(1, args.epochs + 1):
    time.sleep(seconds)
    print(f"finished epoch {epoch}", flush=True)
    if quality != "none":
        metrics_file.push("acc", float(quality) * epoch / args.epochs, epoch)
        metrics_file.push("undeclared", 1.0, epoch)
if quality == "none":
    os.makedirs(os.path.dirname(metrics_file.metrics_path()), exist_ok=True)
    with open(metrics_file.metrics_path(), "a") as f:
        f.write("acc=0.5\n")
