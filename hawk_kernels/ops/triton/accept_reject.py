"""Triton accept_reject, per-node parallel (same structure as csrc/include/hawk/accept_reject.cuh). Same contract
and decisions as the reference (hawk_kernels/ops/reference/accept_reject.py): read its docstring for the rules.

The decision taken at a node (the accepted child, or none and the bonus token sampled from the final residual)
depends only on that node's target row, its children's tokens and draft laws and its uniforms, not on the path
that reached it. So three launches, none of which walks the vocabulary more than one node deep:
  _draft_stats_kernel  (rejection rule only) max and 1 / sum(exp) of every draft row, once, not once per child;
  _decide_kernel       every (row, node) decision, independent programs (a grid-stride loop over B x N items):
                       target row stats, siblings in order (accept test, residual update after a rejection), the
                       bonus sample; writes next [B, N] (accepted child or -1) and bonus_at [B, N];
  _walk_kernel         one program per row: from the root along `next`; writes accept_len, path, bonus.
The vocabulary is streamed in BLOCK_V chunks (block-wide reductions and scans), fp32 math. The residual exists
only after a rejection: until then it IS the target row (`res_is_target`); after one it lives unnormalised in the
program's [V] fp32 workspace row with a scale 1 / mass.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from . import launch

BLOCK_V = 1024
NUM_WARPS = 8
PROGRAMS_PER_SM = 4  # decide programs per SM (workspace rows); under the interpreter a few, to run the loop
INTERPRETER_PROGRAMS = 3


def _num_programs(items: int, device: torch.device) -> int:
    if device.type == "cuda":
        cap = torch.cuda.get_device_properties(device).multi_processor_count * PROGRAMS_PER_SM
    else:
        cap = INTERPRETER_PROGRAMS
    return max(1, min(items, cap))


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
    nxt = torch.empty(batch, num_nodes, dtype=torch.int64, device=dev)  # phase 1 -> 2
    bonus_at = torch.empty(batch, num_nodes, dtype=torch.int64, device=dev)
    stats = torch.zeros(batch * num_rows, 2, dtype=torch.float32, device=dev)  # draft (max, 1 / sum); 0: invalid
    if not match_rule and batch * num_rows > 0:
        programs = _num_programs(batch * num_rows, dev)
        launch(_draft_stats_kernel)[(programs,)](draft_logits, stats, batch * num_rows, vocab,
                                                 BLOCK_V=BLOCK_V, num_warps=NUM_WARPS)
    if batch > 0:
        programs = _num_programs(batch * num_nodes, dev)
        work = torch.empty(programs, vocab, dtype=torch.float32, device=dev)  # residual, one row per program
        tried = torch.empty(programs, num_nodes, dtype=torch.int64, device=dev)  # tokens tried at a node
        launch(_decide_kernel)[(programs,)](
            target_logits, draft_logits, stats, node_tokens, node_parent, node_law, uniforms, work, tried, nxt,
            bonus_at, batch * num_nodes, num_nodes, num_rows, vocab, MATCH_RULE=match_rule, BLOCK_V=BLOCK_V,
            num_warps=NUM_WARPS)
        launch(_walk_kernel)[(batch,)](nxt, bonus_at, accept_len, path, bonus, num_nodes, num_warps=1)
    return accept_len, path, bonus


def accept_reject(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms, rule="rejection"):
    """Wrapper: contiguous inputs, fp32 uniforms; arguments are checked by ops.accept_reject."""
    c = lambda t: t.contiguous()
    return _accept_reject_op(c(target_logits), c(draft_logits), c(node_tokens), c(node_parent), c(node_law),
                             uniforms.to(torch.float32).contiguous(), rule == "match")


# ------------------------------------------------------------------------------------------------ kernels


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


@triton.jit(do_not_specialize=["total_rows"])
def _draft_stats_kernel(draft_ptr, stats_ptr, total_rows, vocab, BLOCK_V: tl.constexpr):
    """stats[r] = (max, 1 / sum exp(x - max)) of draft row r, or (0, 0) for a row that defines no law."""
    for r in range(tl.program_id(0), total_rows, tl.num_programs(0)):
        d_max, d_sum, d_valid = _row_stats(draft_ptr + tl.cast(r, tl.int64) * vocab, vocab, BLOCK_V)
        tl.store(stats_ptr + r * 2, tl.where(d_valid, d_max, 0.0))
        tl.store(stats_ptr + r * 2 + 1, tl.where(d_valid, 1.0 / tl.where(d_valid, d_sum, 1.0), 0.0))


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


@triton.jit(do_not_specialize=["items", "num_nodes", "num_rows"])  # per-call sizes: no recompile when they change
def _decide_kernel(
    target_ptr,  # [B, N, V] fp32/bf16/fp16 processed target logits
    draft_ptr,  # [B, Q, V] processed draft logits
    stats_ptr,  # [B, Q, 2] fp32 (max, 1 / sum) of each draft row; 1 / sum == 0: invalid row
    tokens_ptr,  # [B, N] int64
    parent_ptr,  # [N] int64
    law_ptr,  # [B, N] int64 row of draft_ptr each node was drawn from
    uniforms_ptr,  # [B, N, 2] fp32
    work_ptr,  # [programs, V] fp32 residual workspace, one row per program
    tried_ptr,  # [programs, N] int64 workspace
    next_ptr,  # [B, N] int64 out: the accepted child of each node, or -1
    bonus_at_ptr,  # [B, N] int64 out: the token sampled at each node (-1: invalid target row)
    items, num_nodes, num_rows, vocab,
    MATCH_RULE: tl.constexpr, BLOCK_V: tl.constexpr,
):
    work_ptr += tl.program_id(0).to(tl.int64) * vocab
    tried_ptr += tl.program_id(0).to(tl.int64) * num_nodes
    for item in range(tl.program_id(0), items, tl.num_programs(0)):
        wide_item = tl.cast(item, tl.int64)
        row = wide_item // num_nodes
        node = wide_item % num_nodes
        target_row = target_ptr + wide_item * vocab
        row_tokens = tokens_ptr + row * num_nodes
        row_uniforms = uniforms_ptr + row * num_nodes * 2
        t_max, t_sum, t_valid = _row_stats(target_row, vocab, BLOCK_V)
        t_inv_sum = 1.0 / tl.where(t_valid, t_sum, 1.0)
        nxt = tl.cast(-1, tl.int64)
        bonus = tl.cast(-1, tl.int64)
        if t_valid:
            sample_u = tl.load(row_uniforms + node * 2 + 1)
            if MATCH_RULE:
                bonus = _sample(target_row, work_ptr, True, t_max, t_inv_sum, 1.0, sample_u, vocab, BLOCK_V)
                child = node + 1
                while (child < num_nodes) & (nxt < 0):
                    if (tl.load(parent_ptr + child) == node) & (tl.load(row_tokens + child) == bonus):
                        nxt = child
                    child += 1
            else:
                nxt, res_is_target, res_scale = _try_children(
                    target_row, draft_ptr + row * num_rows * vocab, stats_ptr + row * num_rows * 2, row_tokens,
                    parent_ptr, law_ptr + row * num_nodes, row_uniforms, work_ptr, tried_ptr, node, num_nodes,
                    num_rows, vocab, t_max, t_inv_sum, BLOCK_V)
                if nxt < 0:
                    bonus = _sample(target_row, work_ptr, res_is_target, t_max, t_inv_sum, res_scale, sample_u,
                                    vocab, BLOCK_V)
        tl.store(next_ptr + item, nxt)
        tl.store(bonus_at_ptr + item, bonus)


@triton.jit
def _try_children(target_row, draft_ptr, stats_ptr, tokens_ptr, parent_ptr, law_ptr, uniforms_ptr, work_ptr,
                  tried_ptr, node, num_nodes, num_rows, vocab, t_max, t_inv_sum, BLOCK_V: tl.constexpr):
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
            safe_law = tl.where(ok, law, 0)
            draft_row = draft_ptr + safe_law * vocab
            d_max = tl.load(stats_ptr + safe_law * 2)
            d_inv_sum = tl.load(stats_ptr + safe_law * 2 + 1)
            if d_inv_sum > 0:
                tried_mass = 0.0
                for i in range(0, num_tried):
                    tried_token = tl.load(tried_ptr + i)
                    tried_mass += tl.exp(tl.load(draft_row + tried_token).to(tl.float32) - d_max) * d_inv_sum
                norm = 1.0 - tried_mass
                draft_prob = tl.exp(tl.load(draft_row + token).to(tl.float32) - d_max) * d_inv_sum
                draft_cond = tl.where(norm > 0, draft_prob / tl.where(norm > 0, norm, 1.0), 0.0)
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
                        res_scale = 1.0 / tl.where(mass > 0, mass, 1.0)
        child += 1
    return nxt, res_is_target, res_scale


@triton.jit(do_not_specialize=["num_nodes"])
def _walk_kernel(next_ptr, bonus_at_ptr, accept_len_ptr, path_ptr, bonus_ptr, num_nodes):
    """Phase 2, one program per batch row: from the root along the accepted children (path pre-filled -1)."""
    row = tl.program_id(0).to(tl.int64)
    next_ptr += row * num_nodes
    path_ptr += row * num_nodes
    tl.store(path_ptr, 0)
    node = tl.cast(0, tl.int64)
    length = tl.cast(0, tl.int64)
    nxt = tl.load(next_ptr)
    while nxt >= 0:
        length += 1
        tl.store(path_ptr + length, nxt)
        node = nxt
        nxt = tl.load(next_ptr + node)
    tl.store(accept_len_ptr + row, length)
    tl.store(bonus_ptr + row, tl.load(bonus_at_ptr + row * num_nodes + node))
