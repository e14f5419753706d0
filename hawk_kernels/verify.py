"""Exact multi-draft verification of one candidate tree, built on ops.accept_reject.

Glossary: see ops/reference/accept_reject.py (target_probs, draft_probs, residual, accepted, bonus).
Two rules, both lossless:
  "rejection"  recursive rejection over siblings with the residual update (any mix of sampled drafts);
  "match"      the target samples its own token and a child equal to it is followed (deterministic drafts,
               greedy decoding).
Randomness comes from `uniforms` [B, N, 2] when given (tests integrate over them), else from `generator`.
The decoder calls the kernel it bound once (engine/step.py `verify`) and wraps it in the same VerifyResult.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ops


@dataclass
class VerifyResult:
    accept_len: torch.Tensor  # [B] accepted candidate nodes (root excluded)
    path: torch.Tensor  # [B, N] node indices root first, -1 padded
    bonus: torch.Tensor  # [B] local id sampled at the last accepted node (-1: invalid target row)


def verify_tree(target_logits, draft_logits, node_tokens, node_parent, node_law, *, rule: str = "rejection",
                uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None,
                backend: str = "auto") -> VerifyResult:
    if uniforms is None:
        batch, nodes = node_tokens.shape
        uniforms = torch.rand(batch, nodes, 2, generator=generator, device=target_logits.device)
    return VerifyResult(*ops.accept_reject(target_logits, draft_logits, node_tokens, node_parent, node_law,
                                           uniforms, rule=rule, backend=backend))
