"""Candidate tree: a static template over the pool's per-depth candidate lists, and its per-step tensors.

A node is a path of candidate ranks (r1, r2, ..., rk): depth k, token = k-th depth's candidate r_k. Every
parent's children are a *prefix* of the depth's candidate list (ranks 0..m-1), which is what keeps the
verifier's "earlier siblings removed" draft law true. The template is fixed for a decode (static shapes for
CUDA graphs); candidates missing in a step (-1) simply make their nodes invalid.

Jacobi drafts (drafts/jacobi.py) read the target's predictions of the previous tree for positions past the next
root, so a template may reserve a *chain* (the all-rank-0 path to `chain_depth`) that reaches further than the
accepted path would; `TreeTemplate.continuations` says which node's prediction feeds each depth.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

from . import ops
from .checks import as_float, as_int

# The largest tree a decoder builds from num_nodes: each node is a query row of every layer and a row of the
# verifier's logits (a 1024-node tree at batch 1 with CFG already costs several AR steps on any GPU).
MAX_NUM_NODES = 1024


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
    def from_budget(cls, num_nodes: int, max_depth: int, width: int, accept_rate=None,
                    chain_depth: int = 0) -> "TreeTemplate":
        """Best-first tree of `num_nodes` nodes (root included): a node's score is the product of the
        acceptance rates along its path, so the tree maximises the expected accepted length under the model
        "rank r at depth k is the accepted child with probability accept_rate(k, r)". accept_rate is a
        callable (depth, rank) -> rate or a table rates[depth - 1][rank] (measured: see
        python/calibrate_tree.py); default 0.6 * 0.5**rank. chain_depth: the rank-0 path down to this depth is
        taken first (within the budget), so Jacobi drafts get predictions that far ahead (drafts/jacobi.py)."""
        num_nodes, max_depth = as_int("num_nodes", num_nodes, 1), as_int("max_depth", max_depth, 1)
        width, rate = as_int("width", width, 1), rate_function(accept_rate)
        chain_depth = as_int("chain_depth", chain_depth, 0)
        chain = [(0,) * k for k in range(1, min(chain_depth, max_depth, num_nodes - 1) + 1)]
        chosen, heap = [], []

        def take(path, parent_score):  # choose `path`; its next sibling and first child join the frontier
            score, k = parent_score * rate(len(path), path[-1]), len(path)
            chosen.append(path)
            if path[-1] + 1 < width:
                heapq.heappush(heap, (-parent_score * rate(k, path[-1] + 1), path[:-1] + (path[-1] + 1,),
                                      parent_score))
            if k < max_depth and path + (0,) not in chain:
                heapq.heappush(heap, (-score * rate(k + 1, 0), path + (0,), score))
            return score

        score = 1.0
        for path in chain:
            score = take(path, score)
        if not chain:
            heap.append((-rate(1, 0), (0,), 1.0))
        while heap and len(chosen) + 1 < num_nodes:
            _, path, parent_score = heapq.heappop(heap)
            take(path, parent_score)
        return cls.from_paths(chosen)

    def continuations(self) -> tuple[tuple[int, ...], ...]:
        """[N][max_depth + 1]: for a last accepted node n, the node whose target prediction feeds each depth k.
        k <= depth(n): n's ancestor at depth k (the accepted path). k > depth(n): the first-child (rank-0)
        chain below the deepest ancestor-or-self of n whose chain reaches depth k; -1 where none does."""
        children = [[c for c in range(self.num_nodes) if self.parents[c] == n] for n in range(self.num_nodes)]
        first = [min(kids, key=lambda c: self.rank[c]) if kids else -1 for kids in children]
        reach = [0] * self.num_nodes  # deepest depth of each node's first-child chain
        for n in reversed(range(self.num_nodes)):
            reach[n] = reach[first[n]] if first[n] >= 0 else self.depth[n]
        table = []
        for n in range(self.num_nodes):
            ancestors = [n]
            while self.parents[ancestors[-1]] >= 0:
                ancestors.append(self.parents[ancestors[-1]])
            row = [ancestors[self.depth[n] - k] for k in range(self.depth[n] + 1)]
            for k in range(self.depth[n] + 1, self.max_depth + 1):
                node = next((a for a in ancestors if reach[a] >= k), None)
                while node is not None and self.depth[node] < k:
                    node = first[node]
                row.append(-1 if node is None else node)
            table.append(tuple(row))
        return tuple(table)


def _row(row, what: str):
    if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
        raise TypeError(f"accept_rate: expected {what}, got a row of type {type(row).__name__}")
    return row


def rate_function(accept_rate):
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
        self.ancestor_mask, self.depth, _ = ops.tree_mask(self.parents, template.max_depth, backend=backend)
        # each node's (depth, rank) cell in the acceptance statistics, flattened
        self.rank_cell = self.depth * template.max_rank + self.rank_index
        # [N, max_depth + 1] the node whose prediction feeds each depth after node n was the last accepted
        self.continuation = torch.tensor(template.continuations(), dtype=torch.int64, device=device)
        # [n, m]: m is an earlier sibling of n (the "match" rule's token walk follows the first: verify.match_walk)
        nodes = torch.arange(template.num_nodes, device=device)
        self.earlier_sibling = (self.parents[:, None] == self.parents[None, :]) & (nodes[None, :] < nodes[:, None])

    @property
    def num_rank_cells(self) -> int:
        return (self.template.max_depth + 1) * self.template.max_rank

    def gather(self, per_depth: torch.Tensor, root_value) -> torch.Tensor:
        """per_depth [B, D, M] -> [B, N]: each node's entry; the root gets root_value ([B] or scalar)."""
        out = per_depth[:, self.depth_index, self.rank_index]
        out[:, 0] = root_value
        return out
