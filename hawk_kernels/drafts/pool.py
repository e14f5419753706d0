"""Spatial sampling pool: every draft source's laws for the depths of one step -> candidates per depth.

The pool draws, depth by depth and law by law in a fixed order, *sequentially without replacement across all
sources*: a candidate is drawn from its law with every earlier candidate of that depth removed (Gumbel-top-k
per law with earlier tokens masked). That is exactly the conditional law the verifier assumes
(ops/reference/accept_reject.py), so any mix of sources stays lossless, and no token is tried twice. Greedy
decoding takes each law's top-k instead (the verifier then uses the "match" rule).

The candidate list of a depth: [horizontal draws..., vertical d=1 draws..., vertical d=2 draws..., ...] with
missing ones moved to the end; a forced layout depth gets the row-end token from a one-hot law; depths past
the image end get nothing. Law q of the draft table is proposal q // D at depth q % D; the last law is the
one-hot row-end.

Noise: proposal i draws with Gumbel noise from Philox stream STREAM_FIRST_DRAFT + i at the step's offset, fresh
every step; a proposal that brings its own `noise` draws with it instead (the Jacobi source's coupled noise,
keyed by absolute offset: coupling.py; at most one such proposal, since two laws sharing one noise at a depth
would not be drawn independently). Under the coupled verification rule (engine/step.py, `verify="coupled"`) the
step hands the pool the noise the target samples with, and every proposal draws with it: there the verifier
commits the target's own sample whatever the candidates are, so drawing them is free to follow the target's noise
(the more alike a candidate's law and the target's, the likelier they pick the same token).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..grid import ImageGrid
from ..ops.philox import STREAM_FIRST_DRAFT
from .source import DraftContext, DraftSource
from .coupling import gumbel_from_uniform

NEG_INF = float("-inf")
LAYOUT = "layout"  # the statistics name of forced row-end tokens


@dataclass
class Candidates:
    tokens: torch.Tensor  # [B, D, M] local ids, -1 = no candidate
    law: torch.Tensor  # [B, D, M] the draft-table law each was drawn from
    source: torch.Tensor  # [B, D, M] index into source_names, -1 for none
    table: torch.Tensor  # [B, Q, V] processed draft log-probs of every law


class SpatialPool:
    def __init__(self, sources: tuple[DraftSource, ...], grid: ImageGrid):
        self.sources, self.grid = tuple(sources), grid
        self.source_names = tuple(sorted({s.name for s in sources})) + (LAYOUT,)

    def candidates_per_depth(self) -> int:
        return max(1, sum(s.num_candidates() for s in self.sources))

    def draw(self, ctx: DraftContext, rng, noise: torch.Tensor | None = None) -> Candidates:
        """Each source proposes from its own state (ctx.state_of); rng: a DeviceRNG (ops/philox.py; proposal i
        draws from stream STREAM_FIRST_DRAFT + i) or a torch.Generator (tests). noise: [B, D, V] Gumbel noise every
        proposal draws with (the coupled rule's: the target's own noise at these offsets), or None."""
        greedy = ctx.greedy
        proposals = [p for s in self.sources for p in s.propose(ctx.state_of(s), ctx)]
        if noise is not None:
            proposals = [dataclasses.replace(p, noise=noise) for p in proposals]
        elif sum(p.noise is not None for p in proposals) > 1:
            raise ValueError("sources: at most one proposal may draw with noise of its own (coupling.py)")
        offsets = ctx.target_offsets
        batch, depth = offsets.shape
        vocab, dev = self.grid.local_vocab_size, offsets.device
        width = self.candidates_per_depth()
        tokens = torch.full((batch, depth, width), -1, dtype=torch.int64, device=dev)
        law = torch.zeros_like(tokens)
        source = torch.full_like(tokens, -1)
        drawn = torch.zeros(batch, depth, vocab, dtype=torch.bool, device=dev)
        table, slot = [], 0
        live = offsets < self.grid.num_body_tokens
        forced = self.grid.is_forced(offsets) & live
        depth_laws = torch.arange(depth, device=dev)[None, :, None]
        for index, prop in enumerate(proposals):
            logq = prop.logq.float()
            ok = prop.valid & live & ~forced & ~torch.isnan(logq).any(-1)
            keys = logq if greedy else logq + _noise(prop, rng, STREAM_FIRST_DRAFT + index)
            keys = keys.masked_fill(drawn | ~ok[..., None], NEG_INF)
            values, picked = torch.topk(keys, prop.count, dim=-1)
            got = values > NEG_INF
            picked = torch.where(got, picked, -1)
            drawn.scatter_(-1, picked.clamp(min=0), got | drawn.gather(-1, picked.clamp(min=0)))
            tokens[:, :, slot: slot + prop.count] = picked
            law[:, :, slot: slot + prop.count] = index * depth + depth_laws
            source[:, :, slot: slot + prop.count] = torch.where(got, self.source_names.index(prop.source), -1)
            table.append(logq)
            slot += prop.count
        table.append(self._one_hot_row_end(batch, dev))
        if self.grid.row_end_local is not None:
            forced_law = len(proposals) * depth
            tokens[:, :, 0] = torch.where(forced, self.grid.row_end_local, tokens[:, :, 0])
            law[:, :, 0] = torch.where(forced, forced_law, law[:, :, 0])
            source[:, :, 0] = torch.where(forced, len(self.source_names) - 1, source[:, :, 0])
        # drawn candidates first, in draw order: rank r is the r-th real candidate of its depth, so the tree's
        # low ranks are never wasted on a source with nothing to offer there (horizontal heads past their
        # depth, an empty speculation cache). Relative order is kept, so the draft law the verifier assumes
        # (earlier valid siblings removed) is unchanged.
        order = torch.argsort((tokens < 0).to(torch.uint8), dim=-1, stable=True)
        return Candidates(tokens.gather(-1, order), law.gather(-1, order), source.gather(-1, order),
                          torch.cat(table, dim=1))

    def _one_hot_row_end(self, batch: int, dev) -> torch.Tensor:
        row = torch.full((batch, 1, self.grid.local_vocab_size), NEG_INF, device=dev)
        if self.grid.row_end_local is not None:
            row[..., self.grid.row_end_local] = 0.0
        return row


def _noise(prop, rng, stream: int) -> torch.Tensor:
    """[B, D, V] Gumbel noise of one proposal: its own (e.g. coupled, keyed by absolute offset) or the step's."""
    if prop.noise is None:
        return _gumbel(prop.logq.shape, rng, stream, prop.logq.device)
    return prop.noise


def _gumbel(shape, rng, stream: int, device) -> torch.Tensor:
    if isinstance(rng, torch.Generator):
        return gumbel_from_uniform(torch.rand(shape, generator=rng, device=device))
    return gumbel_from_uniform(rng.uniforms(shape, stream))
