"""Triton tree_mask: ONE launch, one program per node, all three outputs from the parent pointers.

A program walks up from its node to collect the ancestor set and writes its mask row, depth and path
(retrieve row). Ancestors come in topological order, so an ancestor's depth is its rank among the node's
ancestors. The node count and max_depth are not specialised; BLOCK_N (the next power of two >= N) is.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from . import launch

MAX_NODES = 4096  # a node's ancestor set (one mask row) lives in one program's registers


@triton_op("hawk::tree_mask_triton", mutates_args=())
def _tree_mask_op(node_parent: torch.Tensor, max_depth: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    num_nodes = node_parent.shape[0]
    dev = node_parent.device
    mask = torch.empty(num_nodes, num_nodes, dtype=torch.bool, device=dev)
    depth = torch.empty(num_nodes, dtype=torch.int64, device=dev)
    retrieve = torch.empty(num_nodes, max_depth + 1, dtype=torch.int64, device=dev)
    block_n = max(16, triton.next_power_of_2(num_nodes))
    launch(_tree_mask_kernel)[(num_nodes,)](
        node_parent, mask, depth, retrieve, num_nodes, max_depth, BLOCK_N=block_n, BLOCK_D=64, num_warps=4)
    return mask, depth, retrieve


def tree_mask(node_parent, max_depth):
    """Wrapper: arguments are checked (and parents validated) by ops.tree_mask."""
    if node_parent.shape[0] > MAX_NODES:
        raise ValueError(f"node_parent: the Triton kernel takes at most {MAX_NODES} nodes, got {node_parent.shape[0]}")
    return _tree_mask_op(node_parent.contiguous(), int(max_depth))


@triton.jit(do_not_specialize=["num_nodes", "max_depth"])
def _tree_mask_kernel(
    parent_ptr,  # [N] int64, topological, node 0 the root
    mask_ptr,  # [N, N] bool out
    depth_ptr,  # [N] int64 out
    retrieve_ptr,  # [N, max_depth + 1] int64 out
    num_nodes, max_depth,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    node = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_N)
    in_tree = offs < num_nodes
    # ancestors: walk up; a parent must precede its child, which also bounds the walk on bad input
    ancestors = offs == node
    cur = tl.where(node > 0, tl.load(parent_ptr + node), -1)
    prev = node
    depth = tl.cast(0, tl.int64)
    while (cur >= 0) & (cur < prev):
        ancestors = ancestors | (offs == cur)
        depth += 1
        prev = cur
        cur = tl.load(parent_ptr + cur)
    tl.store(mask_ptr + node * num_nodes + offs, ancestors, mask=in_tree)
    tl.store(depth_ptr + node, depth)
    # retrieve row: ancestor j sits at column rank(j); columns past the depth are -1
    rank = tl.cumsum(ancestors.to(tl.int32), 0) - 1
    width = max_depth + 1
    tl.store(retrieve_ptr + node * width + rank, offs.to(tl.int64), mask=ancestors & (rank < width))
    cols = tl.arange(0, BLOCK_D)
    for start in range(0, width, BLOCK_D):
        col = start + cols
        tl.store(retrieve_ptr + node * width + col, tl.full([BLOCK_D], -1, tl.int64), mask=(col > depth) & (col < width))
