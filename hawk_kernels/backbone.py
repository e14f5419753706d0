"""Adapter over any transformers causal LM with a KV cache: prefill, one tree forward with an additive 4-D
mask, and compaction of the cache to the accepted path. Nothing is pinned on the model (no forks, no
attributes): masks, positions and the cache are passed as arguments.

Rows may be padded (left-padded prompts, rows that accepted fewer nodes than others): `kv_valid` marks the
cache slots a row really has, and every mask is built from it. Logits are computed only on the local
vocabulary (image codes + row-end) from the lm_head rows, which also bypasses wrappers that suppress image
tokens in `forward` (Chameleon).
"""
from __future__ import annotations

import torch
from transformers import DynamicCache


class Backbone:
    def __init__(self, model, local_vocab_ids: torch.Tensor):
        self.model = model
        self.decoder = model.get_decoder()
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError("model: expected a causal LM with an output embedding (lm_head)")
        self.local_rows = head.weight.detach()[local_vocab_ids.to(head.weight.device)]  # [V_local, d]
        bias = getattr(head, "bias", None)
        self.local_bias = None if bias is None else bias.detach()[local_vocab_ids.to(bias.device)]
        self.cache: DynamicCache | None = None
        self.kv_valid: torch.Tensor | None = None  # [B', T] bool
        self.next_position: torch.Tensor | None = None  # [B'] position id of the next token

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
    def prefill(self, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor) -> torch.Tensor:
        """prompt_ids, prompt_valid [B', L] (left padding) -> hidden state of the last prompt token [B', d]."""
        length = prompt_ids.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=self.device).tril()
        allowed = causal[None] & prompt_valid[:, None, :]
        allowed |= torch.eye(length, dtype=torch.bool, device=self.device)[None]  # pad rows see themselves
        positions = (prompt_valid.long().cumsum(-1) - 1).clamp(min=0)
        self.cache = DynamicCache(config=self.model.config)
        out = self.decoder(input_ids=prompt_ids, attention_mask=self._additive(allowed), position_ids=positions,
                           past_key_values=self.cache, use_cache=True)
        self.kv_valid = prompt_valid.clone()
        self.next_position = prompt_valid.long().sum(-1)
        return out.last_hidden_state[:, -1]

    @torch.no_grad()
    def forward_tree(self, node_ids: torch.Tensor, depth: torch.Tensor, ancestor_mask: torch.Tensor) -> torch.Tensor:
        """node_ids [B', N] global ids, depth [N], ancestor_mask [N, N] -> hidden [B', N, d].
        Each node sees the valid committed prefix and its own ancestors, at position next_position + depth."""
        rows, nodes = node_ids.shape
        past = self.kv_valid[:, None, :].expand(rows, nodes, -1)
        allowed = torch.cat([past, ancestor_mask[None].expand(rows, -1, -1)], dim=-1)
        positions = self.next_position[:, None] + depth[None]
        out = self.decoder(input_ids=node_ids, attention_mask=self._additive(allowed), position_ids=positions,
                           past_key_values=self.cache, use_cache=True)
        return out.last_hidden_state

    @torch.no_grad()
    def commit(self, path: torch.Tensor, keep_count: torch.Tensor) -> None:
        """Keep, per row, the first keep_count[b] nodes of path[b] (node indices, ascending) of the last tree
        forward; drop the other tree entries. path, keep_count: [B'] rows of the backbone batch."""
        rows = path.shape[0]
        past = self.kv_valid.shape[1]
        width = int(keep_count.max())  # host sync: the reference decoder tolerates it (engine/ avoids it)
        slot = torch.arange(width, device=self.device)
        kept = slot[None] < keep_count[:, None]
        chosen = torch.where(kept, path[:, :width].clamp(min=0), 0) + past
        index = torch.cat([torch.arange(past, device=self.device).expand(rows, -1), chosen], dim=1)
        for layer in self.cache.layers:
            if getattr(layer, "is_sliding", False):
                raise NotImplementedError("model: sliding-window cache layers are not supported")
            gather = index[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
            layer.keys = layer.keys.gather(2, gather)
            layer.values = layer.values.gather(2, gather)
        self.kv_valid = torch.cat([self.kv_valid, kept], dim=1)
        self.next_position = self.next_position + keep_count
