"""Adapter over any transformers causal LM with a KV cache: prefill, one tree forward with an additive 4-D
mask, and compaction of the cache to the accepted path. Nothing is pinned on the model (no forks, no
attributes): masks, positions and the cache are passed as arguments.

The cache is a static, slot-addressed `SlotKVCache` (kv_cache.py): fixed shapes and device-held positions,
so the tree forward and the commit never sync with the host and a whole step can be captured in a CUDA
graph. Rows may be padded (left-padded prompts, rows that accepted fewer nodes than others); every mask is
built from the cache's per-row bookkeeping. Logits are computed only on the local vocabulary (image codes
+ row-end) from the lm_head rows, which also bypasses wrappers that suppress image tokens in `forward`
(Chameleon).
"""
from __future__ import annotations

import torch

from .kv_cache import SlotKVCache


class Backbone:
    def __init__(self, model, local_vocab_ids: torch.Tensor):
        self.model = model
        self.decoder = model.get_decoder()
        self.sliding_window = _attention_window(model.config)
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError("model: expected a causal LM with an output embedding (lm_head)")
        self.local_rows = head.weight.detach()[local_vocab_ids.to(head.weight.device)]  # [V_local, d]
        bias = getattr(head, "bias", None)
        self.local_bias = None if bias is None else bias.detach()[local_vocab_ids.to(bias.device)]
        self.cache: SlotKVCache | None = None

    @property
    def device(self) -> torch.device:
        return self.local_rows.device

    @property
    def dtype(self) -> torch.dtype:
        return self.local_rows.dtype

    def local_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden @ self.local_rows.T
        return logits if self.local_bias is None else logits + self.local_bias

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        """bool [B', q, k] -> additive float mask [B', 1, q, k] (0 / finfo.min): bool 4-D masks are unsafe."""
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)[:, None]

    @torch.no_grad()
    def prefill(self, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor, capacity: int) -> torch.Tensor:
        """prompt_ids, prompt_valid [B', L] (left padding) -> hidden state of the last prompt token [B', d].
        Allocates a fresh cache of `capacity` slots (prompt + every token and tree node to come)."""
        if self.sliding_window is not None and self.sliding_window < capacity:
            raise NotImplementedError(f"model: sliding_window={self.sliding_window} is shorter than the "
                                      f"{capacity} cache slots this image needs; windowed masks are not supported")
        self.cache = SlotKVCache(prompt_ids.shape[0], capacity, self.device)
        self.cache.begin_prefill(prompt_valid)
        positions = (prompt_valid.long().cumsum(-1) - 1).clamp(min=0)
        out = self.decoder(input_ids=prompt_ids, attention_mask=self._additive(self.cache.prefill_mask(prompt_valid)),
                           position_ids=positions, past_key_values=self.cache, use_cache=True)
        return out.last_hidden_state[:, -1]

    @torch.no_grad()
    def forward_tree(self, node_ids: torch.Tensor, depth: torch.Tensor, ancestor_mask: torch.Tensor) -> torch.Tensor:
        """node_ids [B', N] global ids, depth [N], ancestor_mask [N, N] -> hidden [B', N, d].
        Each node sees its row's committed tokens and its own ancestors, at position next_position + depth."""
        self.cache.begin_tree()
        positions = self.cache.next_position[:, None] + depth[None]
        out = self.decoder(input_ids=node_ids, attention_mask=self._additive(self.cache.tree_mask(ancestor_mask)),
                           position_ids=positions, past_key_values=self.cache, use_cache=True)
        return out.last_hidden_state

    @torch.no_grad()
    def commit(self, path: torch.Tensor, keep_count: torch.Tensor) -> None:
        """Keep, per row, the first keep_count[b] nodes of path[b] (node indices, ascending, fixed width) of
        the last tree forward; the other tree entries become dead slots. path [B', W], keep_count [B']."""
        self.cache.commit(path, keep_count)


def _attention_window(config) -> int | None:
    """The sliding window (None: full attention). Masks here are full 4-D tensors over every cache slot, so a
    window is only exact when it covers the whole sequence (checked at prefill); other mixers are refused."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = set(getattr(config, "layer_types", None) or ())
    if layer_types - {"full_attention", "sliding_attention"}:
        raise NotImplementedError(f"model: only attention layers are supported, got layer_types={sorted(layer_types)}")
    window = getattr(config, "sliding_window", None)
    return int(window) if window else None
