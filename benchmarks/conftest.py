"""The one timing fixture of the kernel benchmarks (pytest-benchmark).

`timed(fn, bytes_moved=..., label=...)` warms up, then times `fn` with CUDA events (median over repeats) on
a GPU, or with time.perf_counter on CPU (and says so in extra_info["clock"]); records the median, the bytes
moved and the fraction of the H100's 3.0 TB/s HBM bandwidth in benchmark.extra_info; and lets
pytest-benchmark time the synchronised callable too.
"""
from __future__ import annotations

import statistics
import time

import pytest
import torch

HBM_BYTES_PER_S = 3.0e12  # H100 80GB HBM3 copy bandwidth (docs/method.md §3)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU")


def median_seconds(fn, on_cuda: bool, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    if on_cuda:
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e-3)
        return statistics.median(times)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture
def timed(benchmark):
    def run(fn, *, device: torch.device, bytes_moved: int = 0, warmup: int = 5, repeats: int = 30, **info):
        on_cuda = device.type == "cuda"
        median = median_seconds(fn, on_cuda, warmup, repeats)
        benchmark.extra_info.update(info)
        benchmark.extra_info.update({
            "clock": "cuda events" if on_cuda else "time.perf_counter (CPU; no GPU timing)",
            "device": torch.cuda.get_device_name(device) if on_cuda else "cpu",
            "median_us": median * 1e6,
            "bytes_moved": int(bytes_moved),
            "hbm_fraction": (bytes_moved / median) / HBM_BYTES_PER_S if on_cuda and median > 0 else None,
        })

        def synced():
            fn()
            if on_cuda:
                torch.cuda.synchronize()

        benchmark.pedantic(synced, rounds=max(3, repeats // 3), iterations=1, warmup_rounds=1)
        return median

    return run


def cuda_available() -> bool:
    return torch.cuda.is_available()


@pytest.fixture
def bench_device():
    """bench_device(device_type, backend, op) -> the torch.device to time on, or a skip with the reason: no
    GPU for a cuda row, or `backend` cannot run hawk op `op` there (op=None: a baseline that is not a
    hawk backend, such as a per-head loop or torch.rand)."""
    from hawk_kernels.ops import _backend

    def pick(device_type: str, backend: str, op: str | None) -> torch.device:
        if device_type == "cuda" and not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        device = torch.device(device_type)
        reason = _backend.why_not(backend, op, device, explicit=True) if op is not None else None
        if reason:
            pytest.skip(reason)
        return device

    return pick
