"""Reference (the spec) of exact multi-draft tree verification.

Glossary (docs/method.md §1; we never write bare p/q):
  target_probs  softmax of a node's processed target logits: the law of the token AFTER that node.
  draft law     one row of draft_logits: a law candidates are drawn from (a draft head's output, say).
  node_law      per node, the index of the draft law (row of draft_logits) its token was drawn from.
  draft_probs   softmax of a candidate's draft law.
  residual      what is left of the target after rejected candidates: normalize(max(residual - draft, 0)).
  accepted      candidate nodes kept on the path (the root is always on it and is not counted).
  bonus         the token sampled at the last accepted node: from the residual ("rejection") or the
                target itself ("match"). It is always committed, so a step commits accept_len + 1 tokens.

Contract shared by every backend (reference, C++ CPU, Triton, CUDA):
  * Node 0 is the root (parent -1); parents precede children; siblings are tried in node order.
  * A child's conditional draft law is its draft law with all EARLIER VALID siblings' tokens removed and
    renormalised (how the pool draws: sequentially without replacement across every draft law of a depth).
    Because a rejected token has residual 0 afterwards, only the scalar normaliser 1 - sum(earlier siblings'
    draft mass) is needed, never a zeroed row.
  * A node is invalid (never accepted, tested or counted as a sibling) if its token is outside [0, V),
    its node_law is outside [0, Q), its draft row has a NaN, or its conditional draft mass is <= 0.
  * Acceptance of child c: u_accept * draft_cond(c) < residual(c)  (== u < residual/draft, no division).
  * Sampling from a (possibly unnormalised) law w with uniform u: the smallest v with
    cumsum(w)[v] > u * sum(w); if rounding leaves none, the last v with w[v] > 0.
  * A residual whose mass is not > 0 after an update (rounding when residual ~= draft) is replaced by
    the node's target_probs: documented, measure-zero in exact arithmetic.
  * A target row with a NaN, a +inf, or no finite entry, stops the walk at that node with bonus = -1 (the
    decoder raises on it); no token >= V is ever returned. (A draft row like that makes its nodes invalid.)
"""
from __future__ import annotations

import torch

RULES = ("rejection", "match")


def _sample(weights: torch.Tensor, u: float) -> int:
    """Inverse-CDF sample of an unnormalised non-negative law (see module contract)."""
    cdf = torch.cumsum(weights, 0)
    hit = torch.nonzero(cdf > u * cdf[-1])
    if hit.numel():
        return int(hit[0, 0])
    return int(torch.nonzero(weights > 0)[-1, 0])


def _probs(row: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """softmax of one logits row, or None if the row cannot define a law (NaN, +inf or no finite entry)."""
    row = row.to(dtype)
    if torch.isnan(row).any() or torch.isposinf(row).any() or not torch.isfinite(row).any():
        return None
    return torch.softmax(row, 0)


def _walk_one(target_logits, draft_logits, tokens, children, laws, uniforms, rule, dtype):
    """Verify one batch row; returns (path node list, bonus token)."""
    vocab, num_rows = target_logits.shape[-1], draft_logits.shape[0]
    path, node = [0], 0
    while True:
        target_probs = _probs(target_logits[node], dtype)
        if target_probs is None:
            return path, -1
        if rule == "match":
            token = _sample(target_probs, float(uniforms[node, 1]))
            nxt = next((c for c in children[node] if int(tokens[c]) == token), None)
            if nxt is None:
                return path, token
            path.append(nxt)
            node = nxt
            continue
        residual, accepted = target_probs, None
        tried_tokens: list[int] = []
        for child in children[node]:
            token, law = int(tokens[child]), int(laws[child])
            if not (0 <= token < vocab and 0 <= law < num_rows):
                continue
            draft_probs = _probs(draft_logits[law], dtype)
            if draft_probs is None:
                continue
            norm = 1.0 - float(sum(draft_probs[t] for t in tried_tokens)) if tried_tokens else 1.0
            draft_cond = float(draft_probs[token]) / norm if norm > 0 else 0.0
            if not draft_cond > 0:
                continue
            tried_tokens.append(token)
            if float(uniforms[child, 0]) * draft_cond < float(residual[token]):
                accepted = child
                break
            updated = torch.clamp(residual - draft_probs / norm, min=0)
            mass = updated.sum()
            residual = updated / mass if mass > 0 else target_probs
        if accepted is None:
            return path, _sample(residual, float(uniforms[node, 1]))
        path.append(accepted)
        node = accepted


def accept_reject(
    target_logits: torch.Tensor,  # [B, N, V] processed target logits; row n = law of the token after node n
    draft_logits: torch.Tensor,  # [B, Q, V] processed draft logits, one row per draft law
    node_tokens: torch.Tensor,  # [B, N] int64 candidate token of each node (root's is ignored)
    node_parent: torch.Tensor,  # [N] int64, -1 for node 0, else < own index
    node_law: torch.Tensor,  # [B, N] int64 row of draft_logits (draft law) each node was drawn from
    uniforms: torch.Tensor,  # [B, N, 2]: [...,0] accept test of node n, [...,1] sample at node n
    rule: str = "rejection",
    compute_dtype: torch.dtype = torch.float64,
):
    """Walk the tree of every batch row; returns (accept_len [B], path [B, N] (-1 padded), bonus [B])."""
    batch, num_nodes, _ = target_logits.shape
    parents = node_parent.tolist()
    children: list[list[int]] = [[] for _ in range(num_nodes)]
    for node in range(1, num_nodes):
        children[parents[node]].append(node)
    path_out = torch.full((batch, num_nodes), -1, dtype=torch.int64)
    accept_len = torch.zeros(batch, dtype=torch.int64)
    bonus = torch.empty(batch, dtype=torch.int64)
    for b in range(batch):
        path, token = _walk_one(target_logits[b].cpu(), draft_logits[b].cpu(), node_tokens[b].cpu(),
                                children, node_law[b].cpu(), uniforms[b].cpu(), rule, compute_dtype)
        path_out[b, : len(path)] = torch.tensor(path)
        accept_len[b] = len(path) - 1
        bonus[b] = token
    dev = target_logits.device
    return accept_len.to(dev), path_out.to(dev), bonus.to(dev)
