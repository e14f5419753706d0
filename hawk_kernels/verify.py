"""The verifier's verdict on one candidate tree (ops.accept_reject's three outputs, named).

Glossary: see ops/reference/accept_reject.py (target_probs, draft_probs, residual, accepted, bonus).
Two rules, both lossless:
  "rejection"  recursive rejection over siblings with the residual update (any mix of sampled drafts);
  "match"      the target samples its own token and a child equal to it is followed (deterministic drafts,
               greedy decoding).
The step calls the kernel it bound once (engine/step.py `verify`) with uniforms from the generation's Philox
streams and wraps the result in a VerifyResult.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VerifyResult:
    accept_len: torch.Tensor  # [B] accepted candidate nodes (root excluded)
    path: torch.Tensor  # [B, N] node indices root first, -1 padded
    bonus: torch.Tensor  # [B] local id sampled at the last accepted node (-1: invalid target row)
