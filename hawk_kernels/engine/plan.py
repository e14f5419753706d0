"""StepPlan: what one decode step needs that is fixed for a decoder, built once and never mutated.

The backbone adapter, the tree template's device buffers, the draft sources and their pool, the draft heads'
inference weights (cast once) and the kernels bound once to a backend. The step reads flags (`horizontal`,
`vertical`, `reads_last_tree`) instead of comparing mode strings; per-generation choices (sampling, CFG)
live in the state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones import ImageBackbone
from ..drafts import HorizontalSource, SpatialPool, VerticalSource
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
    heads: HeadWeights | None  # None: no source drafts from heads (AR, or training-free sources)
    horizontal: bool  # horizontal heads feed a source: keep their latest drafts
    vertical: bool  # vertical heads feed a source: fill the speculation cache
    reads_last_tree: bool  # some source reads the previous tree forward (DraftState.last_tree)
    draft_offsets: torch.Tensor  # [D] 0..D-1: depth k+1 drafts body offset committed + k
    path_width: int  # path nodes that can enter the cache in one step: the root + one per depth

    @property
    def draft_depth(self) -> int:
        return self.draft_offsets.shape[0]


def build_plan(backbone: ImageBackbone, heads: DraftHeads | None, sources: tuple, template: TreeTemplate,
               backend: str = "auto") -> StepPlan:
    device = backbone.device
    horizontal = any(isinstance(s, HorizontalSource) for s in sources)
    vertical = any(isinstance(s, VerticalSource) for s in sources)
    weights = None
    if horizontal or vertical:
        head_rows = backbone.head_rows() if heads.proj_weight is None else None
        weights = heads.inference_weights(backbone.dtype, head_rows)
    tree = TreeBuffers(template, device, backend=backend)
    depth = max(template.max_depth, 1)  # AR's root-only tree still drafts (nothing) for one depth
    return StepPlan(backbone, backbone.grid, tree, SpatialPool(sources, backbone.grid),
                    bind_kernels(device, backbone.dtype, backend), weights, horizontal, vertical,
                    any(s.reads_last_tree for s in sources), torch.arange(depth, device=device),
                    template.max_depth + 1)
