"""Vertical drafts: the speculation cache's drafts for this step's offsets, one law per distance d."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .source import DraftContext, DraftProposal, SourceSetup, StepRecord, copy_rows
from .spec_cache import SpeculationCache


@dataclass(frozen=True)
class VerticalSource:
    vertical_depth: int  # vertical heads: DraftHeads' heads first_head .. first_head + vertical_depth - 1
    first_head: int  # the heads before them are horizontal
    count: int = 1  # candidates per distance and depth
    name: str = "vertical"

    def num_candidates(self) -> int:
        return self.count * self.vertical_depth

    def new_state(self, setup: SourceSetup) -> SpeculationCache:
        grid = setup.grid
        return SpeculationCache(setup.batch, grid.row_stride, self.vertical_depth, grid.local_vocab_size,
                                grid.num_body_tokens, setup.device)

    def propose(self, cache: SpeculationCache, ctx: DraftContext) -> list[DraftProposal]:
        logq, valid = cache.lookup(ctx.target_offsets)  # [B, D, VSD, V], [B, D, VSD]
        return [DraftProposal(self.name, logq[:, :, d], valid[:, :, d], self.count)
                for d in range(self.vertical_depth)]

    def record(self, cache: SpeculationCache, done: StepRecord) -> None:
        """Evict drafts of committed targets, then cache the new states' drafts until their row comes."""
        cache.evict_before(done.frontier)
        heads = done.head_logq[:, :, self.first_head: self.first_head + self.vertical_depth]
        cache.insert(done.head_offsets, heads, done.head_valid)

    def replace_rows(self, cache: SpeculationCache, rows: torch.Tensor, fresh: SpeculationCache) -> None:
        copy_rows(rows, (cache.logq, fresh.logq), (cache.key, fresh.key))
