"""Waits to be stopped; on SIGTERM records which process got it ($SM_MODEL_DIR/term-<RANK>)."""
import os
import signal
import sys
import time


def on_term(signum, frame):
    path = os.path.join(os.environ["SM_MODEL_DIR"], f"term-{os.environ.get('RANK', '0')}")
    with open(path, "w") as f:
        f.write("SIGTERM\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("waiting", flush=True)
time.sleep(3600)
