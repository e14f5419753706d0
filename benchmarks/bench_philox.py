"""philox_uniforms: the uniforms of one decoding step (B=2 x 1024 nodes x 2), 1M and 16M draws on CUDA; CPU at
small sizes. Write-bound: 4 bytes per uniform; compared with the PyTorch reference and torch.rand."""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops

SIZES = {"step": (2, 1024, 2), "1M": (1 << 20,), "16M": (1 << 24,)}


def params():
    out = []
    for size in SIZES:
        for backend in ("cuda", "triton", "reference", "torch.rand"):
            out.append(pytest.param("cuda", backend, size, marks=pytest.mark.cuda, id=f"cuda-{backend}-{size}"))
    for size in ("step", "1M"):
        for backend in ("cpu", "reference", "torch.rand"):
            out.append(pytest.param("cpu", backend, size, id=f"cpu-{backend}-{size}"))
    return out


@pytest.mark.parametrize("device_type,backend,size", params())
def test_philox_uniforms(timed, bench_device, device_type, backend, size):
    device = bench_device(device_type, backend, None if backend == "torch.rand" else "philox_uniforms")
    shape = SIZES[size]
    numel = 1
    for s in shape:
        numel *= s
    if backend == "torch.rand":
        fn = lambda: torch.rand(shape, device=device)
    else:
        rng = ops.DeviceRNG(0x5EED_1234_ABCD, device, offset=1 << 33, backend=backend)
        fn = lambda: rng.uniforms(shape, ops.philox.STREAM_ACCEPT)
    timed(fn, device=device, bytes_moved=4 * numel, backend=backend, numel=numel)
