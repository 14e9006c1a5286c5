"""A small CNN image classifier, written as a SageMaker PyTorch training script.

Runs unchanged in a SageMaker PyTorch container or under any runner that follows the
SageMaker training-container contract:

- hyperparameters arrive as `--key value` arguments (`--lr 0.01 --batch_size 64`); every one
  also defaults to its `SM_HP_<KEY>` environment variable, then to the value below;
- data comes from the channel folders `SM_CHANNEL_TRAIN` / `SM_CHANNEL_TEST`, each holding
  `data.npz` with `x` (float32 [N, C, H, W]) and `y` (int64 labels);
- the model is saved to `SM_MODEL_DIR` (`model.pth` state dict + `model_config.json`, and
  `code/inference.py` + `code/model.py`, the serving handler SageMaker's PyTorch containers and
  serve.py load);
- every epoch prints one line `epoch=E loss=L val_acc=A` for the metric regexes, and one
  `throughput epoch=E samples_per_sec=S` (only the chief, rank 0, prints; it saves the model);
  at the end one `model params=N size_mb=S latency_p99_ms=L` line: the trade-offs a
  multi-objective job weighs against accuracy (size of the saved weights, and the 99th
  percentile of one-image inference time on the training device);
- distributed, when the environment says so (see distributed.py): data-parallel with
  WORLD_SIZE/RANK (all-reduce, `gloo` on CPU, `nccl` on GPU; also under `torchrun`), or
  parameter servers when TF_CONFIG lists `ps` tasks (ps.py). `--batch_size` is the global
  batch: with W workers each takes its 1/W slice, and training follows the same curve;
- every `checkpoint_every` epochs (default 1; 0: never) a checkpoint goes to SageMaker's
  checkpoint folder (`/opt/ml/checkpoints`), and a run that finds one there resumes from the
  newest, continuing the epoch count with the hyperparameters it is given now (a tuner that
  promotes a trial raises `epochs`; one that exploits changes `lr`): see checkpoint.py.
  Single-process runs only (a distributed run starts from scratch);
- with `push_metrics` true, each epoch's `validation:accuracy` and `train:loss` are also
  appended to the metrics file (`$SM_OUTPUT_DIR/metrics/metrics.jsonl`, metrics_file.py), for
  a space whose metric definitions have no regex;
- any error writes its reason to `$SM_OUTPUT_DIR/failure` and exits 1.

    python train.py --train data/digits/train --test data/digits/test --epochs 8

The model itself is model.py's SmallCNN; inference.py serves it.
"""

from __future__ import annotations  # the annotations below, on Pythons before 3.10

import argparse
import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

# The helpers live beside this script (SageMaker ships the whole source_dir).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402
import distributed  # noqa: E402
import metrics_file  # noqa: E402
import ps  # noqa: E402
from model import SmallCNN  # noqa: E402

# --------------------------------------------------------------------------------------------
# Where everything comes from (SageMaker's training-container contract)
#
#   hyperparameters  --name value, else $SM_HP_<NAME>, else the default in add_hyperparameters
#   data channels    --train / --test, else $SM_CHANNEL_TRAIN / $SM_CHANNEL_TEST
#   the model        --model-dir, else $SM_MODEL_DIR, else ./model
#   checkpoints      /opt/ml/checkpoints (checkpoint.py)
#   metrics          stdout lines for the metric regexes; with push_metrics also
#                    $SM_OUTPUT_DIR/metrics/metrics.jsonl (metrics_file.py)
#   failure reason   $SM_OUTPUT_DIR/failure, else ./output/failure (write_failure)
#   distribution     WORLD_SIZE / RANK or TF_CONFIG (distributed.py, ps.py)

MODEL_FILES = ("inference.py", "model.py")  # the serving code every model carries in code/


def parse_args(argv=None):
    """The hyperparameters and SageMaker's folders; a bad value raises ValueError."""
    parser = ArgumentParser(description="Small CNN on SageMaker channels")
    add_hyperparameters(parser)
    # SageMaker's folders, declared as SageMaker's own examples declare them
    parser.add_argument("--model-dir", dest="model_dir",
                        default=os.environ.get("SM_MODEL_DIR", "model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--test", default=os.environ.get("SM_CHANNEL_TEST"))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"ignoring unknown arguments: {unknown}", file=sys.stderr, flush=True)
    check_hyperparameters(args)
    return args


def add_hyperparameters(parser):
    """Every hyperparameter a tuner may set (search_spaces/*.yaml use these names)."""
    def hp(name, type, default, **kwargs):
        hyperparameter(parser, name, type, default, **kwargs)

    hp("lr", float, 0.01)
    hp("batch_size", int, 64)
    hp("optimizer", str.lower, "sgd", choices=["sgd", "adam", "adamw"])
    hp("momentum", float, 0.9, help="SGD momentum (unused by adam/adamw)")
    hp("weight_decay", float, 0.0)
    hp("conv_channels", int, 16, help="width of the first conv layer")
    hp("kernel_size", int, 5, help="odd conv kernel size of both blocks")
    hp("dropout", float, 0.1)
    hp("label_smoothing", float, 0.1)
    hp("batch_norm", str2bool, True)
    hp("lr_schedule", str.lower, "cosine", choices=["cosine", "constant"])
    hp("epochs", int, 8)
    hp("schedule_epochs", int, 0,
       help="epochs the lr schedule spans (0: --epochs); a run paused and promoted by a tuner "
            "sets it to the full budget, so that stopping at a rung and going on trains as "
            "one uninterrupted run would")
    hp("ps_async", str2bool, False,
       help="parameter-server jobs: apply each worker's gradients at once")
    hp("dist_timeout", float, 120,
       help="seconds a collective or RPC may wait for a peer before failing")
    hp("seed", int, 0)
    hp("checkpoint_every", int, 1,
       help="epochs between checkpoints in /opt/ml/checkpoints (0: none)")
    hp("push_metrics", str2bool, False,
       help="also append each epoch's metrics to $SM_OUTPUT_DIR/metrics/metrics.jsonl")


def hyperparameter(parser, name, type, default, **kwargs):
    """`--name value` (SageMaker passes hyperparameters with their names as given: --batch_size
    64), also spelled with dashes (--batch-size); the default is SageMaker's SM_HP_<NAME> when
    set, else `default`."""
    flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*flags, dest=name, type=type,
                        default=os.environ.get(f"SM_HP_{name.upper()}", default), **kwargs)


# (hyperparameter, the rule its value must meet, that rule in words)
HYPERPARAMETER_RULES = (
    ("lr", lambda v: v > 0 and math.isfinite(v), "a positive number"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("conv_channels", lambda v: v >= 1, ">= 1"),
    ("kernel_size", lambda v: v >= 1 and v % 2 == 1, "a positive odd number"),
    ("dropout", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    ("label_smoothing", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    ("epochs", lambda v: v >= 1, ">= 1"),
    ("schedule_epochs", lambda v: v >= 0, ">= 0"),
    ("checkpoint_every", lambda v: v >= 0, ">= 0"),
)


def check_hyperparameters(args):
    for name, holds, rule in HYPERPARAMETER_RULES:
        value = getattr(args, name)
        if not holds(value):
            raise ValueError(f"--{name} must be {rule}, got {value}")


def str2bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "on"):
        return True
    if text in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


class ArgumentParser(argparse.ArgumentParser):
    """Raises instead of exiting, so a bad hyperparameter lands in the failure file."""

    def error(self, message):
        raise ValueError(f"bad arguments: {message}")


# --------------------------------------------------------------------------------------------
# Data: one channel folder = one or more .npz files with arrays x and y; all of it in memory


def load_channel(name, path):
    if not path:
        raise ValueError(f"no {name} channel: pass --{name} DIR or set SM_CHANNEL_{name.upper()}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{name} channel directory not found: {path}")
    files = sorted(glob.glob(os.path.join(path, "*.npz")))
    if not files:
        raise FileNotFoundError(f"{name} channel {path} holds no .npz file (expected data.npz)")
    xs, ys = [], []
    for file in files:
        with np.load(file) as data:
            if "x" not in data or "y" not in data:
                raise ValueError(f"{file}: expected arrays 'x' and 'y', found {list(data.keys())}")
            xs.append(np.asarray(data["x"], dtype=np.float32))
            ys.append(np.asarray(data["y"], dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.ndim == 3:  # [N, H, W] -> [N, 1, H, W]
        x = x[:, None]
    if x.ndim != 4 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{name} channel {path}: x {x.shape} / y {y.shape} are not "
                         f"[N, C, H, W] / [N] with N > 0")
    return torch.from_numpy(x), torch.from_numpy(y)


class Data:
    """Both channels on the training device: the whole data set fits in memory (and on the
    GPU), so no DataLoader and no worker processes."""

    def __init__(self, args, device):
        x_train, y_train = load_channel("train", args.train)
        x_test, y_test = load_channel("test", args.test)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(f"train images {tuple(x_train.shape[1:])} and test images "
                             f"{tuple(x_test.shape[1:])} differ in shape")
        self.x_train, self.y_train = x_train.to(device), y_train.to(device)
        self.x_test, self.y_test = x_test.to(device), y_test.to(device)
        self.image_shape = tuple(x_train.shape[1:])
        self.num_classes = int(max(self.y_train.max().item(), self.y_test.max().item())) + 1


# --------------------------------------------------------------------------------------------
# Model (model.py), optimizer, learning-rate schedule, the trade-off metrics


def model_config(args, data):
    """SmallCNN's arguments, as model_config.json records them for inference.py."""
    return dict(in_channels=data.image_shape[0], num_classes=data.num_classes,
                conv_channels=args.conv_channels, kernel_size=args.kernel_size,
                dropout=args.dropout, batch_norm=args.batch_norm, pool_size=4)


def make_optimizer(args, params):
    params = list(params)
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                               weight_decay=args.weight_decay, nesterov=args.momentum > 0)
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)


def make_schedule(args, optimizer, steps_per_epoch, start_step=0):
    """Linear warmup, then cosine decay to 0 (or constant), stepped once per global batch;
    `start_step`: the batches a resumed run already trained (its checkpoint's epochs)."""
    total_steps = (args.schedule_epochs or args.epochs) * steps_per_epoch
    warmup_steps = max(1, min(steps_per_epoch, total_steps // 10))

    def lr_factor(step):
        step += start_step
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if args.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


@torch.no_grad()
def latency_p99_ms(model, x, runs=200, warmup=10):
    """The 99th percentile of one-image inference time, in milliseconds."""
    model.eval()
    sample = x[:1]
    sync = torch.cuda.synchronize if sample.is_cuda else (lambda: None)
    times = []
    for i in range(warmup + runs):
        began = time.perf_counter()
        model(sample)
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - began) * 1000.0)
    return float(np.percentile(times, 99))


def size_mb(model):
    """The size of the saved weights (state dict tensors), in megabytes (10^6 bytes)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


@torch.no_grad()
def accuracy(model, x, y, batch_size=1024):
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(y)


# --------------------------------------------------------------------------------------------
# Training


def train(args):
    ctx = distributed.detect()
    device = set_up_process(ctx, args.seed)
    data = Data(args, device)
    config = model_config(args, data)
    # Every process builds the same model from the same seed: identical initial parameters.
    model = SmallCNN(**config).to(device)
    steps_per_epoch = math.ceil(len(data.y_train) / args.batch_size)
    if ctx.role == "ps":  # a parameter server: holds its shard until the workers are done
        ps.serve(ctx, model, lambda params: make_optimizer(args, params),
                 lambda opt: make_schedule(args, opt, steps_per_epoch), args.ps_async,
                 args.dist_timeout)
        return
    worker = start_worker(args, ctx, device, data, model, steps_per_epoch)
    val_acc = worker.resumed_val_acc
    started = time.time()
    for epoch in range(worker.done_epochs + 1, args.epochs + 1):
        epoch_started = time.time()
        loss_sum = train_epoch(worker, epoch)
        seconds = time.time() - epoch_started
        train_loss = mean_train_loss(worker, epoch, loss_sum)
        if ctx.is_chief:
            val_acc = end_epoch(worker, epoch, train_loss, seconds)
        # Every data-parallel rank sees the same all-reduced loss and stops together; parameter
        # server workers cannot stop alone (the others would wait for them), so they go on.
        if ctx.mode != "parameter_server" and not math.isfinite(train_loss):
            print(f"training diverged (loss={train_loss}); stopping after epoch {epoch}",
                  file=sys.stderr, flush=True)
            break
    if worker.link is not None:
        worker.link.close()
    distributed.finish_data_parallel()
    if ctx.is_chief:
        save_model(args, model, config, data, val_acc, started)


def set_up_process(ctx, seed):
    """Seeds and deterministic kernels, this process's CPU threads; returns its device."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.set_num_threads(distributed.threads_per_process(ctx))
    return distributed.device_for(ctx)


@dataclasses.dataclass
class Worker:
    """What a training process (not a parameter server) holds from epoch to epoch."""
    args: argparse.Namespace
    ctx: distributed.Context
    device: torch.device
    data: Data
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    checkpoints: str | None           # single-process runs only
    link: ps.ServerLink | None        # parameter-server jobs only
    done_epochs: int = 0              # > 0 when resumed from a checkpoint
    resumed_val_acc: float | None = None


def start_worker(args, ctx, device, data, model, steps_per_epoch):
    """The optimizer, the data order, the newest checkpoint if any, the schedule, and the
    connection to the job's other processes."""
    optimizer = make_optimizer(args, model.parameters())
    # The same permutation on every worker; worker r takes the r-th slice of each global
    # batch. Its loss is the slice's summed loss over the GLOBAL batch size, so summing the
    # workers' gradients gives exactly the global batch's mean-loss gradient.
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    checkpoints = checkpoint.checkpoint_dir() if ctx.mode == "single" else None
    resumed = checkpoint.resume(checkpoints, model, optimizer, generator, args)
    done_epochs = resumed["epoch"] if resumed else 0
    if resumed:  # no "loss=" or "val_acc=" here: the metric regexes count those lines
        print(f"resumed from checkpoint-{done_epochs}.pt in {checkpoints}: epoch {done_epochs} "
              f"done, validation accuracy {resumed['val_acc']:.6f}; training to epoch "
              f"{args.epochs}", flush=True)
    schedule = make_schedule(args, optimizer, steps_per_epoch, done_epochs * steps_per_epoch)
    link = None
    if ctx.mode == "data_parallel":
        distributed.init_data_parallel(ctx, args.dist_timeout)
    elif ctx.mode == "parameter_server":
        link = ps.ServerLink(ctx, model, args.dist_timeout)
    if ctx.is_chief:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"device={device} threads={torch.get_num_threads()} train={len(data.y_train)} "
              f"test={len(data.y_test)} image={data.image_shape} params={n_params} "
              f"optimizer={args.optimizer} lr={args.lr:g} batch_size={args.batch_size} "
              f"mode={ctx.mode} workers={ctx.workers} servers={ctx.servers}", flush=True)
    return Worker(args, ctx, device, data, model, optimizer, schedule, generator, checkpoints,
                  link, done_epochs, resumed["val_acc"] if resumed else None)


def train_epoch(worker, epoch):
    """One pass over the training set; returns the summed loss of its samples (all workers'
    in a data-parallel job, this worker's own with parameter servers)."""
    worker.model.train()
    order = torch.randperm(len(worker.data.y_train), generator=worker.generator)
    order = order.to(worker.device)
    loss_sum = torch.zeros((), device=worker.device)
    for i in range(0, len(order), worker.args.batch_size):
        loss_sum += train_step(worker, order[i:i + worker.args.batch_size], epoch)
    if worker.ctx.mode == "data_parallel":
        loss_sum = distributed.allreduce_sum(loss_sum)
    return loss_sum


def train_step(worker, batch, epoch):
    """One global batch: this worker's slice forward and backward, then the update (here, or
    on the parameter servers). Returns the slice's summed loss."""
    model, ctx, data = worker.model, worker.ctx, worker.data
    mine = torch.tensor_split(batch, ctx.workers)[ctx.rank]
    worker.optimizer.zero_grad(set_to_none=False)
    if len(mine):
        summed = F.cross_entropy(model(data.x_train[mine]), data.y_train[mine],
                                 label_smoothing=worker.args.label_smoothing, reduction="sum")
        (summed / len(batch)).backward()
        summed = summed.detach()
    else:  # fewer samples than workers in the last batch: this worker adds nothing
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        summed = torch.zeros((), device=worker.device)
    if worker.link is not None:
        worker.link.step(model, float(summed), epoch)
        return summed
    if ctx.mode == "data_parallel":
        distributed.allreduce_gradients(model.parameters())
    worker.optimizer.step()
    worker.schedule.step()
    return summed


def mean_train_loss(worker, epoch, loss_sum):
    if worker.link is not None:  # server 0 sums the workers' losses; only the chief asks for it
        total_loss = worker.link.epoch_loss(epoch) if worker.ctx.is_chief else float("nan")
    else:
        total_loss = loss_sum.item()
    return total_loss / len(worker.data.y_train)


def end_epoch(worker, epoch, train_loss, seconds):
    """The chief's end of an epoch: validation, checkpoint, the metric lines; returns the
    validation accuracy."""
    args, data = worker.args, worker.data
    val_acc = accuracy(worker.model, data.x_test, data.y_test)
    # Written before the epoch is reported: a tuner that acts on the report (pauses the
    # trial, copies its checkpoint) finds this epoch's checkpoint there.
    if worker.checkpoints and args.checkpoint_every and (
            epoch % args.checkpoint_every == 0 or epoch == args.epochs):
        checkpoint.save(worker.checkpoints, epoch, worker.model, worker.optimizer,
                        worker.generator, args.optimizer, train_loss, val_acc)
    if args.push_metrics:
        metrics_file.push("train:loss", train_loss, epoch)
        metrics_file.push("validation:accuracy", val_acc, epoch)
    print(f"epoch={epoch} loss={train_loss:.6f} val_acc={val_acc:.6f}", flush=True)
    print(f"throughput epoch={epoch} samples_per_sec={len(data.y_train) / seconds:.1f}",
          flush=True)
    return val_acc


def save_model(args, model, config, data, val_acc, started):
    """The chief's last step: the trade-off line, then model.pth, model_config.json and the
    serving code into the model folder."""
    print(f"model params={sum(p.numel() for p in model.parameters())} "
          f"size_mb={size_mb(model):.6f} latency_p99_ms={latency_p99_ms(model, data.x_test):.4f}",
          flush=True)
    os.makedirs(args.model_dir, exist_ok=True)
    model_path = os.path.join(args.model_dir, "model.pth")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, model_path)
    with open(os.path.join(args.model_dir, "model_config.json"), "w") as f:
        json.dump({"architecture": "SmallCNN", **config,
                   "input_shape": list(data.image_shape),
                   "hyperparameters": {k: v for k, v in vars(args).items()
                                       if k not in ("model_dir", "train", "test")},
                   "final_val_acc": val_acc}, f, indent=2)
    # The serving handler travels inside the model (model.tar.gz's code/), where SageMaker's
    # PyTorch serving container and serve.py look for it first.
    code_dir = os.path.join(args.model_dir, "code")
    os.makedirs(code_dir, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    for name in MODEL_FILES:
        shutil.copy(os.path.join(here, name), os.path.join(code_dir, name))
    print(f"saved {model_path} after {time.time() - started:.1f}s of training", flush=True)


# --------------------------------------------------------------------------------------------
# Entry point: any error -> $SM_OUTPUT_DIR/failure (SageMaker's FailureReason), exit 1


def write_failure(exc):
    reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    output_dir = os.environ.get("SM_OUTPUT_DIR", "output")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "failure"), "w") as f:
            f.write(reason[:1024])
    except OSError as err:
        print(f"could not write the failure file in {output_dir}: {err}", file=sys.stderr)


def model_fn(model_dir):
    """SageMaker's PyTorch inference container loads the model with the entry point's
    model_fn, and `HyperparameterTuner.deploy()` serves the training script itself as that
    entry point: so this script can be served as it is (the framework's defaults do the
    rest: application/x-npy or JSON in, the model's output out). inference.py (shipped in
    every model as code/inference.py) is the full handler."""
    import inference

    return inference.model_fn(model_dir)


def main():
    try:
        train(parse_args())
    except Exception as exc:
        write_failure(exc)
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
