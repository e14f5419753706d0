"""`hawk info`: what this install runs on, for a bug report or a slow run: versions, devices, the compiled library,
and for each op the kernel backend="auto" takes on each device (ops/_backend.py), with every reason a faster one
was passed over (no CUDA kernels in `_C`: built without nvcc; no Triton; HAWK_KERNELS_SKIP).

    hawk info
"""
from __future__ import annotations

import importlib
import os
import platform

import torch

from .. import __version__
from ..disk_table import CACHE_ENV, cache_path
from ..ops import _backend, _library as _library_of_ops
from .common import add_command

DTYPES = {"accept_reject": torch.float32, "draft_heads": torch.bfloat16}  # what a decoder passes them on a GPU
RUNS_ON = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}  # the backends each device has


def add_parser(subparsers) -> None:
    add_command(subparsers, "info", run,
                "versions, devices, the compiled kernels and the kernel each op runs on each device, with the "
                "reasons a faster one was passed over (for bug reports and slow runs)")


def run(args) -> int:
    for line in _versions() + _devices() + _library() + _backends():
        print(line)
    print(f"cache     {cache_path('')} ({CACHE_ENV}; `hawk cache` lists it)")
    return 0


def _versions() -> list[str]:
    lines = [f"hawk_kernels {__version__}, Python {platform.python_version()}, torch {torch.__version__} "
             f"(CUDA {torch.version.cuda or 'none'})"]
    for name in ("triton", "transformers"):
        try:
            lines.append(f"{name:<9} {importlib.import_module(name).__version__}")
        except Exception as exc:  # noqa: BLE001 - a broken install is what this command is for
            lines.append(f"{name:<9} not importable ({type(exc).__name__}: {exc})")
    return lines


def _devices() -> list[str]:
    if not torch.cuda.is_available():
        return ["devices   cpu (no CUDA device)"]
    names = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return [f"devices   cpu, {', '.join(names)}"]


def _library() -> list[str]:
    if not _library_of_ops.compiled_available():
        return [f"_C        not importable ({_library_of_ops.load_error()}): the C++ and CUDA kernels are missing; "
                "reinstall (pip install --no-build-isolation .)"]
    kinds = [key for key in ("CPU", "CUDA") if _library_of_ops.has_kernel("accept_reject", key)]
    return [f"_C        {_library_of_ops._C.__file__} (kernels for {', '.join(kinds) or 'no device'})"]


def _backends() -> list[str]:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    skip = os.environ.get(_backend.SKIP_ENV)
    lines = [f"ops       backend='auto' on each device{f' ({_backend.SKIP_ENV}={skip})' if skip else ''}:"]
    for op in _backend.OPS:
        for device in devices:
            dtype = DTYPES.get(op) if device == "cuda" else (torch.float32 if op in DTYPES else None)
            try:
                chosen = _backend.pick(op, device, "auto", dtype)
            except (RuntimeError, ValueError) as exc:
                lines.append(f"  {op:<16} {device:<5} none: {exc}")
                continue
            faster = [b for b in RUNS_ON[device] if _backend.BACKENDS.index(b) < _backend.BACKENDS.index(chosen)]
            passed = [f"{b}: {_backend.why_not(b, op, device, dtype) or 'skipped'}" for b in faster]
            lines.append(f"  {op:<16} {device:<5} {chosen}" + (f" (not {'; '.join(passed)})" if passed else ""))
    return lines
