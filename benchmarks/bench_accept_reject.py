"""accept_reject at the Lumina-mGPT-7B shapes on CUDA (local vocab 8194 = 8192 codes + row-end, CFG batch 2,
trees of 16/32/64/128 nodes, 8 draft rows = 5 horizontal + 3 vertical heads), small shapes on CPU.
Backends: cuda / triton / cpu kernels against the reference (the reference only where it finishes quickly).
"""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops

VOCAB, BATCH, DRAFT_ROWS = 8194, 2, 8


def medusa_tree(num_nodes):
    """A wide-then-narrow tree (Medusa-style): 4 children at depth 1, then 2, then 1, truncated to num_nodes."""
    parents, frontier = [-1], [0]
    for width in (4, 2, 2, 2, 1, 1, 1, 1, 1, 1):
        nxt = []
        for node in frontier:
            for _ in range(width):
                if len(parents) < num_nodes:
                    parents.append(node)
                    nxt.append(len(parents) - 1)
        frontier = nxt
    while len(parents) < num_nodes:  # pad with leaves of the root
        parents.append(0)
    return parents


def make(num_nodes, vocab, batch, device, dtype):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(batch, 1, vocab, generator=g) * 2.5
    target = base + 0.6 * torch.randn(batch, num_nodes, vocab, generator=g)
    draft = base + 0.6 * torch.randn(batch, DRAFT_ROWS, vocab, generator=g)
    law = torch.randint(0, DRAFT_ROWS, (batch, num_nodes), generator=g)
    rows = torch.softmax(torch.gather(draft, 1, law[..., None].expand(-1, -1, vocab)), -1)
    tokens = torch.multinomial(rows.reshape(-1, vocab), 1, generator=g).view(batch, num_nodes)
    inputs = dict(target_logits=target.to(dtype), draft_logits=draft.to(dtype), node_tokens=tokens,
                  node_parent=torch.tensor(medusa_tree(num_nodes)), node_law=law,
                  uniforms=torch.rand(batch, num_nodes, 2, generator=g))
    return {k: v.to(device) for k, v in inputs.items()}


def params():
    out = []
    for n in (16, 32, 64, 128):
        for backend in ("cuda", "triton", "reference"):
            out.append(pytest.param("cuda", backend, n, VOCAB, marks=pytest.mark.cuda, id=f"cuda-{backend}-N{n}"))
    for n in (16, 64):
        for backend in ("cpu", "reference"):
            out.append(pytest.param("cpu", backend, n, 1024, id=f"cpu-{backend}-N{n}-V1024"))
    return out


@pytest.mark.parametrize("device_type,backend,num_nodes,vocab", params())
def test_accept_reject(timed, bench_device, device_type, backend, num_nodes, vocab):
    device = bench_device(device_type, backend, "accept_reject")
    if backend == "reference" and device_type == "cuda" and num_nodes > 32:
        pytest.skip("the Python reference is only timed on small trees")
    dtype = torch.bfloat16 if device_type == "cuda" else torch.float32
    inputs = make(num_nodes, vocab, BATCH, device, dtype)
    elem = inputs["target_logits"].element_size()
    accept_len = ops.accept_reject(**inputs, backend=backend)[0]
    timed(lambda: ops.accept_reject(**inputs, backend=backend), device=device,
          bytes_moved=BATCH * (num_nodes + DRAFT_ROWS) * vocab * elem, repeats=10 if backend == "reference" else 50,
          backend=backend, nodes=num_nodes, vocab=vocab, batch=BATCH, mean_accept_len=accept_len.float().mean().item(),
          bytes_note="all target + draft logits read once (the walk reads only visited rows, several passes each)")
