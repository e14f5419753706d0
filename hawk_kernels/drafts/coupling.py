"""Coupled draft noise: Gumbel noise keyed by (row, absolute body offset, token), the same at every step.

The Jacobi source hands this noise to the pool (pool.py) as its proposal's `noise`, instead of the step-keyed
noise: position j's candidate is the Gumbel-top-k of (log q_t(j) + G_j) over the tokens not yet
drawn at its depth, with the SAME G_j at every step t that drafts j. So while j's draft law changes little from
step to step, its candidate stays put (SCD's coupling, docs/method.md §7), and the tokens the next tree is
conditioned on stop moving: a Jacobi iteration converges instead of re-rolling its drafts.

Why a candidate drawn this way is still distributed exactly as the law handed to the verifier
----------------------------------------------------------------------------------------------
The verifier (ops/reference/accept_reject.py) decides the committed token at position j from the candidates at
j, their laws, the target law at j and fresh per-step uniforms. By the multi-draft rejection lemma its output
has the target law p(. | x_<j) provided that, conditional on everything the decision at j is taken under -- the
committed prefix x_<j, the laws and the candidates drawn before the coupled one at j, and the uniforms -- the
coupled candidate is distributed as its law with those earlier candidates removed. Gumbel-top-k gives exactly
that law when G_j is independent of that conditioning sigma-algebra F_j. It is, because nothing in F_j is a
function of G_j:

1. G_j only ever enters the candidate token AT position j. Through the tree forward that token influences the
   target logits of deeper nodes, i.e. laws for positions > j (and through them, later candidates there);
   attention is causal, so no law, candidate or target logit of a position < j depends on it.
2. Each step's walk decides positions in order and stops at the first position where it commits a bonus.
   Whether and where it stops before j is decided by positions < j only. If the walk reaches j (tests any
   candidate there, accepted or rejected), position j is committed in that same step -- by an accepted
   candidate or by the bonus drawn from the residual -- and is never drafted again. So G_j is reused only at
   steps where j is still uncommitted, and at every earlier step its candidate was never tested: nothing
   about G_j was conditioned on. "The same noise re-draws the same candidate after a rejection" cannot happen:
   a rejection at j commits j.
3. The law at j may itself come from an earlier tree (Jacobi): it is the target's prediction at a node of
   position j - 1, a function of tokens at positions < j only (item 1), or a law of the row above.
4. G_j is a Philox draw on its own stream (STREAM_COUPLED) and row; the verifier's uniforms and every other
   proposal's noise come from other streams, so they are independent of it (up to Philox's quality).

Induction over positions gives P(x_j | x_<j) = p(x_j | x_<j) for every j, the AR law. What breaks it: noise
reused across positions that can be committed in between, e.g. keyed by tree depth instead of absolute offset.
The depth-1 candidate is tested at every step, so its committed outcome reveals the noise that the next step
would reuse at a new position (tests/test_jacobi.py keeps that variant as the negative control; it fails the
same end-to-end law test that the offset-keyed coupling passes).

Storage: none. G_j of row b is drawn when a step needs it, from Philox keyed by a key derived from (row b's seed,
j) on stream STREAM_COUPLED: a pure function of the image's seed and the position, the same at every step, with
no table (a table [B, body, V] would hold ~77 MB per 768 px Lumina-mGPT image and ~1 GB per Emu3 720 px image
row). A step draws [B, D, V] uniforms, as much as one proposal's step-keyed noise; fixed shapes, no host sync,
nothing that depends on which step runs first (a CUDA graph captured in one generation replays in the next).
"""
from __future__ import annotations

import torch

from ..ops import _backend

STREAM_COUPLED = 1 << 20  # dedicated Philox stream: STREAM_FIRST_DRAFT + proposal index never reaches it
# key of (seed, j): seed + (j + 1) * the 64-bit golden ratio (odd), wrapping; distinct positions of one seed never
# share a key, and Philox decorrelates related keys
_POSITION_STRIDE = 0x9E3779B97F4A7C15 - (1 << 64)  # as a signed int64
_ROW_STRIDE = 0xD1B54A32D192ED03 - (1 << 64)  # rows of one seed (another odd 64-bit constant), as a signed int64


class CoupledNoise:
    """Per-generation Gumbel noise keyed by (image, absolute body offset), drawn on demand."""

    def __init__(self, batch: int, vocab: int, rng, device):
        """rng: the generation's DeviceRNG (each image row's seed keys its noise) or a torch.Generator (tests:
        random per-row seeds)."""
        self.vocab = vocab
        if isinstance(rng, torch.Generator):
            self.seeds = torch.randint(-2**63, 2**63 - 1, (batch,), generator=rng, dtype=torch.int64).to(device)
            backend = "auto"
        elif rng.seed.dim() == 0:  # one key for the whole draw: each row its own keys (rows share no noise)
            self.seeds = rng.seed + torch.arange(batch, device=device) * _ROW_STRIDE
            backend = rng.backend
        else:  # a view of the per-row seeds: a refilled row's new seed keys its noise at once
            self.seeds = rng.seed.reshape(batch)
            backend = rng.backend
        self.zero = torch.zeros((), dtype=torch.int64, device=device)
        self._philox = _backend.bind("philox_uniforms", torch.device(device), backend)  # bound once

    def gumbel(self, offsets: torch.Tensor) -> torch.Tensor:
        """offsets [B, D] absolute body offsets -> [B, D, V] Gumbel noise, the same for an offset at every step."""
        batch, depth = offsets.shape
        keys = (self.seeds[:, None] + (offsets + 1) * _POSITION_STRIDE).reshape(-1)  # [B * D], wrapping int64
        uniform = self._philox(keys, self.zero, (batch * depth, self.vocab), STREAM_COUPLED)
        return gumbel_from_uniform(uniform).view(batch, depth, self.vocab)


def gumbel_from_uniform(uniform: torch.Tensor) -> torch.Tensor:
    """U(0, 1) -> standard Gumbel noise, in place (the pool's and the coupled noise's one transform)."""
    return uniform.clamp_(min=1e-20).log_().neg_().log_().neg_()
