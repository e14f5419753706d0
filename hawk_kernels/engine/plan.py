"""StepPlan: what one decode step needs that is fixed for a decoder, built once and never mutated.

The backbone adapter, the tree template's device buffers, the draft sources and their pool, the draft heads'
inference weights (cast once) and the kernels bound once to a backend. The plan knows the sources only through
the interface of drafts/source.py; per-generation choices (sampling, CFG) and every source's memory live in the
state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones import ImageBackbone
from ..drafts import SpatialPool
from ..grid import ImageGrid
from ..heads import DraftHeads, HeadWeights
from ..ops._backend import Kernels, bind_kernels
from ..tree import TreeBuffers, TreeTemplate


@dataclass(frozen=True)
class StepPlan:
    backbone: ImageBackbone
    grid: ImageGrid
    tree: TreeBuffers
    pool: SpatialPool
    kernels: Kernels
    # the heads run on every committed hidden state, for the sources (StepRecord.head_logq); None: no heads
    head_weights: HeadWeights | None
    draft_offsets: torch.Tensor  # [D] 0..D-1: depth k+1 drafts body offset committed + k
    path_width: int  # path nodes that can enter the cache in one step: the root + one per depth
    # how a step decides what it commits (engine/step.py, verify): "coupled", the target's own sample under noise
    # keyed by (image seed, position), which the drafts share; "rejection", Hawk's multi-draft rejection sampling
    verify: str = "coupled"

    @property
    def draft_depth(self) -> int:
        return self.draft_offsets.shape[0]


def build_plan(backbone: ImageBackbone, heads: DraftHeads | None, sources: tuple, template: TreeTemplate,
               backend: str = "auto", verify: str = "coupled") -> StepPlan:
    """heads: the draft heads the sources read (None where none does: AR, training-free sources)."""
    device = backbone.device
    weights = None
    if heads is not None:
        head_rows = backbone.head_rows() if heads.proj_weight is None else None
        weights = heads.inference_weights(backbone.dtype, head_rows)
    tree = TreeBuffers(template, device, backend=backend)
    depth = max(template.max_depth, 1)  # AR's root-only tree still drafts (nothing) for one depth
    return StepPlan(backbone, backbone.grid, tree, SpatialPool(sources, backbone.grid),
                    bind_kernels(device, backbone.dtype, backend), weights, torch.arange(depth, device=device),
                    template.max_depth + 1, verify)
