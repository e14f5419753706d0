"""Vertical drafts: the speculation cache's drafts for this step's offsets, one law per distance d."""
from __future__ import annotations

from dataclasses import dataclass

from .source import DraftContext, DraftProposal


@dataclass(frozen=True)
class VerticalSource:
    vertical_depth: int
    count: int = 1  # candidates per distance and depth
    name: str = "vertical"
    reads_last_tree: bool = False

    def num_candidates(self) -> int:
        return self.count * self.vertical_depth

    def propose(self, ctx: DraftContext) -> list[DraftProposal]:
        logq, valid = ctx.drafts.spec_cache.lookup(ctx.target_offsets)  # [B, D, VSD, V], [B, D, VSD]
        return [DraftProposal(self.name, logq[:, :, d], valid[:, :, d], self.count)
                for d in range(self.vertical_depth)]
