"""The draft-source interface: what a source keeps between steps, how it proposes, and what it records.

A source is configuration (a frozen dataclass, shared by every generation of a decoder). What it remembers
between steps lives in a per-generation state that the source itself allocates (`new_state`, called once when a
generation starts, engine/state.py) and the engine hands back to it: so a captured step replays on the same
memory and two sessions of one decoder never share anything. At each step:

  propose(state, ctx)     -> one `DraftProposal` per draft law it offers: a processed draft log-law for each
                             depth 1..D and how many candidates the pool (pool.py) draws from it, with the step's
                             noise or with noise of its own (`noise`, e.g. keyed by position: coupling.py);
  record(state, done)     after the verifier committed: what the step did (`StepRecord`: the heads' drafts on
                             the newly committed hidden states, the tree forward's laws, the accepted path).

Between steps, `replace_rows(state, rows, fresh)` gives rows of the state to new images (continuous batching:
`fresh` is a state of those images alone, after their prefill); every row of a state must depend on its own
image only, so that a refilled row decodes as it would alone. A source without it cannot be refilled.

The number of candidates per depth is fixed per source so the tree template stays static. Every update of a
state happens in place on tensors allocated up front (fixed shapes, no host reads), as the whole step does.
A source may read another source's state through `ctx.state_of(source)` (the initial-law source reads the
Jacobi memory). docs/architecture.md, "Adding a draft source", walks through a new one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..grid import ImageGrid


@dataclass
class DraftProposal:
    source: str  # source name in the per-source acceptance statistics
    logq: torch.Tensor  # [B, D, V_local] processed draft log-probs for depths 1..D
    valid: torch.Tensor  # [B, D] bool
    count: int  # candidates drawn per depth
    # [B, D, V] Gumbel noise to draw with instead of the step's fresh noise (None: the step's); a source that
    # brings its own noise must keep the pool's draws exact (coupling.py says when position-keyed noise does)
    noise: torch.Tensor | None = None


@dataclass(frozen=True)
class SourceSetup:
    """What a source may size its per-generation state by (new_state)."""

    batch: int  # image rows
    grid: ImageGrid
    continuation: torch.Tensor  # [N, D + 1] TreeBuffers.continuation of the decoder's tree
    logits_dtype: torch.dtype  # dtype of the processed target logits (float32, float64 for float64 models)
    rng: Any  # the generation's DeviceRNG (its seed keys anything random a state holds) or a torch.Generator
    device: torch.device


@dataclass
class TreeRecord:
    """The tree forward a step verified, and its verdict (absent after prefill)."""

    target_logits: torch.Tensor  # [B, N, V_local] processed target logits: the law after each node
    next_offsets: torch.Tensor  # [B, N] body offset whose law each node's logits are
    node_tokens: torch.Tensor  # [B, N] local id of every node (root and missing candidates: -1)
    path: torch.Tensor  # [B, W] accepted node indices, root first, -1 padded
    accept_len: torch.Tensor  # [B] accepted nodes (root excluded)
    bonus: torch.Tensor  # [B] local id committed after the accepted nodes


@dataclass
class StepRecord:
    """What a step (or the prefill) committed, for sources to record."""

    frontier: torch.Tensor  # [B] committed body tokens after the step: the first offset still to draft
    tokens: torch.Tensor  # [B, T] local ids the step committed, at body offsets frontier_before + t
    head_valid: torch.Tensor  # [B, T] bool: token t (and the hidden state before it) is committed by this step
    # the draft heads run on the hidden states before each committed token (None when the decoder has no heads)
    head_logq: torch.Tensor | None  # [B, T, H, V_local] processed draft log-probs of every head
    head_offsets: torch.Tensor  # [B, T] body offset of each hidden state (-1: the prompt's last token)
    tree: TreeRecord | None  # None after prefill


@dataclass
class DraftContext:
    depth: int  # D: deepest tree depth of this step
    target_offsets: torch.Tensor  # [B, D] body offset of depths 1..D
    greedy: bool  # candidates are each law's top-k (no noise is drawn)
    states: dict  # id(source) -> its state, for sources that read another's (state_of)
    shared_noise: bool = False  # the pool draws every proposal with the step's coupled noise (a source's own is unused)

    def state_of(self, source) -> Any:
        return self.states[id(source)]


class DraftSource(Protocol):
    name: str  # its key in the per-source acceptance statistics

    def num_candidates(self) -> int: ...  # per depth

    def new_state(self, setup: SourceSetup) -> Any: ...  # per-generation memory (None: none)

    def propose(self, state: Any, ctx: DraftContext) -> list[DraftProposal]: ...

    def record(self, state: Any, done: StepRecord) -> None: ...

    def replace_rows(self, state: Any, rows: torch.Tensor, fresh: Any) -> None: ...  # optional: refills


def copy_rows(rows: torch.Tensor, *pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    """mine[rows] = theirs, in place, for each (mine, theirs): a state's rows replaced by a fresh state's."""
    for mine, theirs in pairs:
        mine.index_copy_(0, rows, theirs.to(mine.dtype))
