"""The backbone protocol: the few calls one decode step makes on a frozen image model.

A backbone adapts one model family to the step (engine/step.py). It holds no per-generation state: the KV
cache is made by `new_cache` and passed to every call, so two generations of one decoder can interleave.
Tokens inside the step are *local* ids (grid.py): the image codes 0..V_img-1, then the row-end token.
A family whose image path differs from its text path (Janus: a generation embedding and a generation head)
is one adapter class implementing these calls; the step does not change.
"""
from __future__ import annotations

from typing import Protocol

import torch

from ..grid import ImageGrid
from .kv_cache import SlotKVCache


class ImageBackbone(Protocol):
    grid: ImageGrid
    device: torch.device
    dtype: torch.dtype
    hidden_size: int
    vocab_size: int  # prompt token ids lie in [0, vocab_size)
    max_positions: int | None  # the model's position limit (None: unbounded)

    def new_cache(self, batch_rows: int, capacity: int) -> SlotKVCache:
        """An empty cache for `batch_rows` sequences (CFG branches included) of up to `capacity` tokens."""

    def prefill(self, cache: SlotKVCache, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor) -> torch.Tensor:
        """prompt_ids, prompt_valid [B', L] (left padding) -> hidden state of the last prompt token [B', d]."""

    def embed_image_tokens(self, local_ids: torch.Tensor) -> torch.Tensor:
        """local ids [B, N] -> input embeddings [B, N, d] of those body tokens."""

    def forward_tree(self, cache: SlotKVCache, node_embeds: torch.Tensor, depth: torch.Tensor,
                     ancestor_mask: torch.Tensor) -> torch.Tensor:
        """node_embeds [B', N, d], depth [N], ancestor_mask [N, N] -> hidden states [B', N, d]; each node
        sees its row's cached tokens and its own ancestors, at position next_position + depth."""

    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., d] -> logits over the local vocabulary [..., V_local]."""

    def commit(self, cache: SlotKVCache, path: torch.Tensor, keep: torch.Tensor) -> None:
        """Keep, per row, the first keep[b] nodes of path[b] (ascending node indices) of the last tree."""

    def head_rows(self) -> torch.Tensor | None:
        """[V_img, d]: the linear image head that draft heads may share (None: the family has no linear
        image head, so heads need their own projection)."""

    def token_ids(self, local_ids: torch.Tensor) -> torch.Tensor:
        """local ids -> the ids those tokens have in the output sequences (the model's vocabulary)."""


def is_backbone(obj) -> bool:
    """Whether `obj` already is a backbone adapter (rather than a transformers model to adapt)."""
    return all(callable(getattr(obj, name, None)) for name in ("new_cache", "prefill", "forward_tree",
                                                                "embed_image_tokens", "image_logits"))
