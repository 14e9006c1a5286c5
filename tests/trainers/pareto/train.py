"""A multi-objective test trainer: its metrics are a known function of its hyperparameters,
and it records what the training contract gave it.

Hyperparameters: --width (integer), --optimizer (sgd/adam), --momentum (sgd only),
--beta2 (adam only), --seconds (sleep first). It prints
`val_acc=A size_mb=S latency_ms=L`: accuracy rises with width, so do size and latency, and
adam adds a little accuracy at a cost in size: a real trade-off with a Pareto front of
several jobs. It writes $SM_MODEL_DIR/seen.json: its argv, SM_HPS, every SM_HP_* variable and
hyperparameters.json as read from the contract's config folder.
"""

import json
import os
import sys
import time

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
width = int(args.get("--width", 1))
optimizer = args.get("--optimizer", "sgd")
time.sleep(float(args.get("--seconds", 0)))

model_dir = os.environ.get("SM_MODEL_DIR", "model")
config_dir = os.environ.get("SM_INPUT_CONFIG_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(model_dir)), "input", "config")
with open(os.path.join(config_dir, "hyperparameters.json")) as f:
    file_hps = json.load(f)
os.makedirs(model_dir, exist_ok=True)
with open(os.path.join(model_dir, "seen.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "SM_HPS": json.loads(os.environ.get("SM_HPS", "{}")),
               "SM_HP": {k: v for k, v in os.environ.items() if k.startswith("SM_HP_")},
               "hyperparameters.json": file_hps}, f)

bonus = 0.02 if optimizer == "adam" else 0.0
accuracy = 1.0 - 0.5 / (width + 1) + bonus
size = 0.1 * width + (0.05 if optimizer == "adam" else 0.0)
print(f"val_acc={accuracy:.6f} size_mb={size:.6f} latency_ms={float(width):.3f}", flush=True)
