"""ops.tree_mask: tree-attention metadata from parent pointers. Spec: reference/tree_mask.py."""
from __future__ import annotations

import torch

from . import _backend
from ..checks import as_int
from ._checks import INDEX, check_tensor


def validate_parents(node_parent: torch.Tensor) -> int:
    """Host-side check (syncs): node 0 is the only root and every parent precedes its child.

    Returns the depth of the tree."""
    parents = node_parent.tolist()
    if not parents or parents[0] != -1:
        raise ValueError("node_parent: node 0 must be the root (parent -1)")
    depth = [0] * len(parents)
    for node, parent in enumerate(parents[1:], start=1):
        if not 0 <= parent < node:
            raise ValueError(f"node_parent: node {node} has parent {parent}; expected 0 <= parent < {node}")
        depth[node] = depth[parent] + 1
    return max(depth)


def tree_mask(node_parent: torch.Tensor, max_depth: int, backend: str = "auto", validate: bool = True):
    """node_parent [N] int64 -> (ancestor_mask [N, N] bool, depth [N] int64, retrieve [N, max_depth + 1] int64);
    see the reference for their meaning. validate=False skips the host-side (syncing) parent check."""
    check_tensor("node_parent", node_parent, ndim=1, dtypes=INDEX)
    max_depth = as_int("max_depth", max_depth, 0, 2**31 - 2)
    if validate:
        tree_depth = validate_parents(node_parent)
        if tree_depth > max_depth:
            raise ValueError(f"max_depth: the tree is {tree_depth} deep, max_depth={max_depth}")
    return _backend.bind("tree_mask", node_parent.device, backend)(node_parent, max_depth)
