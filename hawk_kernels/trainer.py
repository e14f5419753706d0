"""Deprecated: the head trainer moved to `hawk_kernels.training` (head_trainer.py, sequences.py). This alias goes
in the next release."""
import warnings

from .training.head_trainer import CHECKPOINTS, HeadMetrics, TrainConfig, evaluate_heads, train_heads
from .training.sequences import SPLIT_SEED, ShardSequences, TensorSequences, split_indices

__all__ = ["CHECKPOINTS", "SPLIT_SEED", "HeadMetrics", "ShardSequences", "TensorSequences", "TrainConfig",
           "evaluate_heads", "split_indices", "train_heads"]

warnings.warn("hawk_kernels.trainer is deprecated: import train_heads, TrainConfig, TensorSequences and "
              "ShardSequences from hawk_kernels.training", DeprecationWarning, stacklevel=2)
