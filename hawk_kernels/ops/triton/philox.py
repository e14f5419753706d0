"""Triton philox_uniforms: each program computes BLOCK counter blocks (4 * BLOCK uniforms) of one row with the
Philox4x32-10 rounds written out in uint32 ops and tl.umulhi, bit-exact with the spec
(hawk_kernels/ops/reference/philox.py). Grid: (counter blocks of a row / BLOCK, rows); a draw with one seed and
one offset is one row of numel elements, a per-row draw (seed or offset of shape (R,)) R rows of numel / R, row
r drawn with its own seed and offset (read at r * stride: 0 for one value, so both broadcast without a copy).
seed and offset are loaded from their device pointers: no host sync, graph-replay safe.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from . import launch
from ..reference.philox import per_row

BLOCK = 512  # counter blocks per program
NUM_WARPS = 4
MAX_GRID_ROWS = 65535  # CUDA's limit on grid axis 1: more rows launch in chunks


@triton_op("hawk::philox_uniforms_triton", mutates_args=())
def _philox_uniforms_op(seed: torch.Tensor, offset: torch.Tensor, shape: list[int], stream: int) -> torch.Tensor:
    out = torch.empty(shape, dtype=torch.float32, device=seed.device)
    numel = out.numel()
    if numel == 0:
        return out
    rows = shape[0] if per_row(seed) or per_row(offset) else 1
    # row r's seed at seed[r * seed_stride], its offset at offset[r * offset_stride]: stride 0 for one value
    seed_stride = seed.stride(0) if per_row(seed) else 0
    offset_stride = offset.stride(0) if per_row(offset) else 0
    row_numel = numel // rows
    grid_blocks = triton.cdiv((row_numel + 3) // 4, BLOCK)
    # stream < 2**32 travels as the int32 with the same bits (the kernel reinterprets it as uint32)
    stream_bits = stream - 2**32 if stream >= 2**31 else stream
    for first in range(0, rows, MAX_GRID_ROWS):  # CUDA's grid-y limit: one launch per MAX_GRID_ROWS rows
        launch(_philox_uniforms_kernel)[(grid_blocks, min(MAX_GRID_ROWS, rows - first))](
            seed, offset, out, row_numel, seed_stride, offset_stride, first, stream_bits, BLOCK=BLOCK,
            num_warps=NUM_WARPS)
    return out


def philox_uniforms(seed, offset, shape, stream):
    """Wrapper: arguments are checked by ops.philox_uniforms."""
    return _philox_uniforms_op(seed, offset, [int(s) for s in shape], int(stream))


# ------------------------------------------------------------------------------------------------ kernel


@triton.jit
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on uint32 tensors; the key is bumped between rounds (Random123 constants)."""
    for round_ in tl.static_range(10):
        if round_ > 0:
            k0 = k0 + 0x9E3779B9
            k1 = k1 + 0xBB67AE85
        m0 = tl.full(c0.shape, 0xD2511F53, tl.uint32)
        m1 = tl.full(c2.shape, 0xCD9E8D57, tl.uint32)
        hi0 = tl.umulhi(m0, c0)
        lo0 = m0 * c0
        hi1 = tl.umulhi(m1, c2)
        lo1 = m1 * c2
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@triton.jit
def _to_uniform(x):
    return (x >> 8).to(tl.float32) * 5.9604644775390625e-08  # 2**-24: exact


# per call: no recompile for a new size, stride, first row or stream
@triton.jit(do_not_specialize=["numel", "seed_stride", "offset_stride", "first_row", "stream"])
def _philox_uniforms_kernel(
    seed_ptr,  # row r's key at seed_ptr[r * seed_stride] (int64)
    offset_ptr,  # row r's offset at offset_ptr[r * offset_stride] (int64)
    out_ptr,  # [rows, numel] fp32 out
    numel,  # elements per row, <= 2**34
    seed_stride,  # 0 for one key
    offset_stride,  # 0 for one offset
    first_row,  # the row of program_id(1) == 0 (launches of MAX_GRID_ROWS rows)
    stream,  # int32 holding the uint32 stream's bits
    BLOCK: tl.constexpr,
):
    row = tl.program_id(1).to(tl.int64) + first_row  # grid axis 1: rows (one for a one-row draw)
    seed = tl.load(seed_ptr + row * seed_stride)
    offset = tl.load(offset_ptr + row * offset_stride)
    k0 = seed.to(tl.uint32)  # int64 -> uint32 keeps the low 32 bits
    k1 = (seed >> 32).to(tl.uint32)
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # counter block within the row (< 2**32)
    zeros = tl.zeros([BLOCK], dtype=tl.uint32)
    c0 = j.to(tl.uint32)
    c1 = zeros + tl.cast(stream, tl.int32).to(tl.uint32, bitcast=True)
    c2 = zeros + offset.to(tl.uint32)
    c3 = zeros + (offset >> 32).to(tl.uint32)
    x0, x1, x2, x3 = _philox4x32_10(c0, c1, c2, c3, zeros + k0, zeros + k1)
    # lanes interleaved so element 4 * j + lane sits at index 4 * j + lane of the row: one contiguous store
    bits = tl.interleave(tl.interleave(x0, x2), tl.interleave(x1, x3))
    idx = tl.program_id(0).to(tl.int64) * (4 * BLOCK) + tl.arange(0, 4 * BLOCK)
    tl.store(out_ptr + row * numel + idx, _to_uniform(bits), mask=idx < numel)
