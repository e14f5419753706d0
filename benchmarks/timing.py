"""The benchmarks' two shared measurements: a median time, and the device's copy bandwidth measured in the run;
and how a measurement that raised is recorded.

    median_seconds(fn, on_cuda, warmup, repeats)   median seconds of fn(): CUDA events on a GPU (device time, the
                                                    host queued ahead), perf_counter on CPU
    copy_bandwidth(device)                          dict: bytes per second of a device-to-device copy (bytes read +
                                                    bytes written, as a weight-streaming floor counts them), median
                                                    of several timed y.copy_(x), with how it was measured
    failure(error)                                  dict: the error and its last frames, for a result row or family
                                                    that raised (the run records it and goes on)
    matmul_flops(device)                            dict: FLOP/s of a large matmul (bf16 on a GPU, fp32 on a CPU),
                                                    median, measured in the run: what a compute fraction divides by
    report_header(device, argv)                     dict: what every result JSON starts with (HEADER_FIELDS):
                                                    device, versions, date (UTC), the exact command, the commit

Every bandwidth figure of the benchmarks (the op benchmarks' `bandwidth_fraction`, e2e.py's step floor) divides by
copy_bandwidth() of the device it ran on, measured in that same process: no constant of some other GPU.
"""
from __future__ import annotations

import datetime
import functools
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
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


@functools.lru_cache(maxsize=None)
def _matmul_flops(device_str: str, size: int, dtype_name: str, warmup: int, repeats: int, threads: int) -> dict:
    device = torch.device(device_str)
    on_cuda = device.type == "cuda"
    dtype = getattr(torch, dtype_name)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    out = torch.empty_like(a)
    seconds = median_seconds(lambda: torch.mm(a, b, out=out), on_cuda, warmup, repeats)
    del a, b, out
    if on_cuda:
        torch.cuda.empty_cache()
    return dict(flops_per_s=2 * size ** 3 / seconds, size=size, dtype=dtype_name, median_s=seconds, warmup=warmup,
                repeats=repeats, clock=CUDA_CLOCK if on_cuda else "time.perf_counter",
                torch_threads=None if on_cuda else threads,
                method=f"torch.mm of two {size}x{size} {dtype_name} matrices, 2 n^3 FLOPs, median")


def matmul_flops(device, dtype: torch.dtype | None = None, size: int | None = None, warmup: int = 3,
                 repeats: int = 10) -> dict:
    """The measured matmul throughput of `device` (FLOP/s; cached per process and arguments): a compute-bound
    GEMM (8192^3 bf16 on a GPU, 512^3 fp32 on a CPU by default), the measured counterpart of a datasheet peak."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    on_cuda = device.type == "cuda"
    dtype = dtype or (torch.bfloat16 if on_cuda else torch.float32)
    size = size or (8192 if on_cuda else 512)
    return dict(_matmul_flops(str(device), int(size), str(dtype).replace("torch.", ""), warmup, repeats,
                              torch.get_num_threads()))


# --- what every result JSON records ---------------------------------------------------------------------------------
HEADER_FIELDS = ("device", "device_type", "torch", "torch_cuda", "triton", "transformers", "hawk_kernels", "python",
                 "torch_threads", "cpu_count", "date", "command", "git_commit", "git_dirty")


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo; platform.processor() is empty or just 'x86_64' on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def command_line(argv: list[str] | None = None, script: str | None = None) -> str:
    """The exact command: `python <script> <argv...>` when main() got `argv` (a test, another script), else
    `python` + sys.argv as the interpreter got them."""
    if argv is not None:
        return " ".join(["python", script or sys.argv[0], *map(str, argv)])
    return " ".join(["python", *sys.argv])


def report_header(device, argv: list[str] | None = None, script: str | None = None, command: str | None = None) -> dict:
    """What every result JSON starts with (HEADER_FIELDS): the device (GPU name, or the CPU's model name) and its
    type, the torch / CUDA / triton / transformers / hawk_kernels / Python versions, torch's CPU threads and the
    CPU count, the date (UTC, ISO 8601), the exact command, the git commit and whether the tree had uncommitted
    changes; on a GPU also its driver and compute capability."""
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
    report = dict(device=torch.cuda.get_device_name(device) if on_cuda else cpu_name(), device_type=device.type,
                  torch=torch.__version__, torch_cuda=torch.version.cuda)
    for package in ("triton", "transformers", "hawk_kernels"):
        try:
            report[package] = __import__(package).__version__
        except Exception:  # noqa: BLE001 - not installed, or broken: recorded as absent
            report[package] = None
    report.update(python=platform.python_version(), torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  command=command or command_line(argv, script),
                  git_commit=commit.strip() or None if commit is not None else None,
                  git_dirty=bool(status.strip()) if status is not None else None)
    if on_cuda:
        report["capability"] = list(torch.cuda.get_device_capability(device))
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True) if _has("nvidia-smi") else None
        report["driver"] = smi.stdout.strip().splitlines()[0] if smi is not None and smi.stdout.strip() else None
    return report


def _has(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None
