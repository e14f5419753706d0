"""Triton draft_heads, the twin of the CUDA small-T path (csrc/include/hawk/draft_heads.cuh): weight streaming.

At decode sizes (T = 2..32 tokens) every GEMM here is a weight-streaming GEMV: the cost is reading the weights
once. So a program owns BLOCK_N output columns of one head and ALL rows (BLOCK_M >= rows up to 32; more rows
take more row tiles) over the whole K, reads its weight rows once, and applies its epilogue to the fp32 sums:
  _resblock_kernel     one launch per layer for all heads: z + SiLU(z @ W[h, l].T + b[h, l]); layer 0 of every
                       head reads the same hidden state (head stride 0)
  _projection_kernel   one launch: the shared lm_head folds the heads into the rows (H*T rows, the lm_head read
                       once, not once per head); scaled fp32 logits into draft_logq [T, H, V] and per-tile softmax
                       statistics (max, sum of exp) per row
  _logsoftmax_finish_kernel   merges the statistics and subtracts log-sum-exp in place
Per-call sizes (tokens T, the layer index) are not specialised; BLOCK_M is 16 or 32 (two compiles at most).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from . import launch

BLOCK_N, BLOCK_K, BLOCK_V = 32, 128, 32  # columns per program (as the CUDA path's kSkinnyCols), k per step
MAX_BLOCK_M = 32  # rows per program (as kSkinnyMaxRows); more rows take more row tiles
NUM_WARPS, NUM_STAGES = 4, 4
FINISH_BLOCK_V, FINISH_BLOCK_TILES = 1024, 256


def block_m(rows: int) -> int:
    """Rows per program: every row in one tile up to MAX_BLOCK_M (tl.dot needs at least 16)."""
    return 16 if rows <= 16 else MAX_BLOCK_M


@triton_op("hawk::draft_heads_triton", mutates_args=())
def _draft_heads_op(hidden: torch.Tensor, res_weight: torch.Tensor, res_bias: torch.Tensor,
                    proj_weight: torch.Tensor, inv_temperature: float) -> torch.Tensor:
    tokens, width = hidden.shape
    heads, layers = res_weight.shape[:2]
    dev = hidden.device
    ieee = hidden.dtype == torch.float32  # fp32 inputs: no TF32 rounding in tl.dot
    z = hidden.unsqueeze(0)  # [1 or H, T, d]
    bm = block_m(tokens)
    for layer in range(layers):
        out = torch.empty(heads, tokens, width, dtype=hidden.dtype, device=dev)
        grid = (triton.cdiv(tokens, bm), triton.cdiv(width, BLOCK_N), heads)
        # per_head_input as an int: Triton 3.6's interpreter (the GPU machine's Triton) rejects a bool argument
        launch(_resblock_kernel)[grid](
            z, res_weight, res_bias, out, tokens, width, layers, layer, int(z.shape[0] > 1),
            IEEE=ieee, BLOCK_M=bm, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=NUM_WARPS, num_stages=NUM_STAGES)
        z = out
    z = z.expand(heads, tokens, width).contiguous()  # a copy only without ResBlocks (layers == 0)
    return _projection(z, proj_weight, inv_temperature, ieee)


def _projection(z, proj_weight, inv_temperature, ieee):
    """z [H, T, d] -> draft_logq [T, H, V] float32: the projection launch, then the finishing pass."""
    heads, tokens, width = z.shape
    shared = proj_weight.shape[0] == 1
    vocab = proj_weight.shape[1]
    rows = heads * tokens if shared else tokens  # the shared lm_head: the heads folded into the rows
    num_tiles = triton.cdiv(vocab, BLOCK_V)
    logq = torch.empty(tokens, heads, vocab, dtype=torch.float32, device=z.device)
    stats = torch.empty(2, tokens * heads, num_tiles, dtype=torch.float32, device=z.device)
    bm = block_m(rows)
    grid = (triton.cdiv(rows, bm), num_tiles, 1 if shared else heads)
    launch(_projection_kernel)[grid](
        z, proj_weight, logq, stats[0], stats[1], rows, tokens, width, vocab, heads, num_tiles, inv_temperature,
        IEEE=ieee, BLOCK_M=bm, BLOCK_V=BLOCK_V, BLOCK_K=BLOCK_K, num_warps=NUM_WARPS, num_stages=NUM_STAGES)
    launch(_logsoftmax_finish_kernel)[(tokens * heads,)](
        logq, stats[0], stats[1], vocab, num_tiles, BLOCK_V=FINISH_BLOCK_V, BLOCK_TILES=FINISH_BLOCK_TILES,
        num_warps=4)
    return logq


def draft_heads(hidden, res_weight, res_bias, proj_weight, inv_temperature=1.0):
    """Wrapper: contiguous inputs; arguments are checked by ops.draft_heads."""
    c = lambda t: t.contiguous()
    return _draft_heads_op(c(hidden), c(res_weight), c(res_bias), c(proj_weight), float(inv_temperature))


# ------------------------------------------------------------------------------------------------ kernels


@triton.jit
def _rows_times_wt(x_ptr, w_ptr, rows, cols, num_rows, num_cols, width, acc, IEEE: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    """acc + x[rows, :] @ w[cols, :].T over `width` (x: [num_rows, width], w: [num_cols, width]), fp32
    accumulation, out-of-range rows/cols read as zero. IEEE: exact fp32 dot (no TF32)."""
    ks = tl.arange(0, BLOCK_K)
    for k0 in range(0, width, BLOCK_K):
        k = k0 + ks
        a = tl.load(x_ptr + rows[:, None] * width + k[None, :],
                    mask=(rows[:, None] < num_rows) & (k[None, :] < width), other=0.0)
        w = tl.load(w_ptr + cols[None, :].to(tl.int64) * width + k[:, None],
                    mask=(cols[None, :] < num_cols) & (k[:, None] < width), other=0.0)  # [BLOCK_K, cols] W.T tile
        if IEEE:
            acc += tl.dot(a.to(w.dtype), w, input_precision="ieee")
        else:
            acc += tl.dot(a.to(w.dtype), w)
    return acc


@triton.jit(do_not_specialize=["tokens", "layer"])
def _resblock_kernel(
    z_ptr,  # [1 or H, T, d] ResBlock input (1: every head reads the hidden state)
    weight_ptr,  # [H, L, d, d]
    bias_ptr,  # [H, L, d]
    out_ptr,  # [H, T, d]   out = z + SiLU(z @ W[h, l].T + b[h, l])
    tokens, width, layers, layer, per_head_input,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m, pid_n, head = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    z_ptr += tl.where(per_head_input != 0, head, 0) * tokens * width
    weight_ptr += (head * layers + layer) * width * width
    acc = _rows_times_wt(z_ptr, weight_ptr, rows, cols, tokens, width, width,
                         tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32), IEEE, BLOCK_K)
    bias = tl.load(bias_ptr + (head * layers + layer) * width + cols, mask=cols < width, other=0.0).to(tl.float32)
    inside = (rows[:, None] < tokens) & (cols[None, :] < width)
    resid = tl.load(z_ptr + rows[:, None] * width + cols[None, :], mask=inside, other=0.0).to(tl.float32)
    pre = acc + bias[None, :]
    out = resid + pre * tl.sigmoid(pre)
    tl.store(out_ptr + head * tokens * width + rows[:, None] * width + cols[None, :],
             out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit(do_not_specialize=["rows", "tokens"])
def _projection_kernel(
    z_ptr,  # [H, T, d] last ResBlock output
    proj_ptr,  # [1 or H, V, d]
    logq_ptr,  # [T, H, V] fp32 out: scaled logits (log-sum-exp subtracted by the finishing pass)
    tile_max_ptr,  # [T*H, tiles] fp32 out, row token * heads + head
    tile_sum_ptr,  # [T*H, tiles] fp32 out: sum over the tile of exp(logit - tile max)
    rows, tokens, width, vocab, heads, num_tiles, inv_temperature,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # row r of grid slice p is head p + r // tokens, token r % tokens (shared lm_head: 1 slice of H*T rows;
    # per-head projections: H slices of T rows)
    pid_m, tile, part = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tile * BLOCK_V + tl.arange(0, BLOCK_V)
    z_ptr += part * tokens * width
    proj_ptr += part * vocab * width
    acc = _rows_times_wt(z_ptr, proj_ptr, r, cols, rows, vocab, width,
                         tl.zeros([BLOCK_M, BLOCK_V], dtype=tl.float32), IEEE, BLOCK_K)
    logits = tl.where(cols[None, :] < vocab, acc * inv_temperature, float("-inf"))
    tile_max = tl.max(logits, 1)
    tile_sum = tl.sum(tl.exp(logits - tile_max[:, None]), 1)
    q = (r % tokens).to(tl.int64) * heads + part + r // tokens  # row of draft_logq viewed as [T*H, V]
    inside = (r[:, None] < rows) & (cols[None, :] < vocab)
    tl.store(logq_ptr + q[:, None] * vocab + cols[None, :], logits, mask=inside)
    tl.store(tile_max_ptr + q * num_tiles + tile, tile_max, mask=r < rows)
    tl.store(tile_sum_ptr + q * num_tiles + tile, tile_sum, mask=r < rows)


@triton.jit
def _logsoftmax_finish_kernel(
    logq_ptr,  # [T*H, V] fp32, in place: logits -> logits - logsumexp
    tile_max_ptr, tile_sum_ptr,  # [T*H, tiles] fp32
    vocab, num_tiles,
    BLOCK_V: tl.constexpr, BLOCK_TILES: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # = token * heads + head
    stats = row * num_tiles
    row_max = float("-inf")
    for start in range(0, num_tiles, BLOCK_TILES):
        t = start + tl.arange(0, BLOCK_TILES)
        row_max = tl.maximum(row_max, tl.max(tl.load(tile_max_ptr + stats + t, mask=t < num_tiles,
                                                     other=float("-inf")), 0))
    total = 0.0
    for start in range(0, num_tiles, BLOCK_TILES):
        t = start + tl.arange(0, BLOCK_TILES)
        m = tl.load(tile_max_ptr + stats + t, mask=t < num_tiles, other=float("-inf"))
        s = tl.load(tile_sum_ptr + stats + t, mask=t < num_tiles, other=0.0)
        total += tl.sum(tl.where(t < num_tiles, s * tl.exp(m - row_max), 0.0), 0)
    lse = row_max + tl.log(total)
    offs = tl.arange(0, BLOCK_V)
    for start in range(0, vocab, BLOCK_V):
        v = start + offs
        x = tl.load(logq_ptr + row * vocab + v, mask=v < vocab)
        tl.store(logq_ptr + row * vocab + v, x - lse, mask=v < vocab)
