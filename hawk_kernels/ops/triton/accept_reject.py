"""Triton accept_reject: one program per batch row walks the tree; the vocabulary is streamed in BLOCK_V
chunks (block-wide reductions and scans), fp32 math. Same contract and decisions as the reference
(hawk_kernels/ops/reference/accept_reject.py): read its docstring for the rules.

The residual exists only after a rejection: until then it IS the target row (`res_is_target`), read straight
from the logits. After a rejection it lives unnormalised in a [B, V] fp32 workspace with a scale 1 / mass.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

BLOCK_V = 1024
NUM_WARPS = 8


@triton_op("hawk::accept_reject_triton", mutates_args=())
def _accept_reject_op(target_logits: torch.Tensor, draft_logits: torch.Tensor, node_tokens: torch.Tensor,
                      node_parent: torch.Tensor, node_law: torch.Tensor, uniforms: torch.Tensor,
                      match_rule: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, num_nodes, vocab = target_logits.shape
    num_rows = draft_logits.shape[1]
    dev = target_logits.device
    accept_len = torch.empty(batch, dtype=torch.int64, device=dev)
    path = torch.full((batch, num_nodes), -1, dtype=torch.int64, device=dev)
    bonus = torch.empty(batch, dtype=torch.int64, device=dev)
    residual = torch.empty(batch, vocab, dtype=torch.float32, device=dev)  # workspace
    tried = torch.empty(batch, num_nodes, dtype=torch.int64, device=dev)  # workspace: tokens tried at a node
    wrap_triton(_accept_reject_kernel)[(batch,)](
        target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms,
        residual, tried, accept_len, path, bonus, num_nodes, num_rows, vocab,
        MATCH_RULE=match_rule, BLOCK_V=BLOCK_V, num_warps=NUM_WARPS)
    return accept_len, path, bonus


def accept_reject(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms, rule="rejection"):
    """Wrapper: contiguous inputs, fp32 uniforms; arguments are checked by ops.accept_reject."""
    c = lambda t: t.contiguous()
    return _accept_reject_op(c(target_logits), c(draft_logits), c(node_tokens), c(node_parent), c(node_law),
                             uniforms.to(torch.float32).contiguous(), rule == "match")


# ------------------------------------------------------------------------------------------------ kernel


@triton.jit
def _row_stats(row_ptr, vocab, BLOCK_V: tl.constexpr):
    """(max, sum of exp(x - max), valid) of one logits row; invalid = a NaN, a +inf, or no finite entry."""
    offs = tl.arange(0, BLOCK_V)
    row_max = float("-inf")
    nan_count = 0
    for start in range(0, vocab, BLOCK_V):
        x = tl.load(row_ptr + start + offs, mask=start + offs < vocab, other=float("-inf")).to(tl.float32)
        nan_count += tl.sum((x != x).to(tl.int32), 0)
        row_max = tl.maximum(row_max, tl.max(tl.where(x != x, float("-inf"), x), 0))
    valid = (nan_count == 0) & (row_max > float("-inf")) & (row_max < float("inf"))
    safe_max = tl.where(valid, row_max, 0.0)
    total = 0.0
    for start in range(0, vocab, BLOCK_V):
        x = tl.load(row_ptr + start + offs, mask=start + offs < vocab, other=float("-inf")).to(tl.float32)
        total += tl.sum(tl.exp(x - safe_max), 0)
    return safe_max, total, valid


@triton.jit
def _residual_chunk(target_row_ptr, work_ptr, offs, in_range, res_is_target, t_max, t_inv_sum, res_scale):
    """Residual weights of one chunk: target probs until the first rejection, then workspace * scale."""
    if res_is_target:
        x = tl.load(target_row_ptr + offs, mask=in_range, other=float("-inf")).to(tl.float32)
        w = tl.exp(x - t_max) * t_inv_sum
    else:
        w = tl.load(work_ptr + offs, mask=in_range, other=0.0) * res_scale
    return tl.where(in_range, w, 0.0)


@triton.jit
def _sample(target_row_ptr, work_ptr, res_is_target, t_max, t_inv_sum, res_scale, uniform, vocab,
            BLOCK_V: tl.constexpr):
    """Inverse CDF: smallest v with cumsum(w)[v] > u * sum(w), else the last v with w[v] > 0."""
    offs = tl.arange(0, BLOCK_V)
    total = 0.0
    for start in range(0, vocab, BLOCK_V):
        w = _residual_chunk(target_row_ptr, work_ptr, start + offs, start + offs < vocab, res_is_target, t_max,
                            t_inv_sum, res_scale)
        total += tl.sum(w, 0)
    threshold = uniform * total
    carry = 0.0
    found = tl.cast(-1, tl.int64)
    last_positive = tl.cast(-1, tl.int64)
    start = tl.cast(0, tl.int64)
    while (start < vocab) & (found < 0):
        idx = start + offs
        in_range = idx < vocab
        w = _residual_chunk(target_row_ptr, work_ptr, idx, in_range, res_is_target, t_max, t_inv_sum, res_scale)
        cdf = tl.cumsum(w, 0) + carry
        hit = (cdf > threshold) & in_range
        first = tl.min(tl.where(hit, idx, vocab), 0)
        found = tl.where(first < vocab, first, found)
        last_positive = tl.maximum(last_positive, tl.max(tl.where((w > 0) & in_range, idx, -1), 0))
        carry += tl.sum(w, 0)
        start += BLOCK_V
    return tl.where(found >= 0, found, last_positive)


@triton.jit(do_not_specialize=["num_nodes", "num_rows"])  # per-call sizes: no recompile when they change
def _accept_reject_kernel(
    target_ptr,  # [B, N, V] fp32/bf16/fp16 processed target logits
    draft_ptr,  # [B, Q, V] processed draft logits
    tokens_ptr,  # [B, N] int64
    parent_ptr,  # [N] int64
    law_ptr,  # [B, N] int64 row of draft_ptr each node was drawn from
    uniforms_ptr,  # [B, N, 2] fp32
    work_ptr,  # [B, V] fp32 residual workspace
    tried_ptr,  # [B, N] int64 workspace
    accept_len_ptr,  # [B] int64 out
    path_ptr,  # [B, N] int64 out, pre-filled with -1
    bonus_ptr,  # [B] int64 out
    num_nodes, num_rows, vocab,
    MATCH_RULE: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    target_ptr += row * num_nodes * vocab
    draft_ptr += row * num_rows * vocab
    tokens_ptr += row * num_nodes
    law_ptr += row * num_nodes
    uniforms_ptr += row * num_nodes * 2
    work_ptr += row * vocab
    tried_ptr += row * num_nodes
    path_ptr += row * num_nodes
    tl.store(path_ptr, 0)
    node = tl.cast(0, tl.int64)
    length = tl.cast(0, tl.int64)
    bonus = tl.cast(-1, tl.int64)
    walking = True
    while walking:
        target_row = target_ptr + node * vocab
        t_max, t_sum, t_valid = _row_stats(target_row, vocab, BLOCK_V)
        t_inv_sum = 1.0 / t_sum
        nxt = tl.cast(-1, tl.int64)
        res_is_target = True
        res_scale = 1.0
        if t_valid:
            if MATCH_RULE:
                bonus = _sample(target_row, work_ptr, True, t_max, t_inv_sum, 1.0,
                                tl.load(uniforms_ptr + node * 2 + 1), vocab, BLOCK_V)
                child = node + 1
                while (child < num_nodes) & (nxt < 0):
                    if (tl.load(parent_ptr + child) == node) & (tl.load(tokens_ptr + child) == bonus):
                        nxt = child
                    child += 1
            else:
                nxt, res_is_target, res_scale = _try_children(
                    target_row, draft_ptr, tokens_ptr, parent_ptr, law_ptr, uniforms_ptr, work_ptr, tried_ptr,
                    node, num_nodes, num_rows, vocab, t_max, t_inv_sum, BLOCK_V)
                if nxt < 0:
                    bonus = _sample(target_row, work_ptr, res_is_target, t_max, t_inv_sum, res_scale,
                                    tl.load(uniforms_ptr + node * 2 + 1), vocab, BLOCK_V)
        if nxt >= 0:
            length += 1
            tl.store(path_ptr + length, nxt)
            node = nxt
        else:
            walking = False
    tl.store(accept_len_ptr + row, length)
    tl.store(bonus_ptr + row, bonus)


@triton.jit
def _try_children(target_row, draft_ptr, tokens_ptr, parent_ptr, law_ptr, uniforms_ptr, work_ptr, tried_ptr,
                  node, num_nodes, num_rows, vocab, t_max, t_inv_sum, BLOCK_V: tl.constexpr):
    """Siblings in node order: accept test against the residual; residual update only on a rejection."""
    offs = tl.arange(0, BLOCK_V)
    nxt = tl.cast(-1, tl.int64)
    res_is_target = True
    res_scale = 1.0
    num_tried = tl.cast(0, tl.int64)
    child = node + 1
    while (child < num_nodes) & (nxt < 0):
        token = tl.load(tokens_ptr + child)
        law = tl.load(law_ptr + child)
        ok = (tl.load(parent_ptr + child) == node) & (token >= 0) & (token < vocab) & (law >= 0) & (law < num_rows)
        if ok:
            draft_row = draft_ptr + tl.where(ok, law, 0) * vocab
            d_max, d_sum, d_valid = _row_stats(draft_row, vocab, BLOCK_V)
            if d_valid:
                d_inv_sum = 1.0 / d_sum
                tried_mass = 0.0
                for i in range(0, num_tried):
                    tried_token = tl.load(tried_ptr + i)
                    tried_mass += tl.exp(tl.load(draft_row + tried_token).to(tl.float32) - d_max) * d_inv_sum
                norm = 1.0 - tried_mass
                draft_prob = tl.exp(tl.load(draft_row + token).to(tl.float32) - d_max) * d_inv_sum
                draft_cond = tl.where(norm > 0, draft_prob / norm, 0.0)
                if draft_cond > 0:
                    tl.store(tried_ptr + num_tried, token)
                    num_tried += 1
                    tl.debug_barrier()
                    in_tok = offs == 0
                    r_tok = tl.max(_residual_chunk(target_row, work_ptr, token + offs, in_tok, res_is_target, t_max,
                                                   t_inv_sum, res_scale), 0)
                    if tl.load(uniforms_ptr + child * 2) * draft_cond < r_tok:
                        nxt = child
                    else:
                        mass = 0.0
                        for start in range(0, vocab, BLOCK_V):
                            idx = start + offs
                            in_range = idx < vocab
                            res = _residual_chunk(target_row, work_ptr, idx, in_range, res_is_target, t_max,
                                                  t_inv_sum, res_scale)
                            x = tl.load(draft_row + idx, mask=in_range, other=float("-inf")).to(tl.float32)
                            upd = tl.maximum(res - tl.exp(x - d_max) * d_inv_sum / norm, 0.0)
                            upd = tl.where(in_range, upd, 0.0)
                            tl.store(work_ptr + idx, upd, mask=in_range)
                            mass += tl.sum(upd, 0)
                        tl.debug_barrier()
                        res_is_target = not (mass > 0)  # documented fallback: an empty residual is the target
                        res_scale = tl.where(mass > 0, 1.0 / mass, 1.0)
        child += 1
    return nxt, res_is_target, res_scale
