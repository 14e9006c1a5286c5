"""Builds SageMaker channel files from scikit-learn's bundled digits data (no download).

    python scripts/prepare_data.py                      # -> data/digits/{train,test}/data.npz
    python scripts/prepare_data.py --variant shifted    # -> data/digits-shifted/{train,test}/data.npz

Each `data.npz` holds `x` (float32, [N, 1, H, W], scaled to [0, 1]) and `y` (int64 labels).
The train/test split is stratified with a fixed seed, and done on the ORIGINAL 1,797 digits
before any augmentation, so no augmented copy of a test digit is ever trained on.

Variants:
- `plain`:   the 8x8 digits as they are (1,437 train / 360 test).
- `shifted`: every digit up-sampled to 28x28 and turned into several randomly rotated,
             scaled, shifted and noisy copies (7 each: 10,059 train / 2,520 test), a harder
             task on which the learning rate and batch size visibly matter.

Importable without side effects: `prepare(out_dir, variant, seed)` writes the channels and
`ensure_prepared(out_dir, variant, seed)` writes them only when missing. Only numpy, scipy and
scikit-learn are imported.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

VARIANTS = ("plain", "shifted")
TEST_FRACTION = 0.2
SHIFTED_SIZE = 28      # output image side for the shifted variant
SHIFTED_DIGIT = 20     # the 8x8 digit is up-sampled to this side before it is placed and moved
SHIFTED_COPIES = 7     # augmented copies per original digit
CHANNELS = ("train", "test")


def default_out_dir(variant: str) -> Path:
    """`<repo>/data/digits` or `<repo>/data/digits-shifted`, wherever the cwd is."""
    name = "digits" if variant == "plain" else f"digits-{variant}"
    return Path(__file__).resolve().parent.parent / "data" / name


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # [1797, 8, 8], pixel values 0..16
    return images, digits.target.astype(np.int64)


def _split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    train, test = train_test_split(index, test_size=TEST_FRACTION, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def _augment(images: np.ndarray, labels: np.ndarray, copies: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`copies` random affine + noise variants of each 8x8 image, as 28x28 images."""
    from scipy import ndimage

    pad = (SHIFTED_SIZE - SHIFTED_DIGIT) // 2
    center = (SHIFTED_SIZE - 1) / 2.0
    out = np.empty((len(images) * copies, SHIFTED_SIZE, SHIFTED_SIZE), dtype=np.float32)
    out_labels = np.repeat(labels, copies)
    k = 0
    for image in images:
        big = ndimage.zoom(image, SHIFTED_DIGIT / image.shape[0], order=1, grid_mode=True,
                           mode="grid-constant")
        canvas = np.zeros((SHIFTED_SIZE, SHIFTED_SIZE), dtype=np.float32)
        canvas[pad:pad + SHIFTED_DIGIT, pad:pad + SHIFTED_DIGIT] = big
        for _ in range(copies):
            angle = np.deg2rad(rng.uniform(-30.0, 30.0))
            scale = rng.uniform(0.75, 1.2)
            shear = rng.uniform(-0.2, 0.2)
            shift = rng.uniform(-4.0, 4.0, size=2)
            # affine_transform maps OUTPUT coordinates to INPUT ones: invert rotation and scale.
            c, s = np.cos(angle), np.sin(angle)
            matrix = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) / scale
            offset = center - matrix @ (center + shift)
            moved = ndimage.affine_transform(canvas, matrix, offset=offset, order=1,
                                             mode="constant", cval=0.0)
            contrast = rng.uniform(0.6, 1.0)
            noise = rng.normal(0.0, 0.2, size=moved.shape)
            out[k] = np.clip(moved * contrast + noise, 0.0, 1.0)
            k += 1
    return out, out_labels


def build(variant: str = "plain", seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """channel name -> (x [N,1,H,W] float32 in [0,1], y int64), deterministic in `seed`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    images, labels = _load_digits()
    train, test = _split(labels, seed)
    channels = {}
    for name, index in (("train", train), ("test", test)):
        x, y = images[index], labels[index]
        if variant == "shifted":
            # One independent, seeded stream per channel: train and test never share draws.
            rng = np.random.default_rng([seed, CHANNELS.index(name)])
            x, y = _augment(x, y, SHIFTED_COPIES, rng)
            order = rng.permutation(len(y))
            x, y = x[order], y[order]
        channels[name] = (np.ascontiguousarray(x[:, None, :, :], dtype=np.float32),
                          y.astype(np.int64))
    return channels


def _write_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # a file object: numpy does not append ".npz" to the name
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def prepare(out_dir: Path | str | None = None, variant: str = "plain", seed: int = 0,
            verbose: bool = False) -> Path:
    """Writes `<out_dir>/train/data.npz` and `<out_dir>/test/data.npz`; returns `out_dir`."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(variant)
    channels = build(variant, seed)
    # test first, train last: ensure_prepared() checks both, so a crash in between is redone.
    for name in ("test", "train"):
        x, y = channels[name]
        path = out_dir / name / "data.npz"
        _write_npz_atomic(path, x=x, y=y)
        if verbose:
            counts = np.bincount(y, minlength=10).tolist()
            print(f"wrote {path}: x {x.dtype}{list(x.shape)} in [{x.min():.2f}, {x.max():.2f}], "
                  f"y {y.dtype}[{len(y)}] per class {counts}", flush=True)
    return out_dir


def is_prepared(out_dir: Path | str) -> bool:
    out_dir = Path(out_dir)
    return all((out_dir / name / "data.npz").is_file() for name in CHANNELS)


def ensure_prepared(out_dir: Path | str | None = None, variant: str = "plain", seed: int = 0,
                    verbose: bool = False) -> bool:
    """Prepares the channels unless both files exist; True if it wrote them."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(variant)
    if is_prepared(out_dir):
        return False
    prepare(out_dir, variant, seed, verbose=verbose)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <repo>/data/digits[-shifted])")
    parser.add_argument("--variant", choices=VARIANTS, default="plain")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = prepare(args.out, args.variant, args.seed, verbose=True)
    print(f"channels ready: train={out / 'train'} test={out / 'test'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
