"""The benchmarks' two shared measurements: a median time, and the device's copy bandwidth measured in the run;
and how a measurement that raised is recorded.

    median_seconds(fn, on_cuda, warmup, repeats)   median seconds of fn(): CUDA events on a GPU (device time, the
                                                    host queued ahead), perf_counter on CPU
    copy_bandwidth(device)                          dict: bytes per second of a device-to-device copy (bytes read +
                                                    bytes written, as a weight-streaming floor counts them), median
                                                    of several timed y.copy_(x), with how it was measured
    failure(error)                                  dict: the error and its last frames, for a result row or family
                                                    that raised (the run records it and goes on)

Every bandwidth figure of the benchmarks (the op benchmarks' `bandwidth_fraction`, e2e.py's step floor) divides by
copy_bandwidth() of the device it ran on, measured in that same process: no constant of some other GPU.
"""
from __future__ import annotations

import functools
import statistics
import time
import traceback

import torch

CUDA_CLOCK = "cuda events"  # the `clock` of every figure timed on a GPU (scripts/targets.py judges only those)


# Each call timed on a GPU is queued behind this much GPU sleep, so that the host's work for it (Python, dispatch,
# argument checks, a graph launch) is done while the GPU is still busy, and the events time the device's work
# alone: as the decode loop runs (graphed steps are launched several at a time, with no sync between them). A
# call that syncs inside (a host read) still counts its host time after the sync.
HOST_AHEAD_S = 1e-3


def _queue_host_ahead() -> None:
    khz = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "clock_rate", 0) or 2_000_000
    torch.cuda._sleep(int(HOST_AHEAD_S * khz * 1e3))


def median_seconds(fn, on_cuda: bool, warmup: int, repeats: int) -> float:
    """Median seconds of fn() over `repeats` calls after `warmup` calls; on a GPU each call's device time with CUDA
    events around it (the host queued ahead: HOST_AHEAD_S), on the CPU its wall time (time.perf_counter)."""
    for _ in range(warmup):
        fn()
    if on_cuda:
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            _queue_host_ahead()
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


def default_copy_bytes(device: torch.device) -> int:
    """Buffer size of the copy: 1 GiB on a GPU (far past any L2), 64 MiB on a CPU (past its last-level cache)."""
    return (1 << 30) if device.type == "cuda" else (64 << 20)


@functools.lru_cache(maxsize=None)
def _copy_bandwidth(device_str: str, nbytes: int, warmup: int, repeats: int, threads: int) -> dict:
    device = torch.device(device_str)
    on_cuda = device.type == "cuda"
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    seconds = median_seconds(lambda: dst.copy_(src), on_cuda, warmup, repeats)
    moved = 2 * src.numel() * src.element_size()  # read + write
    del src, dst
    if on_cuda:
        torch.cuda.empty_cache()
    return dict(copy_bytes_per_s=moved / seconds, buffer_bytes=moved // 2, median_s=seconds, repeats=repeats,
                clock=CUDA_CLOCK if on_cuda else "time.perf_counter",
                device=torch.cuda.get_device_name(device) if on_cuda else "cpu",
                torch_threads=None if on_cuda else threads,
                method="y.copy_(x) of a bf16 buffer, median, bytes read + written")


def copy_bandwidth(device, nbytes: int | None = None, warmup: int = 3, repeats: int = 10) -> dict:
    """The measured device-to-device copy bandwidth of `device` (cached per process and arguments)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    nbytes = default_copy_bytes(device) if nbytes is None else int(nbytes)
    return dict(_copy_bandwidth(str(device), nbytes, warmup, repeats, torch.get_num_threads()))


def failure(error: BaseException) -> dict:
    """{"failed": "Type: message", "traceback": the last frames}, called while `error` is being handled."""
    return dict(failed=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(limit=-6).splitlines()[-20:])
