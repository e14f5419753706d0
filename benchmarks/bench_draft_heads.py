"""draft_heads at Lumina-mGPT-7B shapes on CUDA: hidden 4096, local vocab 8194, T = 2 tokens (CFG batch 2)
and T = 32 (a batch of 16 images), H = 5 (3 horizontal + 2 vertical) or 8 (5 + 3) heads, one ResBlock each,
shared lm_head slice; compared with the per-head Python loop every public Medusa-style implementation uses.
`bandwidth_fraction` (extra_info): the bytes (weights once + the fp32 output) over the median time, as a fraction
of the copy bandwidth measured in the run (timing.py); issue 20 asks >= 0.75 at T = 2. Small shapes on CPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hawk_kernels import ops


def per_head_loop(hidden, res_weight, res_bias, proj_weight, inv_temperature):
    """The baseline: one ResBlock + one projection per head, in Python."""
    out = []
    for head in range(res_weight.shape[0]):
        z = hidden
        for layer in range(res_weight.shape[1]):
            z = z + F.silu(F.linear(z, res_weight[head, layer], res_bias[head, layer]))
        logits = F.linear(z, proj_weight[head if proj_weight.shape[0] > 1 else 0]).float()
        out.append(torch.log_softmax(logits * inv_temperature, -1))
    return torch.stack(out, 1)


def make(tokens, width, heads, vocab, device, dtype):
    g = torch.Generator().manual_seed(0)
    return dict(hidden=torch.randn(tokens, width, generator=g).to(device, dtype),
                res_weight=(torch.randn(heads, 1, width, width, generator=g) * width ** -0.5).to(device, dtype),
                res_bias=torch.zeros(heads, 1, width).to(device, dtype),
                proj_weight=(torch.randn(1, vocab, width, generator=g) * width ** -0.5).to(device, dtype))


def params():
    out = []
    for tokens in (2, 32):
        for heads in (5, 8):
            for backend in ("cuda", "triton", "loop"):
                out.append(pytest.param("cuda", backend, tokens, 4096, heads, 8194, marks=pytest.mark.cuda,
                                        id=f"cuda-{backend}-H{heads}" + ("" if tokens == 2 else f"-T{tokens}")))
    for backend in ("cpu", "loop", "reference"):
        out.append(pytest.param("cpu", backend, 2, 256, 5, 1024, id=f"cpu-{backend}-H5-d256"))
    return out


@pytest.mark.parametrize("device_type,backend,tokens,width,heads,vocab", params())
def test_draft_heads(timed, bench_device, device_type, backend, tokens, width, heads, vocab):
    device = bench_device(device_type, backend, None if backend == "loop" else "draft_heads")
    dtype = torch.bfloat16 if device_type == "cuda" else torch.float32
    inputs = make(tokens, width, heads, vocab, device, dtype)
    if backend == "loop":
        fn = lambda: per_head_loop(**inputs, inv_temperature=1.0)
    else:
        fn = lambda: ops.draft_heads(**inputs, inv_temperature=1.0, backend=backend)
    elem = inputs["hidden"].element_size()
    weight_bytes = (heads * width * width + vocab * width) * elem
    timed(fn, device=device, bytes_moved=weight_bytes + tokens * heads * vocab * 4, backend=backend, heads=heads,
          width=width, vocab=vocab, tokens=tokens)
