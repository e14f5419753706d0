"""Triton draft_heads: all heads in one batched launch per ResBlock layer, one projection launch whose
epilogue scales by 1/temperature, writes fp32 logits and per-tile softmax statistics, and a light finishing
pass that merges the statistics and subtracts log-sum-exp in place (no separate softmax over [T, H, V]).

Layer 0 of every head reads the same hidden state (head stride 0): the [T, d] x [d, H*d] GEMM of
docs/method.md §4. Per-call sizes (tokens T, the layer index) are not specialised: a new T reuses the kernels.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

BLOCK_T, BLOCK_N, BLOCK_K, BLOCK_V = 16, 64, 32, 128


@triton_op("hawk::draft_heads_triton", mutates_args=())
def _draft_heads_op(hidden: torch.Tensor, res_weight: torch.Tensor, res_bias: torch.Tensor,
                    proj_weight: torch.Tensor, inv_temperature: float) -> torch.Tensor:
    tokens, width = hidden.shape
    heads, layers = res_weight.shape[:2]
    vocab = proj_weight.shape[1]
    dev = hidden.device
    ieee = hidden.dtype == torch.float32  # fp32 inputs: no TF32 rounding in tl.dot
    z = hidden.unsqueeze(0)  # [1 or H, T, d]
    for layer in range(layers):
        out = torch.empty(heads, tokens, width, dtype=hidden.dtype, device=dev)
        grid = (triton.cdiv(tokens, BLOCK_T), triton.cdiv(width, BLOCK_N), heads)
        wrap_triton(_resblock_kernel)[grid](
            z, res_weight, res_bias, out, tokens, width, layers, layer, z.shape[0] > 1,
            IEEE=ieee, BLOCK_T=BLOCK_T, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=4)
        z = out
    num_tiles = triton.cdiv(vocab, BLOCK_V)
    logq = torch.empty(tokens, heads, vocab, dtype=torch.float32, device=dev)
    tile_max = torch.empty(heads, tokens, num_tiles, dtype=torch.float32, device=dev)
    tile_sum = torch.empty(heads, tokens, num_tiles, dtype=torch.float32, device=dev)
    grid = (triton.cdiv(tokens, BLOCK_T), num_tiles, heads)
    wrap_triton(_projection_kernel)[grid](
        z, proj_weight, logq, tile_max, tile_sum, tokens, width, vocab, heads, num_tiles, inv_temperature,
        z.shape[0] > 1, proj_weight.shape[0] > 1,
        IEEE=ieee, BLOCK_T=BLOCK_T, BLOCK_V=BLOCK_V, BLOCK_K=BLOCK_K, num_warps=4)
    wrap_triton(_logsoftmax_finish_kernel)[(tokens * heads,)](
        logq, tile_max, tile_sum, tokens, heads, vocab, num_tiles, BLOCK_V=1024, BLOCK_TILES=64, num_warps=4)
    return logq


def draft_heads(hidden, res_weight, res_bias, proj_weight, inv_temperature=1.0):
    """Wrapper: contiguous inputs; arguments are checked by ops.draft_heads."""
    c = lambda t: t.contiguous()
    return _draft_heads_op(c(hidden), c(res_weight), c(res_bias), c(proj_weight), float(inv_temperature))


# ------------------------------------------------------------------------------------------------ kernels


@triton.jit
def _rows_times_wt(z_ptr, w_ptr, rows, cols, tokens, num_cols, width, acc, IEEE: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    """acc + z[rows, :] @ w[cols, :].T over `width` (z: [tokens, width], w: [num_cols, width]), fp32
    accumulation, out-of-range rows/cols read as zero. IEEE: exact fp32 dot (no TF32)."""
    ks = tl.arange(0, BLOCK_K)
    for k0 in range(0, width, BLOCK_K):
        k = k0 + ks
        a = tl.load(z_ptr + rows[:, None] * width + k[None, :], mask=(rows[:, None] < tokens) & (k[None, :] < width),
                    other=0.0)
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
    IEEE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_t, pid_n, head = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    z_ptr += tl.where(per_head_input, head, 0) * tokens * width
    weight_ptr += (head * layers + layer) * width * width
    acc = _rows_times_wt(z_ptr, weight_ptr, rows, cols, tokens, width, width,
                         tl.zeros([BLOCK_T, BLOCK_N], dtype=tl.float32), IEEE, BLOCK_K)
    bias = tl.load(bias_ptr + (head * layers + layer) * width + cols, mask=cols < width, other=0.0).to(tl.float32)
    inside = (rows[:, None] < tokens) & (cols[None, :] < width)
    resid = tl.load(z_ptr + rows[:, None] * width + cols[None, :], mask=inside, other=0.0).to(tl.float32)
    pre = acc + bias[None, :]
    out = resid + pre * tl.sigmoid(pre)
    tl.store(out_ptr + head * tokens * width + rows[:, None] * width + cols[None, :],
             out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit(do_not_specialize=["tokens"])
def _projection_kernel(
    z_ptr,  # [1 or H, T, d] last ResBlock output
    proj_ptr,  # [1 or H, V, d]
    logq_ptr,  # [T, H, V] fp32 out: scaled logits (log-sum-exp subtracted by the finishing pass)
    tile_max_ptr,  # [H, T, tiles] fp32 out
    tile_sum_ptr,  # [H, T, tiles] fp32 out: sum over the tile of exp(logit - tile max)
    tokens, width, vocab, heads, num_tiles, inv_temperature, per_head_input, per_head_proj,
    IEEE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_t, tile, head = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tile * BLOCK_V + tl.arange(0, BLOCK_V)
    z_ptr += tl.where(per_head_input, head, 0) * tokens * width
    proj_ptr += tl.where(per_head_proj, head, 0) * vocab * width
    acc = _rows_times_wt(z_ptr, proj_ptr, rows, cols, tokens, vocab, width,
                         tl.zeros([BLOCK_T, BLOCK_V], dtype=tl.float32), IEEE, BLOCK_K)
    logits = tl.where(cols[None, :] < vocab, acc * inv_temperature, float("-inf"))
    tile_max = tl.max(logits, 1)
    tile_sum = tl.sum(tl.exp(logits - tile_max[:, None]), 1)
    inside = (rows[:, None] < tokens) & (cols[None, :] < vocab)
    tl.store(logq_ptr + (rows[:, None].to(tl.int64) * heads + head) * vocab + cols[None, :], logits, mask=inside)
    stat = (head * tokens + rows) * num_tiles + tile
    tl.store(tile_max_ptr + stat, tile_max, mask=rows < tokens)
    tl.store(tile_sum_ptr + stat, tile_sum, mask=rows < tokens)


@triton.jit(do_not_specialize=["tokens"])
def _logsoftmax_finish_kernel(
    logq_ptr,  # [T, H, V] fp32, in place: logits -> logits - logsumexp
    tile_max_ptr, tile_sum_ptr,  # [H, T, tiles] fp32
    tokens, heads, vocab, num_tiles,
    BLOCK_V: tl.constexpr, BLOCK_TILES: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)  # = token * heads + head
    token, head = pid // heads, pid % heads
    stats = (head * tokens + token) * num_tiles
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
        x = tl.load(logq_ptr + pid * vocab + v, mask=v < vocab)
        tl.store(logq_ptr + pid * vocab + v, x - lse, mask=v < vocab)
