"""Checkpoints in SageMaker's checkpoint folder, and resuming from the latest one.

SageMaker gives a job `/opt/ml/checkpoints` (synced to `CheckpointConfig.S3Uri`) and hands a
restarted job (managed spot, a tuner that promotes or exploits a trial) the files its last run
left there. Every `checkpoint_every` epochs this script writes `checkpoint-<epoch>.pt` (model,
optimizer, data order and random state, so a resumed run continues exactly as an uninterrupted
one would), atomically, keeping the last two; at start it resumes from the newest.

Hyperparameters are read at start as always: a resumed run uses the ones it is given now (a
tuner may have changed the learning rate, the momentum or the number of epochs), so the
optimizer's own values are set from them after its state (its momentum buffers) is loaded.
"""

import glob
import os
import re

import numpy as np
import torch

KEEP = 2  # checkpoints kept: the newest may be torn only if the file system lies
_NAME = re.compile(r"checkpoint-(\d+)\.pt$")


def checkpoint_dir():
    """SageMaker's folder (`$SAGEMAKER_BASE_DIR/checkpoints` under hpt, `/opt/ml/checkpoints`
    in a container), or None outside any (a plain `python train.py` writes none)."""
    base = os.environ.get("SAGEMAKER_BASE_DIR")
    if base:
        return os.path.join(base, "checkpoints")
    return "/opt/ml/checkpoints" if os.path.isdir("/opt/ml") else None


def latest(directory):
    """(epoch, path) of the newest checkpoint in `directory`, or None."""
    if not directory or not os.path.isdir(directory):
        return None
    return max(_all(directory), default=None)


def save(directory, epoch, model, optimizer, generator, optimizer_name, loss, val_acc):
    os.makedirs(directory, exist_ok=True)
    state = {"epoch": epoch, "model": {k: v.cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "optimizer_name": optimizer_name,
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
             "numpy_rng": np.random.get_state(), "loss": loss, "val_acc": val_acc}
    path = os.path.join(directory, f"checkpoint-{epoch}.pt")
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint as the newest
    for _, old in sorted(_all(directory))[:-KEEP]:
        os.remove(old)
    return path


def _all(directory):
    return [(int(m.group(1)), p) for p in glob.glob(os.path.join(directory, "*.pt"))
            if (m := _NAME.search(p))]


def resume(directory, model, optimizer, generator, args):
    """Loads the newest checkpoint into model, optimizer and random state; returns it (its
    `epoch`, `loss`, `val_acc`) or None when there is none."""
    found = latest(directory)
    if found is None:
        return None
    epoch, path = found
    state = torch.load(path, map_location="cpu", weights_only=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not fit this model (were conv_channels, "
                         f"kernel_size or batch_norm changed?): {exc}") from exc
    if state.get("optimizer_name") == args.optimizer:  # another optimizer starts afresh
        optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:  # the hyperparameters given now, not the saved ones
        group["lr"] = group["initial_lr"] = args.lr
        group["weight_decay"] = args.weight_decay
        if "momentum" in group:
            group["momentum"] = args.momentum
            group["nesterov"] = args.momentum > 0
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    return state
