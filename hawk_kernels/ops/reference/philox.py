"""Reference (the spec) of philox_uniforms: stateless counter-based uniforms (docs/method.md §4, Randomness).

Every backend (reference, C++ CPU, Triton, CUDA) is BIT-EXACT with this:

  Block function   Philox4x32-10 of Salmon et al. (Random123; the same constants as curand):
                     M0 = 0xD2511F53, M1 = 0xCD9E8D57 (multipliers), W0 = 0x9E3779B9, W1 = 0xBB67AE85 (bumps).
                   One round maps counter (c0, c1, c2, c3) under key (k0, k1) to
                     (hi(M1*c2) ^ c1 ^ k0,  lo(M1*c2),  hi(M0*c0) ^ c3 ^ k1,  lo(M0*c0))
                   with hi/lo the high/low 32 bits of the 64-bit product. 10 rounds; before rounds 2..10 the
                   key is bumped: k0 += W0, k1 += W1 (mod 2**32).
  Key              k0 = low 32 bits, k1 = high 32 bits of the element's seed (an int64: its two's-complement
                   bits): the seed of the draw, or of the element's row (see Rows).
  Counter          output element i uses counter block j = i // 4 and lane i % 4, with
                     c0 = j, c1 = stream, c2 = low 32 bits of offset, c3 = high 32 bits of offset,
                   offset being the draw's, or the element's row's (see Rows).
  Uniform          float32((x_lane >> 8) * 2**-24): 24 random bits, exact in float32, in [0, 1 - 2**-24].
  Seed             an int64 tensor on the output's device, read there (never on the host), of shape
                     () or (1,)   one key for the whole draw; or
                     (R,)         per-row keys, R == shape[0] (shape has at least one dimension).
  Offset           an int64 tensor on the output's device, read there (never on the host), of shape
                     () or (1,)   one offset for the whole draw; or
                     (R,)         per-row offsets, R == shape[0] (shape has at least one dimension), so rows of
                                  one batch can be at different decoding steps.
  Rows             With one seed and one offset, i is the row-major flat index over the whole output. A draw is
                   PER ROW when its seed or its offset is per row (shape (R,) with R != 1; both per row: the same
                   R == shape[0]). Row r of the output, out[r] of shape shape[1:], is then exactly
                     philox_uniforms(seed_r, offset_r, shape[1:], stream)
                   with seed_r = seed[r] for a per-row seed, else the one seed, and offset_r likewise: i = k, the
                   flat index of the element WITHIN its row (block k // 4, lane k % 4). With R == 1 the two
                   readings coincide. A row's numbers depend on its own (seed_r, offset_r) alone, not on its
                   position in the batch nor on R: a row refilled with a new image mid-batch, its offset reset,
                   draws exactly what that image would draw decoded alone.
  Limits           numel <= 2**34 over the whole output (j fits in 32 bits); 0 <= stream < 2**32.

So a draw is a pure function of (seed, offset, stream, shape); a prefix of a larger draw with the same
(seed, offset, stream) is the smaller draw (per row: row by row). Callers give each purpose its own
stream (ops.philox.STREAM_*) and advance the offset once per step, in place on the device, so a captured CUDA
graph replays with fresh numbers.

This module computes in int64 with 32-bit masks; the 32x32 -> 64-bit products are split into 16-bit halves so
nothing overflows int64. It runs on CPU and CUDA tensors alike.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
MASK32 = 0xFFFFFFFF
MAX_NUMEL = 2**34


def _mulhilo(m: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) 32 bits of m * x for a constant m < 2**32 and int64 x in [0, 2**32), without overflow."""
    a = m * (x & 0xFFFF)  # < 2**48
    b = m * (x >> 16)  # < 2**48; m * x = a + b * 2**16
    t = a + ((b & 0xFFFF) << 16)  # < 2**49
    return t & MASK32, (b >> 16) + (t >> 32)


def philox4x32_10(ctr: Sequence[torch.Tensor | int], key: Sequence[torch.Tensor | int]) -> tuple[torch.Tensor, ...]:
    """The raw block function. ctr: four, key: two uint32 values (int64 tensors in [0, 2**32) or ints), which
    broadcast together; returns the four output words as int64 tensors in [0, 2**32)."""
    as_tensor = lambda v: v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=torch.int64)
    c0, c1, c2, c3 = (as_tensor(c) & MASK32 for c in ctr)
    k0, k1 = (as_tensor(k) & MASK32 for k in key)
    for round_ in range(ROUNDS):
        if round_ > 0:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        lo0, hi0 = _mulhilo(M0, c0)
        lo1, hi1 = _mulhilo(M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def per_row(t: torch.Tensor) -> bool:
    """Whether a seed or offset tensor holds one value per row (shape (R,) with R != 1) rather than one value for
    the whole draw."""
    return t.dim() == 1 and t.numel() != 1


def philox_uniforms(seed: torch.Tensor, offset: torch.Tensor, shape: Sequence[int], stream: int = 0) -> torch.Tensor:
    """float32 `shape` on seed.device: see the module docstring. Arguments are checked by ops.philox_uniforms.
    All rows are drawn at once (no loop over rows): keys and offsets, (R, 1) per row or (1, 1) for the draw,
    broadcast against the counter blocks of a row."""
    shape = tuple(int(s) for s in shape)
    if per_row(seed) or per_row(offset):
        rows, row_numel = shape[0], math.prod(shape[1:])
    else:
        rows, row_numel = 1, math.prod(shape)
    keys = seed.reshape(-1, 1).to(torch.int64)
    offsets = offset.reshape(-1, 1).to(torch.int64)
    blocks = torch.arange((row_numel + 3) // 4, dtype=torch.int64, device=seed.device)
    words = philox4x32_10((blocks, torch.full_like(blocks, int(stream)), offsets & MASK32, (offsets >> 32) & MASK32),
                          (keys & MASK32, (keys >> 32) & MASK32))
    x = torch.broadcast_tensors(*words)  # each (rows, blocks)
    u = (torch.stack(x, dim=-1) >> 8).to(torch.float32) * 2.0**-24  # (rows, blocks, 4 lanes)
    return u.reshape(rows, 4 * blocks.numel())[:, :row_numel].reshape(shape)
