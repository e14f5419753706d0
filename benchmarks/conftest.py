"""The one timing fixture of the kernel benchmarks (pytest-benchmark).

`timed(fn, bytes_moved=..., label=...)` warms up, then times `fn` with CUDA events (median over repeats) on
a GPU, or with time.perf_counter on CPU (and says so in extra_info["clock"]); records the median, the bytes
moved and the fraction of the device's copy bandwidth, MEASURED in this run (timing.copy_bandwidth: a
device-to-device copy, once per device and process), in benchmark.extra_info; and lets pytest-benchmark time
the synchronised callable too.

The --benchmark-json file gets the run's header under "hawk_header" (timing.report_header: device, torch / CUDA /
triton / transformers versions, UTC date, the exact command, git commit; pytest-benchmark's own machine_info
names none of the libraries), and every row its warm-up and repeat counts.

`--quick` (the CPU smoke run CI does, tests/test_benchmarks_smoke.py): one warm-up, three timed calls, one
pytest-benchmark round: every code path and every extra_info field, in seconds.
"""
from __future__ import annotations

import pytest
import torch

from timing import CUDA_CLOCK, copy_bandwidth, median_seconds, report_header  # noqa: F401  (median_seconds: imported
#                                                                                     from here by scripts)


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="hawk benchmarks: smoke run (1 warm-up, 3 repeats)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU")


def pytest_collect_file(file_path, parent):
    """`pytest benchmarks --quick` collects the bench_*.py files (pytest's default pattern is test_*.py, so it ran
    nothing and exited 5); a file named on the command line is collected by pytest itself."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The run's header beside pytest-benchmark's machine_info: the GPU if there is one (each row's extra_info
    names the device it ran on), the library versions, the exact command."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    command = " ".join(["python -m pytest", *config.invocation_params.args])
    output_json["hawk_header"] = report_header(device, command=command)


@pytest.fixture
def timed(benchmark, request):
    quick = request.config.getoption("--quick")

    def run(fn, *, device: torch.device, bytes_moved: int = 0, warmup: int = 5, repeats: int = 30, **info):
        on_cuda = device.type == "cuda"
        if quick:
            warmup, repeats = 1, 3
        median = median_seconds(fn, on_cuda, warmup, repeats)
        bandwidth = copy_bandwidth(device)
        fraction = (bytes_moved / median) / bandwidth["copy_bytes_per_s"] if median > 0 else None
        benchmark.extra_info.update(info)
        benchmark.extra_info.update({
            "clock": CUDA_CLOCK if on_cuda else "time.perf_counter (CPU; no GPU timing)",
            "device": torch.cuda.get_device_name(device) if on_cuda else "cpu",
            "warmup": warmup,
            "repeats": repeats,
            "median_us": median * 1e6,
            "bytes_moved": int(bytes_moved),
            "copy_bandwidth_bytes_per_s": bandwidth["copy_bytes_per_s"],
            "copy_buffer_bytes": bandwidth["buffer_bytes"],
            "bandwidth_fraction": fraction,
        })
        if fraction is not None and fraction > 1:  # the op's bytes stayed in a cache; the copy's buffer did not
            benchmark.extra_info["bandwidth_fraction_note"] = (
                f"above 1: the op's {int(bytes_moved)} bytes are served from cache, while the copy bandwidth is "
                f"measured on a {bandwidth['buffer_bytes']}-byte buffer, larger than the caches")

        def synced():
            fn()
            if on_cuda:
                torch.cuda.synchronize()

        benchmark.pedantic(synced, rounds=1 if quick else max(3, repeats // 3), iterations=1,
                           warmup_rounds=0 if quick else 1)
        return median

    return run


def cuda_available() -> bool:
    return torch.cuda.is_available()


@pytest.fixture
def bench_device():
    """bench_device(device_type, backend, op) -> the torch.device to time on, or a skip with the reason: no
    GPU for a cuda row, or `backend` cannot run hawk op `op` there (op=None: a baseline that is not a
    hawk backend, such as a per-head loop or torch.rand). On a host WITH a GPU, a cuda or triton row that
    cannot run FAILS (a _C built without CUDA kernels, Triton missing): a benchmark run there must not look
    complete with its GPU rows skipped."""
    from hawk_kernels.ops import _backend

    def pick(device_type: str, backend: str, op: str | None) -> torch.device:
        if device_type == "cuda" and not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        device = torch.device(device_type)
        reason = _backend.why_not(backend, op, device, explicit=True) if op is not None else None
        if reason and device.type == "cuda" and backend in ("cuda", "triton"):
            pytest.fail(f"a CUDA device is present but backend {backend!r} cannot run {op}: {reason}", pytrace=False)
        if reason:
            pytest.skip(reason)
        return device

    return pick
