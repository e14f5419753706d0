"""Triton tree_mask: ONE launch, one program per node, all six outputs from the parent pointers.

A program loads every parent pointer into registers, walks up from its node to collect the ancestor set,
and writes its mask row, depth, path (retrieve row), first child, next sibling and position ids.
Ancestors come in topological order, so an ancestor's depth is its rank among the node's ancestors.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

MAX_NODES = 4096  # all parents live in one program's registers


@triton_op("hawk::tree_mask_triton", mutates_args=())
def _tree_mask_op(node_parent: torch.Tensor, prefix_len: torch.Tensor, max_depth: int) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    num_nodes, batch = node_parent.shape[0], prefix_len.shape[0]
    dev = node_parent.device
    mask = torch.empty(num_nodes, num_nodes, dtype=torch.bool, device=dev)
    make = lambda *shape: torch.empty(shape, dtype=torch.int64, device=dev)
    depth, position_ids, first_child = make(num_nodes), make(batch, num_nodes), make(num_nodes)
    next_sibling, retrieve = make(num_nodes), make(num_nodes, max_depth + 1)
    block_n = max(16, triton.next_power_of_2(num_nodes))
    wrap_triton(_tree_mask_kernel)[(num_nodes,)](
        node_parent, prefix_len, mask, depth, position_ids, first_child, next_sibling, retrieve,
        num_nodes, batch, max_depth, BLOCK_N=block_n, BLOCK_B=16, BLOCK_D=64, num_warps=4)
    return mask, depth, position_ids, first_child, next_sibling, retrieve


def tree_mask(node_parent, prefix_len, max_depth):
    """Wrapper: arguments are checked (and parents validated) by ops.tree_mask."""
    if node_parent.shape[0] > MAX_NODES:
        raise ValueError(f"node_parent: the Triton kernel takes at most {MAX_NODES} nodes, got {node_parent.shape[0]}")
    return _tree_mask_op(node_parent.contiguous(), prefix_len.contiguous(), int(max_depth))


@triton.jit
def _tree_mask_kernel(
    parent_ptr,  # [N] int64, topological, node 0 the root
    prefix_ptr,  # [B] int64
    mask_ptr,  # [N, N] bool out
    depth_ptr,  # [N] int64 out
    position_ptr,  # [B, N] int64 out
    first_child_ptr,  # [N] int64 out
    next_sibling_ptr,  # [N] int64 out
    retrieve_ptr,  # [N, max_depth + 1] int64 out
    num_nodes, batch, max_depth,
    BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr,
):
    node = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_N)
    in_tree = offs < num_nodes
    parents = tl.load(parent_ptr + offs, mask=in_tree, other=-2)
    my_parent = tl.load(parent_ptr + node)
    # ancestors: walk up; a parent must precede its child, which also bounds the walk on bad input
    ancestors = offs == node
    cur = tl.where(node > 0, my_parent, -1)
    prev = node
    depth = tl.cast(0, tl.int64)
    while (cur >= 0) & (cur < prev):
        ancestors = ancestors | (offs == cur)
        depth += 1
        prev = cur
        cur = tl.load(parent_ptr + cur)
    row = node * num_nodes
    tl.store(mask_ptr + row + offs, ancestors, mask=in_tree)
    tl.store(depth_ptr + node, depth)
    # retrieve row: ancestor j sits at column rank(j); columns past the depth are -1
    rank = tl.cumsum(ancestors.to(tl.int32), 0) - 1
    width = max_depth + 1
    tl.store(retrieve_ptr + node * width + rank, offs.to(tl.int64), mask=ancestors & (rank < width))
    cols = tl.arange(0, BLOCK_D)
    for start in range(0, width, BLOCK_D):
        col = start + cols
        tl.store(retrieve_ptr + node * width + col, tl.full([BLOCK_D], -1, tl.int64), mask=(col > depth) & (col < width))
    # children and siblings: the smallest later index with the right parent
    first = tl.min(tl.where((parents == node) & in_tree, offs, BLOCK_N), 0)
    tl.store(first_child_ptr + node, tl.where(first < BLOCK_N, first, -1).to(tl.int64))
    sibling = tl.min(tl.where((parents == my_parent) & (offs > node) & in_tree, offs, BLOCK_N), 0)
    has_sibling = (sibling < BLOCK_N) & (node > 0)
    tl.store(next_sibling_ptr + node, tl.where(has_sibling, sibling, -1).to(tl.int64))
    lanes = tl.arange(0, BLOCK_B)
    for start in range(0, batch, BLOCK_B):
        b = start + lanes
        prefix = tl.load(prefix_ptr + b, mask=b < batch, other=0)
        tl.store(position_ptr + b.to(tl.int64) * num_nodes + node, prefix + depth, mask=b < batch)
