"""The sequences head training reads: `TensorSequences` (held in memory) or `ShardSequences` (a `hawk distill`
directory, read shard by shard on demand, so memory does not grow with the data set), and the fixed held-out
split (`split_indices`, keyed by SPLIT_SEED, never by the training seed)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..checks import as_int
from .shards import SHARD_KEYS, load_manifest, read_shard, shard_path

SPLIT_SEED = 20251030  # the held-out split never depends on the training seed


class TensorSequences:
    """Sequences held in memory: [N, L] integer ids whose image body starts at `body_start`; prompts left-padded
    with `pad_id` (None: every position is real)."""

    def __init__(self, sequences: torch.Tensor, body_start: int, pad_id: int | None = None):
        if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2 or sequences.dtype.is_floating_point \
                or sequences.dtype == torch.bool or not len(sequences):
            raise ValueError(f"sequences: expected integer ids [N > 0, L], got {getattr(sequences, 'dtype', None)} "
                             f"{tuple(getattr(sequences, 'shape', ()))}")
        self.body_start = as_int("body_start", body_start, 0, sequences.shape[1] - 1)
        self.sequences = sequences.long()
        leading = torch.zeros(len(sequences), dtype=torch.int64) if pad_id is None else \
            ((self.sequences[:, :body_start] != pad_id).cumsum(-1) == 0).sum(-1)
        self.prompt_lengths = body_start - leading

    def __len__(self) -> int:
        return self.sequences.shape[0]

    def rows(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (sequences [b, L], prompt lengths [b]) of `indices`."""
        return self.sequences[indices], self.prompt_lengths[indices]


class ShardSequences:
    """A `hawk distill` directory, read shard by shard on demand (two shards cached): memory does not grow
    with the number of shards."""

    def __init__(self, data_dir):
        from safetensors import safe_open

        self.data_dir, self.manifest = Path(data_dir), load_manifest(data_dir)
        self.body_start = self.manifest["body_start"]
        counts = []
        for shard in range(self.manifest["num_shards"]):
            try:
                with safe_open(str(shard_path(self.data_dir, shard)), framework="pt") as f:
                    shapes = {key: f.get_slice(key).get_shape() for key in SHARD_KEYS}
            except Exception as exc:  # any malformed file: name it
                raise ValueError(f"data: shard {shard_path(self.data_dir, shard).name} is unreadable ({exc})") from None
            shape = shapes["sequences"]
            if len(shape) != 2 or shape[0] == 0 or shape[1] != self.manifest["sequence_length"] \
                    or shapes["prompt_length"] != [shape[0]]:
                raise ValueError(f"data: shard {shard} holds sequences {tuple(shape)} and prompt_length "
                                 f"{tuple(shapes['prompt_length'])}, expected [n > 0, "
                                 f"{self.manifest['sequence_length']}] and [n]")
            counts.append(shape[0])
        self.starts = torch.tensor([0] + counts).cumsum(0)
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def rows(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shards = torch.searchsorted(self.starts, indices, right=True) - 1
        sequences = torch.empty(len(indices), self.manifest["sequence_length"], dtype=torch.int64)
        lengths = torch.empty(len(indices), dtype=torch.int64)
        for shard in shards.unique().tolist():
            where = shards == shard
            local = indices[where] - self.starts[shard]
            tensors = self._shard(shard)
            sequences[where], lengths[where] = tensors["sequences"][local], tensors["prompt_length"][local]
        return sequences, lengths

    def _shard(self, shard: int) -> dict:
        if shard not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[shard] = read_shard(self.data_dir, shard, self.manifest["sequence_length"])
        return self._cache[shard]


def split_indices(num: int, eval_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) sequence indices, fixed by SPLIT_SEED."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(SPLIT_SEED))
    held = min(num - 1, math.ceil(eval_fraction * num)) if eval_fraction > 0 else 0
    return order[held:].sort().values, order[:held].sort().values
