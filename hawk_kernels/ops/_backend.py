"""THE place that resolves backend="auto" into one implementation, with reasons for every refusal.

Priority: cuda (compiled hawk::* CUDA kernels) > triton (GPU) > cpu (compiled hawk::* C++ kernels) > reference.
Each candidate reports why it cannot take the given inputs; an explicit request that fails names the reason.
"""
from __future__ import annotations

import torch

BACKENDS = ("cuda", "triton", "cpu", "reference")


def _compiled_ops_available() -> str | None:
    from . import _library

    return None if _library.compiled_available() else f"hawk_kernels._C is not importable ({_library.load_error()})"


def why_not(backend: str, op: str, device: torch.device) -> str | None:
    """None if `backend` can run `op` on `device`, else the reason it cannot."""
    if backend == "reference":
        return None
    if backend == "cpu":
        if device.type != "cpu":
            return f"inputs are on {device}, the C++ kernels take CPU tensors"
        return _compiled_ops_available()
    if backend == "cuda":
        if device.type != "cuda":
            return f"inputs are on {device}, not a CUDA device"
        from . import _library

        return None if _library.has_kernel(op, "CUDA") else "hawk_kernels._C was built without CUDA kernels"
    if backend == "triton":
        if device.type != "cuda":
            return f"inputs are on {device}; Triton runs on CUDA tensors (or the interpreter in tests)"
        from . import triton as triton_ops

        return triton_ops.unavailable_reason(op)
    return f"unknown backend {backend!r}; expected one of {BACKENDS + ('auto',)}"


def pick(op: str, device: torch.device, backend: str = "auto") -> str:
    if backend != "auto":
        reason = why_not(backend, op, device)
        if reason is not None:
            raise RuntimeError(f"backend={backend!r} cannot run {op}: {reason}")
        return backend
    for candidate in BACKENDS:
        if why_not(candidate, op, device) is None:
            return candidate
    return "reference"
