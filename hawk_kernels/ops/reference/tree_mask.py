"""Reference (the spec) of the tree-attention metadata built from parent pointers.

Given parents in topological order (node 0 the root, parent -1; every other parent < its child):
  ancestor_mask  [N, N] bool   node i may attend to node j iff j is i or an ancestor of i
  depth          [N]    int64  edges from the root (a node's position is the prefix length + its depth)
  retrieve       [N, max_depth + 1] int64  root-to-node path of every node, -1 padded
"""
from __future__ import annotations

import torch


def tree_mask(node_parent: torch.Tensor, max_depth: int):
    num_nodes = node_parent.shape[0]
    parents = node_parent.tolist()
    depth = [0] * num_nodes
    mask = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    retrieve = torch.full((num_nodes, max_depth + 1), -1, dtype=torch.int64)
    for node in range(num_nodes):
        if node > 0:
            parent = parents[node]
            depth[node] = depth[parent] + 1
            mask[node] = mask[parent]
            retrieve[node] = retrieve[parent]
        mask[node, node] = True
        retrieve[node, depth[node]] = node
    dev = node_parent.device
    return mask.to(dev), torch.tensor(depth, dtype=torch.int64).to(dev), retrieve.to(dev)
