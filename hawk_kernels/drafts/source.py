"""The draft-source interface: what a source reads (DraftContext, DraftState) and what it proposes.

A source hands the pool (pool.py) one `DraftProposal` per draft law it offers for this step: a processed
draft log-law for each depth 1..D and how many candidates to draw from it (with the step's noise, or with noise
keyed by absolute position when it sets `noise_offsets`: coupling.py). The number of candidates per
depth is fixed per source so the tree template stays static. Sources keep no state of their own: everything
that persists between steps lives in the generation's `DraftState` (engine/state.py allocates it up front,
the step writes it), so a captured step replays on the same memory and sessions never share anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from .coupling import CoupledNoise
from .spec_cache import SpeculationCache

if TYPE_CHECKING:
    from .jacobi import JacobiMemory


@dataclass
class DraftProposal:
    source: str  # source name in the per-source acceptance statistics
    logq: torch.Tensor  # [B, D, V_local] processed draft log-probs for depths 1..D
    valid: torch.Tensor  # [B, D] bool
    count: int  # candidates drawn per depth
    # [B, D] absolute body offsets: draw with the generation's coupled noise of these offsets (coupling.py,
    # the same at every step) instead of the step's noise; None: the step's noise
    noise_offsets: torch.Tensor | None = None


@dataclass
class LastTree:
    """What the previous tree forward produced, for sources that draft from the target's own predictions
    (allocated only when a source has reads_last_tree; before the first step every entry is invalid)."""

    target_logits: torch.Tensor  # [B, N, V_local] processed target logits of every node
    next_offsets: torch.Tensor  # [B, N] body offset whose law each node's logits are (-1: none yet)
    node_tokens: torch.Tensor  # [B, N] local id of every node
    path: torch.Tensor  # [B, W] accepted node indices, root first, -1 padded
    accept_len: torch.Tensor  # [B] accepted nodes (root excluded)
    bonus: torch.Tensor  # [B] local id committed after the accepted nodes


@dataclass
class DraftState:
    """Per-generation draft memory, written by the step, read by sources."""

    horizontal_logq: torch.Tensor | None  # [B, num_horizontal, V_local] heads fed the last committed state
    spec_cache: SpeculationCache | None  # vertical drafts waiting for their row
    last_tree: LastTree | None
    jacobi: JacobiMemory | None = None  # target laws keyed by absolute offset (drafts/jacobi.py)
    coupled_noise: CoupledNoise | None = None  # position-keyed draft noise (drafts/coupling.py)


@dataclass
class DraftContext:
    depth: int  # D: deepest tree depth of this step
    target_offsets: torch.Tensor  # [B, D] body offset of depths 1..D
    drafts: DraftState


class DraftSource(Protocol):
    name: str
    reads_last_tree: bool  # the step keeps LastTree up to date only if some source reads it

    def num_candidates(self) -> int: ...  # per depth

    def propose(self, ctx: DraftContext) -> list[DraftProposal]: ...
