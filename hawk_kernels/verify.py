"""The verifier's verdict on one candidate tree (ops.accept_reject's three outputs, named).

Glossary: see ops/reference/accept_reject.py (target_probs, draft_probs, residual, accepted, bonus).
Two rules, both lossless:
  "rejection"  recursive rejection over siblings with the residual update (any mix of sampled drafts);
  "match"      the target samples its own token and a child equal to it is followed (deterministic drafts,
               greedy decoding).
The step calls the kernel it bound once (engine/step.py `verify`) with uniforms from the generation's Philox
streams and wraps the result in a VerifyResult. Under the coupled rule the target's token at every node is drawn
before the walk (its own Gumbel-max sample), so the "match" walk needs tokens only: `match_walk` gives the kernel's
verdict from [B, N] tokens in a few tensor ops, without reading the [B, N, V] laws again.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VerifyResult:
    accept_len: torch.Tensor  # [B] accepted candidate nodes (root excluded)
    path: torch.Tensor  # [B, N] node indices root first, -1 padded
    bonus: torch.Tensor  # [B] local id sampled at the last accepted node (-1: invalid target row)


def match_walk(target_tokens: torch.Tensor, defined: torch.Tensor, node_tokens: torch.Tensor, tree) -> VerifyResult:
    """The "match" rule on the target's tokens already drawn: the verdict ops.accept_reject gives with rule="match"
    on targets that are one-hot at those tokens (tests/test_match_walk.py), with no kernel and no host sync.
    target_tokens [B, N]: the target's token after each node; defined [B, N]: whether node n's target law is
    defined (no NaN, no +inf, a finite entry), else the walk stops there with bonus -1; node_tokens [B, N];
    tree: the decoder's TreeBuffers (None for a root-only tree). A child is followed when its token is its parent's
    target token (the first such sibling in node order); a node is on the path when it and every ancestor were
    followed."""
    if node_tokens.shape[1] == 1:  # the root alone (AR steps, the prefill): its own sample is the bonus
        bonus = torch.where(defined[:, 0], target_tokens[:, 0], -1)
        return VerifyResult(torch.zeros_like(bonus), torch.zeros_like(node_tokens), bonus)
    parent = tree.parents.clamp(min=0)
    followed = (node_tokens == target_tokens[:, parent]) & defined[:, parent]
    followed &= ~(followed[:, None, :] & tree.earlier_sibling).any(-1)
    followed[:, 0] = True  # the root
    on_path = ~(tree.ancestor_mask & ~followed[:, None, :]).any(-1)  # [B, N]: every ancestor-or-self followed
    last = (on_path * tree.depth).argmax(-1)  # the path's deepest node (at most one followed child per node)
    accept_len = tree.depth[last]
    ancestors = tree.continuation[last]  # [B, max_depth + 1]: last's ancestor at each depth up to its own
    depths = torch.arange(ancestors.shape[1], device=last.device)
    path = torch.where(depths <= accept_len[:, None], ancestors, -1)
    path = torch.nn.functional.pad(path, (0, node_tokens.shape[1] - path.shape[1]), value=-1)  # [B, N], as the kernels
    bonus = torch.where(defined.gather(1, last[:, None]), target_tokens.gather(1, last[:, None]), -1)[:, 0]
    return VerifyResult(accept_len, path, bonus)
