"""ops.tree_mask: tree-attention metadata from parent pointers. Spec: reference/tree_mask.py."""
from __future__ import annotations

import torch

from . import _backend
from ._checks import INDEX, check_tensor
from .reference import tree_mask as _reference


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


def tree_mask(node_parent: torch.Tensor, prefix_len: torch.Tensor, max_depth: int, backend: str = "auto",
              validate: bool = True):
    """node_parent [N] int64, prefix_len [B] int64 ->
    (ancestor_mask [N, N] bool, depth [N], position_ids [B, N], first_child [N], next_sibling [N],
     retrieve [N, max_depth + 1]); see the reference for the meaning of each."""
    check_tensor("node_parent", node_parent, ndim=1, dtypes=INDEX)
    check_tensor("prefix_len", prefix_len, ndim=1, dtypes=INDEX, device=node_parent.device)
    if validate:
        tree_depth = validate_parents(node_parent)
        if tree_depth > max_depth:
            raise ValueError(f"max_depth: the tree is {tree_depth} deep, max_depth={max_depth}")
    chosen = _backend.pick("tree_mask", node_parent.device, backend)
    if chosen == "reference":
        return _reference(node_parent, prefix_len, max_depth)
    if chosen == "triton":
        from .triton.tree_mask import tree_mask as triton_impl

        return triton_impl(node_parent, prefix_len, max_depth)
    return torch.ops.hawk.tree_mask(node_parent, prefix_len, max_depth)
