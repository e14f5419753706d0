"""Reference (the spec) of the tree-attention metadata built from parent pointers.

Given parents in topological order (node 0 the root, parent -1; every other parent < its child):
  ancestor_mask  [N, N] bool   node i may attend to node j iff j is i or an ancestor of i
  depth          [N]    int64  edges from the root
  position_ids   [B, N] int64  prefix_len[b] + depth  (the committed prefix stays causal, never materialised)
  first_child    [N]    int64  -1 if a leaf
  next_sibling   [N]    int64  the next node with the same parent, -1 if last
  retrieve       [N, max_depth + 1] int64  root-to-node path of every node, -1 padded
"""
from __future__ import annotations

import torch


def tree_mask(node_parent: torch.Tensor, prefix_len: torch.Tensor, max_depth: int):
    num_nodes = node_parent.shape[0]
    parents = node_parent.tolist()
    depth = [0] * num_nodes
    mask = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    retrieve = torch.full((num_nodes, max_depth + 1), -1, dtype=torch.int64)
    first_child = [-1] * num_nodes
    next_sibling = [-1] * num_nodes
    last_child = [-1] * num_nodes
    for node in range(num_nodes):
        parent = parents[node]
        if node > 0:
            depth[node] = depth[parent] + 1
            mask[node] = mask[parent]
            retrieve[node] = retrieve[parent]
            if last_child[parent] < 0:
                first_child[parent] = node
            else:
                next_sibling[last_child[parent]] = node
            last_child[parent] = node
        mask[node, node] = True
        retrieve[node, depth[node]] = node
    depth_t = torch.tensor(depth, dtype=torch.int64)
    position_ids = prefix_len.to(torch.int64).cpu()[:, None] + depth_t[None, :]
    dev = node_parent.device
    return (mask.to(dev), depth_t.to(dev), position_ids.to(dev), torch.tensor(first_child).to(dev),
            torch.tensor(next_sibling).to(dev), retrieve.to(dev))
