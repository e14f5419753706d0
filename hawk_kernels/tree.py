"""Candidate tree: a static template over the pool's per-depth candidate lists, and its per-step tensors.

A node is a path of candidate ranks (r1, r2, ..., rk): depth k, token = k-th depth's candidate r_k. Every
parent's children are a *prefix* of the depth's candidate list (ranks 0..m-1), which is what keeps the
verifier's "earlier siblings removed" draft law true. The template is fixed for a decode (static shapes for
CUDA graphs); candidates missing in a step (-1) simply make their nodes invalid.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

from . import ops
from .checks import as_float, as_int


@dataclass(frozen=True)
class TreeTemplate:
    parents: tuple[int, ...]  # node 0 is the root (-1)
    depth: tuple[int, ...]
    rank: tuple[int, ...]  # candidate index within its depth's list (root: 0, unused)

    @property
    def num_nodes(self) -> int:
        return len(self.parents)

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    @property
    def max_rank(self) -> int:
        return max(self.rank) + 1

    @classmethod
    def from_paths(cls, paths) -> "TreeTemplate":
        """paths: iterable of rank tuples; must be prefix-closed with sibling prefixes (r-1 exists for r)."""
        nodes = sorted({tuple(int(r) for r in p) for p in paths if len(p)}, key=lambda p: (len(p), p))
        index = {(): 0}
        parents, depth, rank = [-1], [0], [0]
        for path in nodes:
            if path[:-1] not in index:
                raise ValueError(f"paths: {path} has no parent {path[:-1]}")
            if path[-1] < 0 or (path[-1] > 0 and path[:-1] + (path[-1] - 1,) not in index):
                raise ValueError(f"paths: {path} needs its earlier sibling {path[:-1] + (path[-1] - 1,)}")
            index[path] = len(parents)
            parents.append(index[path[:-1]])
            depth.append(len(path))
            rank.append(path[-1])
        return cls(tuple(parents), tuple(depth), tuple(rank))

    @classmethod
    def from_budget(cls, num_nodes: int, max_depth: int, width: int, accept_rate=None) -> "TreeTemplate":
        """Best-first tree of `num_nodes` nodes (root included): a node's score is the product of the
        acceptance rates along its path, so the tree maximises the expected accepted length under the model
        "rank r at depth k is the accepted child with probability accept_rate(k, r)". accept_rate is a
        callable (depth, rank) -> rate or a table rates[depth - 1][rank] (measured: see
        python/calibrate_tree.py); default 0.6 * 0.5**rank."""
        num_nodes, max_depth = as_int("num_nodes", num_nodes, 1), as_int("max_depth", max_depth, 1)
        width, rate = as_int("width", width, 1), _rate_function(accept_rate)
        chosen = []
        heap = [(-rate(1, 0), (0,), 1.0)]  # (-score, rank path, parent's score)
        while heap and len(chosen) + 1 < num_nodes:
            neg_score, path, parent_score = heapq.heappop(heap)
            chosen.append(path)
            score, k = -neg_score, len(path)
            if path[-1] + 1 < width:  # next sibling
                sibling = path[:-1] + (path[-1] + 1,)
                heapq.heappush(heap, (-parent_score * rate(k, path[-1] + 1), sibling, parent_score))
            if k < max_depth:  # first child
                heapq.heappush(heap, (-score * rate(k + 1, 0), path + (0,), score))
        return cls.from_paths(chosen)


def _row(row, what: str):
    if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
        raise TypeError(f"accept_rate: expected {what}, got a row of type {type(row).__name__}")
    return row


def _rate_function(accept_rate):
    if accept_rate is None:
        return lambda depth, rank: 0.6 * 0.5**rank
    if callable(accept_rate):
        return accept_rate
    what = "a non-empty table rates[depth - 1][rank] of numbers in [0, 1]"
    if isinstance(accept_rate, (str, bytes)) or not hasattr(accept_rate, "__iter__"):
        raise TypeError(f"accept_rate: expected {what}, got {type(accept_rate).__name__}")
    table = [[as_float("accept_rate", r, 0.0, 1.0) for r in _row(row, what)] for row in accept_rate]
    if not table or any(not row for row in table):
        raise ValueError(f"accept_rate: expected {what}, got an empty table or row")

    def lookup(depth, rank):  # past the table: the last depth's rates, decaying by rank
        row = table[min(depth, len(table)) - 1]
        return row[rank] if rank < len(row) else row[-1] * 0.5 ** (rank - len(row) + 1)

    return lookup


class TreeBuffers:
    """Tensors of a template on a device, built once per decoder (one tree_mask op) and reused every step."""

    def __init__(self, template: TreeTemplate, device, backend: str = "auto"):
        self.template = template
        self.parents = torch.tensor(template.parents, dtype=torch.int64, device=device)
        self.depth_index = torch.tensor([max(d - 1, 0) for d in template.depth], device=device)
        self.rank_index = torch.tensor(template.rank, device=device)
        self.ancestor_mask, self.depth, self.retrieve = ops.tree_mask(self.parents, template.max_depth,
                                                                      backend=backend)
        # each node's (depth, rank) cell in the acceptance statistics, flattened
        self.rank_cell = self.depth * template.max_rank + self.rank_index

    @property
    def num_rank_cells(self) -> int:
        return (self.template.max_depth + 1) * self.template.max_rank

    def gather(self, per_depth: torch.Tensor, root_value) -> torch.Tensor:
        """per_depth [B, D, M] -> [B, N]: each node's entry; the root gets root_value ([B] or scalar)."""
        out = per_depth[:, self.depth_index, self.rank_index]
        out[:, 0] = root_value
        return out
