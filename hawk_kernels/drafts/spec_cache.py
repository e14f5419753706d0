"""Speculation cache: vertical drafts, made when their source row was committed, kept until decoding
reaches the position they predict (docs/method.md §1).

Keyed by absolute body offset of the *target*: a vertical head at distance d, fed the hidden state of offset
j, predicts offset j + 1 + S*d. Entries whose target is already committed are evicted, so at most S*d
entries of distance d are alive: S*VSD*(VSD+1)/2 in all. Storage is one ring per distance of S*VSD slots
(indexed by target % ring), holding the processed draft log-probs, the exact law candidates are drawn from.
Every update has fixed shapes (skipped entries go to one extra sink slot no lookup reads), so it runs inside
a captured CUDA graph.
"""
from __future__ import annotations

import torch


class SpeculationCache:
    def __init__(self, batch: int, row_stride: int, vertical_depth: int, vocab: int, num_body_tokens: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.row_stride, self.vertical_depth, self.num_body_tokens = row_stride, vertical_depth, num_body_tokens
        self.ring = max(1, row_stride * vertical_depth)
        # slot `ring` is the sink for skipped writes; lookups index target % ring and never read it
        self.logq = torch.zeros(batch, vertical_depth, self.ring + 1, vocab, device=device, dtype=dtype)
        self.key = torch.full((batch, vertical_depth, self.ring + 1), -1, device=device, dtype=torch.int64)

    @property
    def capacity(self) -> int:
        """Largest number of live entries: S * VSD * (VSD + 1) / 2."""
        return self.row_stride * self.vertical_depth * (self.vertical_depth + 1) // 2

    def num_entries(self) -> torch.Tensor:
        return (self.key[:, :, : self.ring] >= 0).sum(dim=(1, 2))  # [B]

    def evict_before(self, frontier: torch.Tensor) -> None:
        """frontier [B]: first uncommitted body offset; drop entries for committed targets."""
        self.key.masked_fill_(self.key < frontier[:, None, None], -1)

    def insert(self, source_offsets: torch.Tensor, logq: torch.Tensor, valid: torch.Tensor) -> None:
        """source_offsets [B, T] offset j of each hidden state (-1 = the prompt's last token);
        logq [B, T, VSD, V] processed vertical drafts; valid [B, T] (False rows are skipped).
        Call evict_before(frontier) first: live targets then stay distinct modulo the ring."""
        if self.vertical_depth == 0:
            return
        batch, tokens = source_offsets.shape
        distance = torch.arange(1, self.vertical_depth + 1, device=source_offsets.device)
        target = source_offsets[:, :, None] + 1 + self.row_stride * distance  # [B, T, VSD]
        keep = valid[:, :, None] & (target < self.num_body_tokens)
        b_idx = torch.arange(batch, device=target.device)[:, None, None].expand_as(target)
        d_idx = (distance - 1)[None, None, :].expand_as(target)
        slot = torch.where(keep, target.remainder(self.ring), self.ring)
        self.logq[b_idx, d_idx, slot] = logq.to(self.logq.dtype)
        self.key[b_idx, d_idx, slot] = torch.where(keep, target, -1)

    def lookup(self, target_offsets: torch.Tensor):
        """target_offsets [B, D] -> (logq [B, D, VSD, V], valid [B, D, VSD])."""
        batch, depth = target_offsets.shape
        slot = target_offsets.remainder(self.ring)  # [B, D]
        b_idx = torch.arange(batch, device=slot.device)[:, None, None]
        d_idx = torch.arange(self.vertical_depth, device=slot.device)[None, None, :]
        s_idx = slot[:, :, None]
        valid = self.key[b_idx, d_idx, s_idx] == target_offsets[:, :, None]
        return self.logq[b_idx, d_idx, s_idx], valid
