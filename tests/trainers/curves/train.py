"""A trainer with a known learning curve: objective at epoch t = quality * t / epochs.

--profile QUALITY:SECONDS[:SIZE]  (seconds slept per epoch), e.g. 0.9:0.2; with SIZE, each
epoch's line also prints size_mb=SIZE (a second objective, for multi-objective early stopping)
"""
import argparse
import time

parser = argparse.ArgumentParser()
parser.add_argument("--profile", default="0.5:0.1")
parser.add_argument("--epochs", type=int, default=3)
args, _ = parser.parse_known_args()
quality, seconds, *size = (float(v) for v in args.profile.split(":"))
for epoch in range(1, args.epochs + 1):
    time.sleep(seconds)
    print(f"epoch={epoch} val_acc={quality * epoch / args.epochs:.6f}" +
          (f" size_mb={size[0]:g}" if size else ""), flush=True)
