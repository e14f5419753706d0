"""Training draft heads for a frozen model, and shaping their trees:

- `distillation`: training sequences sampled by the model itself, or encoded from a user's images (`distill`,
  `distill_images`), written as resumable shards (`shards`: the on-disk format);
- `sequences`: what the trainer reads (`TensorSequences` in memory, `ShardSequences` from a `hawk distill`
  directory) and the fixed held-out split;
- `head_trainer`: the one trainer loop (`train_heads`, `evaluate_heads`, `TrainConfig`): streaming,
  DistributedDataParallel under torchrun, checkpoints that resume exactly;
- `batch_losses`: what one batch computes (the frozen backbone's hidden states, each head's targets, losses);
- `tree_calibration`: acceptance measured per (depth, rank) into the tree rates saved beside the heads.

    from hawk_kernels.training import ShardSequences, TrainConfig, train_heads
    train_heads(pipe.backbone(grid), heads, ShardSequences("data"), grid, TrainConfig(epochs=2))
"""
from __future__ import annotations

import importlib
import warnings

from .distillation import distill, distill_images
from .head_trainer import HeadMetrics, TrainConfig, evaluate_heads, train_heads
from .sequences import ShardSequences, TensorSequences
from .tree_calibration import calibrate

__all__ = ["HeadMetrics", "ShardSequences", "TensorSequences", "TrainConfig", "calibrate", "distill",
           "distill_images", "evaluate_heads", "train_heads"]

# what `hawk_kernels.training` held before it became this package (one batch's computations): deprecated here
_MOVED = {name: "batch_losses" for name in ("backbone_hidden", "head_targets", "head_losses", "shared_rows")}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where = f"{__name__}.{_MOVED[name]}"
    warnings.warn(f"hawk_kernels.training.{name} moved to {where}.{name}; the old name goes in the next release",
                  DeprecationWarning, stacklevel=2)
    value = globals()[name] = getattr(importlib.import_module(where), name)  # warned once
    return value
