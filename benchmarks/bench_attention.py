"""The attention of one decode step, one layer, at the Lumina-mGPT-7B shape (32 heads x 128, bf16): the step's
two attention paths against what an ideal kernel reads (issue 20, item 2). The e2e profile gives the attention
kernels' total per step; this says which path is how far from its floor, per tree size and batch.

R rows (2: one image with CFG; 32: sixteen) with Q query rows each (1: an AR step; 32 / 64: a tree) attend over a
static cache of C slots of which F are filled (mid-image at 768 px: half the body):
  sdpa_dense   scaled_dot_product_attention with the additive [R, 1, Q, C] mask over every slot: what the step's
               sdpa (or eager) attention runs (SlotKVCache.tree_mask)
  flex_block   FlexAttention, compiled, with SlotKVCache.tree_block_mask: only the blocks up to the filled length
               (what attn_implementation="flex_attention" runs)                                      [CUDA only]
  sdpa_filled  sdpa over the filled slots only, no mask: a floor, not a path the step can take (no tree mask)
bytes_moved is the same for every path: K and V of the filled slots, Q and the output. So bandwidth_fraction says
how close each path comes to reading only what it needs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hawk_kernels.backbones.kv_cache import SlotKVCache

HEADS, HEAD_DIM, CAPACITY = 32, 128, 2560  # Lumina-mGPT-7B; prompt + 2,352 body + a tree, rounded to 128 slots
SMALL = dict(heads=4, head_dim=32, capacity=256)  # the CPU rows


def attention_case(device, rows: int, queries: int, heads: int, head_dim: int, capacity: int, dtype):
    """q [R, H, Q, D], k and v [R, H, C, D], the cache's bookkeeping with F = C / 2 - Q slots filled and the tree
    block right after them (queries form a chain: each node sees its ancestors), and the masks of both paths."""
    g = torch.Generator(device="cpu").manual_seed(0)
    filled = capacity // 2 - queries

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    q, k, v = rand(rows, heads, queries, head_dim), rand(rows, heads, capacity, head_dim), rand(rows, heads, capacity,
                                                                                                  head_dim)
    cache = SlotKVCache(rows, capacity, device)
    cache.length.fill_(filled)
    cache.begin_tree()
    ancestors = torch.ones(queries, queries, dtype=torch.bool, device=device).tril()
    allowed = cache.tree_mask(ancestors)  # [R, Q, C]
    zero, lowest = torch.zeros((), dtype=dtype, device=device), torch.tensor(torch.finfo(dtype).min, dtype=dtype,
                                                                             device=device)
    dense = torch.where(allowed, zero, lowest)[:, None]  # [R, 1, Q, C] additive, as the backbone adapter builds it
    seen = filled + queries  # slots an ideal kernel reads
    bytes_moved = (2 * rows * heads * seen * head_dim + 2 * rows * heads * queries * head_dim) * q.element_size()
    return q, k, v, cache, ancestors, dense, seen, bytes_moved


def params():
    out = []
    for rows in (2, 32):
        for queries in (1, 32, 64):
            for path in ("sdpa_dense", "flex_block", "sdpa_filled"):
                out.append(pytest.param("cuda", path, rows, queries, marks=pytest.mark.cuda,
                                        id=f"cuda-{path}-R{rows}-Q{queries}"))
    for queries in (1, 8):
        for path in ("sdpa_dense", "sdpa_filled"):  # torch's CPU flex kernel does not compile these masks
            out.append(pytest.param("cpu", path, 2, queries, id=f"cpu-{path}-R2-Q{queries}"))
    return out


@pytest.mark.parametrize("device_type,path,rows,queries", params())
def test_attention(timed, bench_device, device_type, path, rows, queries):
    device = bench_device(device_type, "torch", None)
    shape = dict(heads=HEADS, head_dim=HEAD_DIM, capacity=CAPACITY) if device.type == "cuda" else SMALL
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v, cache, ancestors, dense, seen, bytes_moved = attention_case(device, rows, queries, dtype=dtype, **shape)
    if path == "sdpa_dense":
        fn = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=dense)  # noqa: E731
    elif path == "sdpa_filled":
        k_seen, v_seen = k[:, :, :seen].contiguous(), v[:, :, :seen].contiguous()
        fn = lambda: F.scaled_dot_product_attention(q, k_seen, v_seen)  # noqa: E731
    else:
        from torch.nn.attention.flex_attention import flex_attention

        block_mask = cache.tree_block_mask(ancestors)
        flex = torch.compile(flex_attention, dynamic=False)
        fn = lambda: flex(q, k, v, block_mask=block_mask)  # noqa: E731
    timed(fn, device=device, bytes_moved=bytes_moved, path=path, rows=rows, queries=queries, filled_slots=seen,
          capacity=shape["capacity"], heads=shape["heads"], head_dim=shape["head_dim"], dtype=str(dtype))


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_the_paths_agree():
    """The three paths compute the same attention (float64, CPU; flex in its eager form), so the timings compare
    like with like."""
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v, cache, ancestors, dense, seen, _ = attention_case(torch.device("cpu"), 2, 8, dtype=torch.float64,
                                                               **SMALL)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    torch.testing.assert_close(flex_attention(q, k, v, block_mask=cache.tree_block_mask(ancestors)), want)
    causal = torch.ones(8, seen, dtype=torch.bool).tril(seen - 8)  # the filled slots, then the chain
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k[:, :, :seen], v[:, :, :seen], attn_mask=causal),
                               want)
