"""A small CNN image classifier, written as a SageMaker PyTorch training script.

Runs unchanged in a SageMaker PyTorch container or under any runner that follows the
SageMaker training-container contract:

- hyperparameters arrive as `--key value` arguments (`--lr 0.01 --batch_size 64`); every one
  also defaults to its `SM_HP_<KEY>` environment variable, then to the value below;
- data comes from the channel folders `SM_CHANNEL_TRAIN` / `SM_CHANNEL_TEST`, each holding
  `data.npz` with `x` (float32 [N, C, H, W]) and `y` (int64 labels);
- the model is saved to `SM_MODEL_DIR` (`model.pth` state dict + `model_config.json`, and
  `code/inference.py`, the serving handler SageMaker's PyTorch containers and serve.py load);
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
"""

import argparse
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
import torch.nn as nn
import torch.nn.functional as F

# The distributed helpers live beside this script (SageMaker ships the whole source_dir).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402
import distributed  # noqa: E402
import metrics_file  # noqa: E402
import ps  # noqa: E402

# --------------------------------------------------------------------------------------------
# Arguments


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


def hp(name, default):
    """Default for a hyperparameter: SageMaker's SM_HP_<NAME> if set, else `default`."""
    return os.environ.get(f"SM_HP_{name.upper()}", default)


def parse_args(argv=None):
    p = ArgumentParser(description="Small CNN on SageMaker channels")
    # hyperparameters (SageMaker passes them with their names as given: --batch_size 64)
    p.add_argument("--lr", type=float, default=hp("lr", 0.01))
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int,
                   default=hp("batch_size", 64))
    p.add_argument("--optimizer", type=str.lower, choices=["sgd", "adam", "adamw"],
                   default=hp("optimizer", "sgd"))
    p.add_argument("--momentum", type=float, default=hp("momentum", 0.9),
                   help="SGD momentum (unused by adam/adamw)")
    p.add_argument("--weight_decay", "--weight-decay", dest="weight_decay", type=float,
                   default=hp("weight_decay", 0.0))
    p.add_argument("--conv_channels", "--conv-channels", dest="conv_channels", type=int,
                   default=hp("conv_channels", 16), help="width of the first conv layer")
    p.add_argument("--kernel_size", "--kernel-size", dest="kernel_size", type=int,
                   default=hp("kernel_size", 5), help="odd conv kernel size of both blocks")
    p.add_argument("--dropout", type=float, default=hp("dropout", 0.1))
    p.add_argument("--label_smoothing", "--label-smoothing", dest="label_smoothing", type=float,
                   default=hp("label_smoothing", 0.1))
    p.add_argument("--batch_norm", "--batch-norm", dest="batch_norm", type=str2bool,
                   default=hp("batch_norm", True))
    p.add_argument("--lr_schedule", "--lr-schedule", dest="lr_schedule", type=str.lower,
                   choices=["cosine", "constant"], default=hp("lr_schedule", "cosine"))
    p.add_argument("--epochs", type=int, default=hp("epochs", 8))
    p.add_argument("--schedule_epochs", "--schedule-epochs", dest="schedule_epochs", type=int,
                   default=hp("schedule_epochs", 0),
                   help="epochs the lr schedule spans (0: --epochs); a run paused and "
                        "promoted by a tuner sets it to the full budget, so that stopping at "
                        "a rung and going on trains as one uninterrupted run would")
    p.add_argument("--ps_async", "--ps-async", dest="ps_async", type=str2bool,
                   default=hp("ps_async", False),
                   help="parameter-server jobs: apply each worker's gradients at once")
    p.add_argument("--dist_timeout", "--dist-timeout", dest="dist_timeout", type=float,
                   default=hp("dist_timeout", 120),
                   help="seconds a collective or RPC may wait for a peer before failing")
    p.add_argument("--seed", type=int, default=hp("seed", 0))
    p.add_argument("--checkpoint_every", "--checkpoint-every", dest="checkpoint_every",
                   type=int, default=hp("checkpoint_every", 1),
                   help="epochs between checkpoints in /opt/ml/checkpoints (0: none)")
    p.add_argument("--push_metrics", "--push-metrics", dest="push_metrics", type=str2bool,
                   default=hp("push_metrics", False),
                   help="also append each epoch's metrics to $SM_OUTPUT_DIR/metrics/metrics.jsonl")
    # SageMaker's folders
    p.add_argument("--model-dir", dest="model_dir",
                   default=os.environ.get("SM_MODEL_DIR", "model"))
    p.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    p.add_argument("--test", default=os.environ.get("SM_CHANNEL_TEST"))
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"ignoring unknown arguments: {unknown}", file=sys.stderr, flush=True)

    if args.lr <= 0 or not math.isfinite(args.lr):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.conv_channels < 1:
        raise ValueError(f"--conv_channels must be >= 1, got {args.conv_channels}")
    if args.kernel_size < 1 or args.kernel_size % 2 == 0:
        raise ValueError(f"--kernel_size must be a positive odd number, got {args.kernel_size}")
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise ValueError(f"--label_smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.schedule_epochs < 0:
        raise ValueError(f"--schedule_epochs must be >= 0, got {args.schedule_epochs}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint_every must be >= 0, got {args.checkpoint_every}")
    return args


# --------------------------------------------------------------------------------------------
# Data: one channel folder = one or more .npz files with arrays x and y


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


# --------------------------------------------------------------------------------------------
# Model: two conv blocks, adaptive pooling (so 8x8 and 28x28 inputs both work), linear head


class SmallCNN(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, conv_channels=16, kernel_size=5,
                 dropout=0.1, batch_norm=True, pool_size=4):
        super().__init__()
        c1, c2 = conv_channels, 2 * conv_channels

        def block(cin, cout):
            layers = [nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2,
                                bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            return nn.Sequential(*layers)

        self.block1 = block(in_channels, c1)
        self.block2 = block(c1, c2)
        self.pool = nn.AdaptiveMaxPool2d(pool_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c2 * pool_size * pool_size, num_classes)

    def forward(self, x):
        x = self.block1(x)
        x = F.max_pool2d(x, 2)            # 8x8 -> 4x4, 28x28 -> 14x14
        x = self.block2(x)
        x = self.pool(x)                  # -> pool_size x pool_size whatever the input size
        x = self.dropout(torch.flatten(x, 1))
        return self.head(x)


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
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.set_num_threads(distributed.threads_per_process(ctx))
    device = distributed.device_for(ctx)

    x_train, y_train = load_channel("train", args.train)
    x_test, y_test = load_channel("test", args.test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"train images {tuple(x_train.shape[1:])} and test images "
                         f"{tuple(x_test.shape[1:])} differ in shape")
    # The whole data set fits in memory (and on the GPU): no DataLoader, no worker processes.
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    num_classes = int(max(y_train.max().item(), y_test.max().item())) + 1

    # Every process builds the same model from the same seed: identical initial parameters.
    config = dict(in_channels=int(x_train.shape[1]), num_classes=num_classes,
                  conv_channels=args.conv_channels, kernel_size=args.kernel_size,
                  dropout=args.dropout, batch_norm=args.batch_norm, pool_size=4)
    model = SmallCNN(**config).to(device)
    steps_per_epoch = math.ceil(len(y_train) / args.batch_size)
    if ctx.role == "ps":  # a parameter server: holds its shard until the workers are done
        ps.serve(ctx, model, lambda params: make_optimizer(args, params),
                 lambda opt: make_schedule(args, opt, steps_per_epoch), args.ps_async,
                 args.dist_timeout)
        return
    optimizer = make_optimizer(args, model.parameters())
    # The same permutation on every worker; worker r takes the r-th slice of each global
    # batch. Its loss is the slice's summed loss over the GLOBAL batch size, so summing the
    # workers' gradients gives exactly the global batch's mean-loss gradient.
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    checkpoints = checkpoint.checkpoint_dir() if ctx.mode == "single" else None
    resumed = checkpoint.resume(checkpoints, model, optimizer, generator, args)
    done_epochs = resumed["epoch"] if resumed else 0
    val_acc = resumed["val_acc"] if resumed else None
    if resumed:  # no "loss=" or "val_acc=" here: the metric regexes count those lines
        print(f"resumed from checkpoint-{done_epochs}.pt in {checkpoints}: epoch {done_epochs} "
              f"done, validation accuracy {val_acc:.6f}; training to epoch {args.epochs}",
              flush=True)
    schedule = make_schedule(args, optimizer, steps_per_epoch, done_epochs * steps_per_epoch)
    link = None
    if ctx.mode == "data_parallel":
        distributed.init_data_parallel(ctx, args.dist_timeout)
    elif ctx.mode == "parameter_server":
        link = ps.ServerLink(ctx, model, args.dist_timeout)
    if ctx.is_chief:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"device={device} threads={torch.get_num_threads()} train={len(y_train)} "
              f"test={len(y_test)} image={tuple(x_train.shape[1:])} params={n_params} "
              f"optimizer={args.optimizer} lr={args.lr:g} batch_size={args.batch_size} "
              f"mode={ctx.mode} workers={ctx.workers} servers={ctx.servers}", flush=True)

    started = time.time()
    for epoch in range(done_epochs + 1, args.epochs + 1):
        model.train()
        epoch_started = time.time()
        order = torch.randperm(len(y_train), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for i in range(0, len(order), args.batch_size):
            batch = order[i:i + args.batch_size]
            mine = torch.tensor_split(batch, ctx.workers)[ctx.rank]
            optimizer.zero_grad(set_to_none=False)
            if len(mine):
                summed = F.cross_entropy(model(x_train[mine]), y_train[mine],
                                         label_smoothing=args.label_smoothing, reduction="sum")
                (summed / len(batch)).backward()
                loss_sum += summed.detach()
            else:  # fewer samples than workers in the last batch: this worker adds nothing
                for p in model.parameters():
                    p.grad = torch.zeros_like(p)
            if link is not None:
                link.step(model, float(summed.detach()) if len(mine) else 0.0, epoch)
                continue
            if ctx.mode == "data_parallel":
                distributed.allreduce_gradients(model.parameters())
            optimizer.step()
            schedule.step()
        if ctx.mode == "data_parallel":
            loss_sum = distributed.allreduce_sum(loss_sum)
        seconds = time.time() - epoch_started
        if link is not None:  # server 0 sums the workers' losses; only the chief asks for it
            total_loss = link.epoch_loss(epoch) if ctx.is_chief else float("nan")
        else:
            total_loss = loss_sum.item()
        train_loss = total_loss / len(y_train)
        if ctx.is_chief:
            val_acc = accuracy(model, x_test, y_test)
            # Written before the epoch is reported: a tuner that acts on the report (pauses
            # the trial, copies its checkpoint) finds this epoch's checkpoint there.
            if checkpoints and args.checkpoint_every and (
                    epoch % args.checkpoint_every == 0 or epoch == args.epochs):
                checkpoint.save(checkpoints, epoch, model, optimizer, generator,
                                args.optimizer, train_loss, val_acc)
            if args.push_metrics:
                metrics_file.push("train:loss", train_loss, epoch)
                metrics_file.push("validation:accuracy", val_acc, epoch)
            print(f"epoch={epoch} loss={train_loss:.6f} val_acc={val_acc:.6f}", flush=True)
            print(f"throughput epoch={epoch} samples_per_sec={len(y_train) / seconds:.1f}",
                  flush=True)
        # Every data-parallel rank sees the same all-reduced loss and stops together; parameter
        # server workers cannot stop alone (the others would wait for them), so they go on.
        if ctx.mode != "parameter_server" and not math.isfinite(train_loss):
            print(f"training diverged (loss={train_loss}); stopping after epoch {epoch}",
                  file=sys.stderr, flush=True)
            break

    if link is not None:
        link.close()
    distributed.finish_data_parallel()
    if not ctx.is_chief:
        return
    print(f"model params={sum(p.numel() for p in model.parameters())} "
          f"size_mb={size_mb(model):.6f} latency_p99_ms={latency_p99_ms(model, x_test):.4f}",
          flush=True)
    os.makedirs(args.model_dir, exist_ok=True)
    model_path = os.path.join(args.model_dir, "model.pth")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, model_path)
    with open(os.path.join(args.model_dir, "model_config.json"), "w") as f:
        json.dump({"architecture": "SmallCNN", **config,
                   "input_shape": list(x_train.shape[1:]),
                   "hyperparameters": {k: v for k, v in vars(args).items()
                                       if k not in ("model_dir", "train", "test")},
                   "final_val_acc": val_acc}, f, indent=2)
    # The serving handler travels inside the model (model.tar.gz's code/), where SageMaker's
    # PyTorch serving container and serve.py look for it first.
    code_dir = os.path.join(args.model_dir, "code")
    os.makedirs(code_dir, exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "inference.py"),
                os.path.join(code_dir, "inference.py"))
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
