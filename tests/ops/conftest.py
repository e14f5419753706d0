"""Op-test setup: markers, the Triton interpreter on GPU-less hosts, and the list of backends to compare.

Backends come from ONE list, each skipped with its reason when unavailable, except on a GPU host, where a cuda
or triton backend that cannot run (a _C without CUDA kernels, Triton missing) FAILS the test: such a run must
not look green (tests/cuda_checks.py). There the triton rows run on CUDA tensors and are cuda-marked, so
`pytest tests -m cuda` covers both GPU backends. The GPU is never touched at import:
`torch.cuda.is_available()` only asks the driver whether a device exists.
"""
from __future__ import annotations

import os

import pytest
import torch

# The Triton kernels run under Triton's interpreter on CPU tensors when no GPU exists. Must be set before
# any hawk_kernels.ops.triton.<op> module is imported (Triton reads it when @triton.jit decorates).
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

BACKENDS = ("reference", "cpu", "triton", "cuda")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU and hawk_kernels._C built with CUDA")


def backend_device(backend: str) -> torch.device:
    """Where a backend's inputs live: CUDA for cuda (and Triton on a GPU host), CPU otherwise."""
    if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def on_gpu(backend: str) -> bool:
    """A backend that runs on the GPU of this host (none without CUDA)."""
    return backend in ("cuda", "triton") and torch.cuda.is_available()


def skip_reason(backend: str, op: str, dtype: torch.dtype | None = None) -> str | None:
    from hawk_kernels.ops import _backend

    if backend_device(backend).type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device"
    return _backend.why_not(backend, op, backend_device(backend), dtype, explicit=True)


def backend_params(op: str, include_reference: bool = False):
    """pytest params for every backend of `op` (cuda marked; triton too on a GPU host), to compare against the
    reference."""
    names = BACKENDS if include_reference else BACKENDS[1:]
    return [pytest.param(name, marks=[pytest.mark.cuda] if name == "cuda" or on_gpu(name) else [], id=name)
            for name in names]


def require(backend: str, op: str, dtype: torch.dtype | None = None) -> torch.device:
    """The device to test `backend` on, or a skip naming why `backend` cannot take `op` (with `dtype` inputs).
    On a GPU host, a cuda or triton backend that cannot run `op` at all FAILS (a dtype it does not take still
    skips)."""
    if on_gpu(backend):
        broken = skip_reason(backend, op)
        if broken is not None:
            pytest.fail(f"a CUDA device is present but backend {backend!r} cannot run {op}: {broken}", pytrace=False)
    reason = skip_reason(backend, op, dtype)
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    return backend_device(backend)
