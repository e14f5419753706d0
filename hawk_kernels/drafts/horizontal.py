"""Horizontal drafts: head i, fed the last committed hidden state, proposes depth i of this step."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .source import DraftContext, DraftProposal


@dataclass(frozen=True)
class HorizontalSource:
    count: int = 1  # candidates per depth
    name: str = "horizontal"
    reads_last_tree: bool = False

    def num_candidates(self) -> int:
        return self.count

    def propose(self, ctx: DraftContext) -> list[DraftProposal]:
        logq = ctx.drafts.horizontal_logq
        batch, heads, vocab = logq.shape
        used = min(heads, ctx.depth)
        padded = torch.nn.functional.pad(logq[:, :used], (0, 0, 0, ctx.depth - used), value=float("-inf"))
        valid = (torch.arange(ctx.depth, device=logq.device) < used)[None].expand(batch, -1)
        return [DraftProposal(self.name, padded, valid, self.count)]
