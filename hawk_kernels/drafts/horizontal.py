"""Horizontal drafts: head i, fed the last committed hidden state, proposes depth i of this step."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .source import DraftContext, DraftProposal, SourceSetup, StepRecord, copy_rows


@dataclass
class HorizontalState:
    logq: torch.Tensor  # [B, num_heads, V_local] the heads' drafts from the last committed hidden state


@dataclass(frozen=True)
class HorizontalSource:
    num_heads: int  # horizontal heads: DraftHeads' first num_heads heads
    count: int = 1  # candidates per depth
    name: str = "horizontal"

    def num_candidates(self) -> int:
        return self.count

    def new_state(self, setup: SourceSetup) -> HorizontalState:
        vocab = setup.grid.local_vocab_size
        return HorizontalState(torch.zeros(setup.batch, self.num_heads, vocab, device=setup.device))

    def propose(self, state: HorizontalState, ctx: DraftContext) -> list[DraftProposal]:
        logq = state.logq
        batch, heads, vocab = logq.shape
        used = min(heads, ctx.depth)
        padded = torch.nn.functional.pad(logq[:, :used], (0, 0, 0, ctx.depth - used), value=float("-inf"))
        valid = (torch.arange(ctx.depth, device=logq.device) < used)[None].expand(batch, -1)
        return [DraftProposal(self.name, padded, valid, self.count)]

    def record(self, state: HorizontalState, done: StepRecord) -> None:
        """Keep the drafts of the newest committed state; rows with nothing new (finished) keep theirs."""
        valid = done.head_valid
        last = (valid.long().sum(1) - 1).clamp(min=0)
        rows = torch.arange(valid.shape[0], device=valid.device)
        newest = done.head_logq[rows, last, : self.num_heads]
        state.logq.copy_(torch.where(valid.any(1)[:, None, None], newest, state.logq))

    def replace_rows(self, state: HorizontalState, rows: torch.Tensor, fresh: HorizontalState) -> None:
        copy_rows(rows, (state.logq, fresh.logq))
