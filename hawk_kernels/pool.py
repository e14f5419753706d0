"""Spatial sampling pool: every draft source's laws for the depths of one step -> candidates per depth.

A draft source (horizontal heads, vertical heads via the speculation cache, later Jacobi iterations) hands
the pool one or more `DraftProposal`s: a processed draft law per depth and how many candidates to draw from
it. The pool draws, depth by depth and source by source in a fixed order, *sequentially without
replacement across all sources*: a candidate is drawn from its law with every earlier candidate of that
depth removed (Gumbel-top-k per source with earlier tokens masked). That is exactly the conditional law the
verifier assumes (ops/reference/accept_reject.py), so any mix of sources stays lossless, and no token is
tried twice. Greedy decoding takes each law's top-k instead (the verifier then uses the "match" rule).

The candidate list of a depth: [horizontal draws..., vertical d=1 draws..., vertical d=2 draws..., ...] with
missing ones moved to the end; a forced layout depth gets the row-end token from a one-hot row; depths past
the image end get nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .grid import ImageGrid
from .spec_cache import SpeculationCache

NEG_INF = float("-inf")
DRAFT_STREAM = 16  # Philox streams 16, 17, ... draw the candidates of proposal 0, 1, ... (ops/philox.py)


@dataclass
class DraftProposal:
    source: str  # name used in per-source acceptance statistics
    logq: torch.Tensor  # [B, D, V] processed draft log-probs for depths 1..D
    valid: torch.Tensor  # [B, D] bool
    count: int  # candidates drawn per depth


@dataclass
class DraftContext:
    depth: int  # D: deepest tree depth of this step
    target_offsets: torch.Tensor  # [B, D] body offset of depths 1..D
    horizontal_logq: torch.Tensor | None  # [B, n, V] from the last committed hidden state
    cache: SpeculationCache | None


class DraftSource(Protocol):
    name: str

    def num_candidates(self) -> int: ...  # per depth, fixed so the tree template is static

    def propose(self, ctx: DraftContext) -> list[DraftProposal]: ...


@dataclass
class HorizontalSource:
    count: int = 1
    name: str = "horizontal"

    def num_candidates(self) -> int:
        return self.count

    def propose(self, ctx: DraftContext) -> list[DraftProposal]:
        logq = ctx.horizontal_logq
        batch, heads, vocab = logq.shape
        padded = logq.new_full((batch, ctx.depth, vocab), NEG_INF)
        used = min(heads, ctx.depth)
        padded[:, :used] = logq[:, :used]
        valid = torch.zeros(batch, ctx.depth, dtype=torch.bool, device=logq.device)
        valid[:, :used] = True
        return [DraftProposal(self.name, padded, valid, self.count)]


@dataclass
class VerticalSource:
    vertical_depth: int
    count: int = 1  # per distance
    name: str = "vertical"

    def num_candidates(self) -> int:
        return self.count * self.vertical_depth

    def propose(self, ctx: DraftContext) -> list[DraftProposal]:
        logq, valid = ctx.cache.lookup(ctx.target_offsets)  # [B, D, VSD, V], [B, D, VSD]
        return [DraftProposal(self.name, logq[:, :, d], valid[:, :, d], self.count)
                for d in range(self.vertical_depth)]


@dataclass
class Candidates:
    tokens: torch.Tensor  # [B, D, M] local ids, -1 = no candidate
    rows: torch.Tensor  # [B, D, M] row of `table` each was drawn from
    source: torch.Tensor  # [B, D, M] index into source_names, -1 for forced/none
    table: torch.Tensor  # [B, Q, V] processed draft logits (log-probs) of every law
    source_names: list[str]


class SpatialPool:
    def __init__(self, sources: list[DraftSource], grid: ImageGrid, greedy: bool = False):
        self.sources, self.grid, self.greedy = sources, grid, greedy
        self.source_names = sorted({s.name for s in sources}) + ["layout"]  # layout: forced row-end tokens

    def candidates_per_depth(self) -> int:
        return max(1, sum(s.num_candidates() for s in self.sources))

    def draw(self, ctx: DraftContext, rng=None) -> Candidates:
        """rng: a DeviceRNG (ops/philox.py; proposal i draws from stream DRAFT_STREAM + i) or a torch.Generator."""
        proposals = [p for s in self.sources for p in s.propose(ctx)]
        offsets = ctx.target_offsets
        batch, depth = offsets.shape
        vocab, dev = self.grid.local_vocab_size, offsets.device
        width = self.candidates_per_depth()
        tokens = torch.full((batch, depth, width), -1, dtype=torch.int64, device=dev)
        rows = torch.zeros_like(tokens)
        source = torch.full_like(tokens, -1)
        drawn = torch.zeros(batch, depth, vocab, dtype=torch.bool, device=dev)
        table, slot = [], 0
        live = offsets < self.grid.num_body_tokens
        forced = self.grid.is_forced(offsets) & live
        for index, prop in enumerate(proposals):
            logq = prop.logq.float()
            ok = prop.valid & live & ~forced & ~torch.isnan(logq).any(-1)
            keys = logq if self.greedy else logq + _gumbel(logq.shape, rng, DRAFT_STREAM + index, dev)
            keys = keys.masked_fill(drawn | ~ok[..., None], NEG_INF)
            values, picked = torch.topk(keys, prop.count, dim=-1)
            got = values > NEG_INF
            picked = torch.where(got, picked, -1)
            drawn.scatter_(-1, picked.clamp(min=0), got | drawn.gather(-1, picked.clamp(min=0)))
            tokens[:, :, slot: slot + prop.count] = picked
            rows[:, :, slot: slot + prop.count] = (index * depth + torch.arange(depth, device=dev))[None, :, None]
            source[:, :, slot: slot + prop.count] = torch.where(got, self.source_names.index(prop.source), -1)
            table.append(logq)
            slot += prop.count
        table.append(self._one_hot_row_end(batch, depth, dev))
        forced_row = len(proposals) * depth
        if self.grid.row_end_local is not None:
            tokens[:, :, 0] = torch.where(forced, self.grid.row_end_local, tokens[:, :, 0])
            rows[:, :, 0] = torch.where(forced, forced_row, rows[:, :, 0])
            source[:, :, 0] = torch.where(forced, len(self.source_names) - 1, source[:, :, 0])
        # drawn candidates first, in draw order: rank r is the r-th real candidate of its depth, so the tree's
        # low ranks are never wasted on a source with nothing to offer there (horizontal heads past their
        # depth, an empty speculation cache). Relative order is kept, so the draft law the verifier assumes
        # (earlier valid siblings removed) is unchanged.
        order = torch.argsort((tokens < 0).to(torch.uint8), dim=-1, stable=True)
        tokens, rows, source = tokens.gather(-1, order), rows.gather(-1, order), source.gather(-1, order)
        return Candidates(tokens, rows, source, torch.cat(table, dim=1), self.source_names)

    def _one_hot_row_end(self, batch: int, depth: int, dev) -> torch.Tensor:
        row = torch.full((batch, 1, self.grid.local_vocab_size), NEG_INF, device=dev)
        if self.grid.row_end_local is not None:
            row[..., self.grid.row_end_local] = 0.0
        return row


def _gumbel(shape, rng, stream: int, device) -> torch.Tensor:
    if hasattr(rng, "uniforms"):
        uniform = rng.uniforms(shape, stream).clamp_(min=1e-20)
    else:
        uniform = torch.rand(shape, generator=rng, device=device).clamp_(min=1e-20)
    return -torch.log(-torch.log(uniform))
