"""A trivial Triton kernel (x + 1), compiled and run by tests/cuda_checks.triton_problem on a GPU host before any
CUDA test: if it cannot run, the CUDA tests fail with that reason instead of skipping. Imported lazily (it
imports triton at import, and Triton reads TRITON_INTERPRET when @triton.jit decorates)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_one(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets, mask=mask) + 1, mask=mask)


def add_one_problem(device: str = "cuda") -> str | None:
    x = torch.arange(37, dtype=torch.int32, device=device)
    out = torch.zeros_like(x)
    _add_one[(1,)](x, out, x.numel(), BLOCK=64)
    if device != "cpu":
        torch.cuda.synchronize()
    if not torch.equal(out.cpu(), x.cpu() + 1):
        return f"a trivial Triton kernel (x + 1) computed wrong values on {device}"
    return None
