"""Jacobi drafts: the target's own predictions from the previous tree forward, with no trained heads.

A tree forward computes, at every node, the target law of the next position given that node's (speculative)
path. After the verifier commits, the nodes past the accepted ones still hold predictions for positions the
next step drafts: along the accepted path's continuation (TreeTemplate.continuations: the first-child chain
below the last accepted node, or below its deepest ancestor whose chain reaches that far), conditioned on the
then-speculative prefix (the rejected candidate at the bonus position included). That is a Jacobi iteration
(SJD, docs/method.md §7): position j's draft law at step t is the target's prediction for j at step t - 1.

`JacobiMemory` (in JacobiState, the source's per-generation state) keeps those laws in a ring keyed by absolute
body offset, written from each step's tree (TreeRecord) after its commit (`absorb`, JacobiSource.record):
  * offsets the last step committed: the exact target law there (the accepted path's own logits), and the
    committed token -- what a position one row below reads as its initial law;
  * offsets past the new frontier: the chain's predictions. An offset keeps its latest prediction until it is
    committed, so a prediction survives a step whose chain did not reach it.

`JacobiSource` proposes, for each depth of the step (absolute offset j), the latest prediction for j, or where
none exists an initial law (`init`; `InitialLawSource` offers it as a separate, lower-ranked candidate, reading
the memory of the JacobiSource it names):
  "uniform"  SJD-PAC: uniform over the image codes (acceptance min(1, V_img * p(x)); it dominates SJD's random
             token with a one-hot law, whose acceptance is p(x) for the same uniformly drawn x);
  "above"    the target law that was committed one row above (offset j - S), uniform in the first row;
  "repeat"   one-hot on the token committed one row above (SJD's vertical repeat), uniform in the first row.
Every law is a function of positions < j, and the candidate is drawn from it by the pool, with noise keyed by
j when `coupled` (coupling.py explains why that stays exact), so the verifier's exactness condition holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..grid import ImageGrid
from .coupling import CoupledNoise
from .source import DraftContext, DraftProposal, SourceSetup, StepRecord, TreeRecord, copy_rows

INITS = ("uniform", "above", "repeat")
NEG_INF = float("-inf")


@dataclass
class JacobiMemory:
    """Per-generation ring of target laws and committed tokens keyed by absolute body offset. Slot R (the last)
    is a sink for skipped writes that lookups never read."""

    laws: torch.Tensor  # [B, R + 1, V] processed target logits last computed for an offset
    law_key: torch.Tensor  # [B, R + 1] offset each law slot holds (-1: none)
    tokens: torch.Tensor  # [B, R + 1] committed local id at an offset
    token_key: torch.Tensor  # [B, R + 1]
    continuation: torch.Tensor  # [N, D + 1] TreeBuffers.continuation of the decoder's template
    uniform: torch.Tensor  # [V] logits of the uniform law over the image codes (row end: -inf), built once
    grid: ImageGrid

    @classmethod
    def allocate(cls, batch: int, grid: ImageGrid, continuation: torch.Tensor, dtype: torch.dtype) -> "JacobiMemory":
        """Ring of S + 2 (D + 1) slots: live offsets span one row above the frontier to D past it, and a step
        writes at most D + 1 offsets from the previous frontier on."""
        ring = grid.row_stride + 2 * continuation.shape[1]
        dev = continuation.device
        # built here, outside the step: a step never writes a host value into device memory
        uniform = torch.zeros(grid.local_vocab_size, device=dev)
        if grid.row_end_local is not None:
            uniform[grid.row_end_local:grid.row_end_local + 1].fill_(NEG_INF)
        return cls(laws=torch.zeros(batch, ring + 1, grid.local_vocab_size, dtype=dtype, device=dev),
                   law_key=torch.full((batch, ring + 1), -1, dtype=torch.int64, device=dev),
                   tokens=torch.zeros(batch, ring + 1, dtype=torch.int64, device=dev),
                   token_key=torch.full((batch, ring + 1), -1, dtype=torch.int64, device=dev),
                   continuation=continuation, uniform=uniform, grid=grid)

    @property
    def ring(self) -> int:
        return self.law_key.shape[1] - 1

    def slots(self, offsets: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        """Ring slot of each offset; the sink where not ok or outside the body."""
        inside = ok & (offsets >= 0) & (offsets < self.grid.num_body_tokens)
        return torch.where(inside, offsets.remainder(self.ring), self.ring)

    def law_at(self, offsets: torch.Tensor):
        """offsets [B, D] -> (laws [B, D, V], found [B, D]). The sink is never found (its key -1 would match
        offset -1, and it holds whatever skipped writes left: maybe a law of a later position)."""
        slot = self.slots(offsets, torch.ones_like(offsets, dtype=torch.bool))
        found = (self.law_key.gather(1, slot) == offsets) & (slot < self.ring)
        return self.laws.gather(1, slot[..., None].expand(-1, -1, self.laws.shape[-1])), found

    def token_at(self, offsets: torch.Tensor):
        """offsets [B, D] -> (committed tokens [B, D], found [B, D]); the sink is never found."""
        slot = self.slots(offsets, torch.ones_like(offsets, dtype=torch.bool))
        return self.tokens.gather(1, slot), (self.token_key.gather(1, slot) == offsets) & (slot < self.ring)


def absorb(memory: JacobiMemory, last: TreeRecord) -> None:
    """Write a step's tree laws (the accepted path's and its continuation's) and committed tokens into the
    ring."""
    batch, vocab = last.path.shape[0], last.target_logits.shape[-1]
    last_node = last.path.gather(1, last.accept_len[:, None]).clamp(min=0)  # [B, 1]
    nodes = memory.continuation[last_node[:, 0]]  # [B, D + 1]: the node feeding each depth, -1 none
    tokens = last.node_tokens.gather(1, nodes.clamp(min=0))
    depth = torch.arange(nodes.shape[1], device=nodes.device)[None]
    # a chain stops at its first missing node or candidate (the root's token is the committed one)
    usable = (nodes >= 0) & ((tokens >= 0) | (depth == 0))
    usable = torch.cumprod(usable.long(), 1).bool()
    offsets = last.next_offsets.gather(1, nodes.clamp(min=0))  # depth k predicts frontier + k
    laws = last.target_logits.gather(1, nodes.clamp(min=0)[..., None].expand(-1, -1, vocab))
    slot = memory.slots(offsets, usable)
    rows = torch.arange(batch, device=slot.device)[:, None]
    memory.laws[rows, slot] = laws.to(memory.laws.dtype)
    memory.law_key[rows, slot] = torch.where(slot < memory.ring, offsets, -1)
    # committed tokens: path node k (1..L) sits at frontier - 1 + k, the bonus at frontier + L
    accepted = last.accept_len[:, None]
    committed = torch.where(depth <= accepted, tokens, last.bonus[:, None])
    token_offsets = last.next_offsets[:, :1] - 1 + depth
    token_slot = memory.slots(token_offsets, (depth >= 1) & (depth <= accepted + 1) & (last.next_offsets[:, :1] >= 0)
                              & (committed >= 0))
    memory.tokens[rows, token_slot] = committed.clamp(min=0)  # the sink too holds a valid id (first-row lookups)
    memory.token_key[rows, token_slot] = torch.where(token_slot < memory.ring, token_offsets, -1)


@dataclass
class JacobiState:
    memory: JacobiMemory
    noise: CoupledNoise | None  # position-keyed Gumbel noise (coupled sources), filled from the seed


@dataclass(frozen=True)
class JacobiSource:
    """Drafts the latest prediction for each depth's offset (module docstring), or where none exists the initial
    law `init` (INITS; None: no candidate there). count: candidates per depth; coupled: draw with noise keyed by
    absolute offset (coupling.py) rather than by step; first_depth: the shallowest depth drafted. Depth 1's
    prediction is conditioned on the candidate the verifier just rejected at the bonus position, so beside
    horizontal heads (which marginalise over that token) hawk+jacobi leaves depth 1 to them (benchmarks/NOTES.md,
    Jacobi drafts). Its state: the JacobiMemory, which absorbs each step's tree after the commit."""

    count: int = 1
    init: str | None = "above"
    coupled: bool = True
    first_depth: int = 1
    name: str = "jacobi"

    def __post_init__(self):
        _check(self.init, self.count, self.first_depth, allow_no_init=True)

    def num_candidates(self) -> int:
        return self.count

    def new_state(self, setup: SourceSetup) -> JacobiState:
        memory = JacobiMemory.allocate(setup.batch, setup.grid, setup.continuation, setup.logits_dtype)
        noise = None
        if self.coupled:  # keyed by each image's seed and position: nothing depends on which step runs first
            noise = CoupledNoise(setup.batch, setup.grid.local_vocab_size, setup.rng, setup.device)
        return JacobiState(memory, noise)

    def propose(self, state: JacobiState, ctx: DraftContext) -> list[DraftProposal]:
        offsets = ctx.target_offsets  # [B, D]
        predicted, found = state.memory.law_at(offsets)
        valid = _from_depth(offsets, self.first_depth)
        if self.init is None:
            logq, valid = predicted.float(), valid & found
        else:
            logq = torch.where(found[..., None], predicted.float(), initial_law(state.memory, offsets, self.init))
        own = state.noise is not None and not ctx.greedy and not ctx.shared_noise  # else drawn for nothing
        noise = state.noise.gumbel(offsets) if own else None
        return [DraftProposal(self.name, logq, valid, self.count, noise)]

    def record(self, state: JacobiState, done: StepRecord) -> None:
        if done.tree is not None:
            absorb(state.memory, done.tree)

    def replace_rows(self, state: JacobiState, rows: torch.Tensor, fresh: JacobiState) -> None:
        """The memory's rows, and the coupled noise's keys (a view of the DeviceRNG's per-row seeds, written twice
        with the same values; a copy where the noise was keyed by a torch.Generator)."""
        mine, theirs = state.memory, fresh.memory
        copy_rows(rows, (mine.laws, theirs.laws), (mine.law_key, theirs.law_key), (mine.tokens, theirs.tokens),
                  (mine.token_key, theirs.token_key))
        if state.noise is not None:
            copy_rows(rows, (state.noise.seeds, fresh.noise.seeds))


@dataclass(frozen=True)
class InitialLawSource:
    """The initial law `init` (INITS) at every depth from first_depth, with the step's noise: a Jacobi mode ranks
    it after other sources (hawk+jacobi: after the heads), where the prediction is missing or stale. It reads the
    JacobiMemory of `memory_of`, a JacobiSource earlier in the same pool, and keeps no state of its own."""

    memory_of: JacobiSource
    init: str = "above"
    count: int = 1
    first_depth: int = 1
    name: str = "jacobi_init"

    def __post_init__(self):
        _check(self.init, self.count, self.first_depth, allow_no_init=False)

    def num_candidates(self) -> int:
        return self.count

    def new_state(self, setup: SourceSetup) -> None:
        return None

    def propose(self, state: None, ctx: DraftContext) -> list[DraftProposal]:
        offsets = ctx.target_offsets
        law = initial_law(ctx.state_of(self.memory_of).memory, offsets, self.init)
        return [DraftProposal(self.name, law, _from_depth(offsets, self.first_depth), self.count)]

    def record(self, state: None, done: StepRecord) -> None:
        pass

    def replace_rows(self, state: None, rows: torch.Tensor, fresh: None) -> None:
        pass  # no memory of its own: it reads the JacobiSource's


def _check(init, count: int, first_depth: int, allow_no_init: bool) -> None:
    if init not in INITS and not (allow_no_init and init is None):
        raise ValueError(f"init: expected one of {INITS}{' or None' if allow_no_init else ''}, got {init!r}")
    if count < 1 or first_depth < 1:
        raise ValueError(f"count, first_depth: expected ints >= 1, got {count}, {first_depth}")


def _from_depth(offsets: torch.Tensor, first_depth: int) -> torch.Tensor:
    """[B, D] bool: depths >= first_depth (the pool drops forced and finished depths itself)."""
    depth = torch.arange(1, offsets.shape[1] + 1, device=offsets.device)
    return (depth >= first_depth)[None].expand_as(offsets)


def initial_law(memory: JacobiMemory, offsets: torch.Tensor, init: str) -> torch.Tensor:
    """[B, D] offsets -> [B, D, V] float32 processed logits of the initial law (module docstring)."""
    grid = memory.grid
    uniform = memory.uniform.expand(*offsets.shape, -1)
    if init == "uniform":
        return uniform
    above = offsets - grid.row_stride
    if init == "above":
        law, found = memory.law_at(above)
        return torch.where(found[..., None], law.float(), uniform)
    token, found = memory.token_at(above)
    one_hot = torch.full_like(uniform, NEG_INF).scatter(-1, token[..., None], 0.0)
    return torch.where(found[..., None], one_hot, uniform)
