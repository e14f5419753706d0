"""THE place that resolves backend="auto" into one implementation, with reasons for every refusal.

Priority: cuda (compiled hawk::* CUDA kernels) > triton (GPU) > cpu (compiled hawk::* C++ kernels) > reference.
Each candidate reports why it cannot take the given inputs; an explicit request that fails names the reason.
Triton on CPU tensors (TRITON_INTERPRET=1, the test setting) is taken only when asked for by name.
"""
from __future__ import annotations

import torch

BACKENDS = ("cuda", "triton", "cpu", "reference")


def _compiled_ops_available() -> str | None:
    from . import _library

    return None if _library.compiled_available() else f"hawk_kernels._C is not importable ({_library.load_error()})"


def why_not(backend: str, op: str, device: torch.device, explicit: bool = False) -> str | None:
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

        if not _library.compiled_available():
            return _compiled_ops_available()
        return None if _library.has_kernel(op, "CUDA") else "hawk_kernels._C was built without CUDA kernels"
    if backend == "triton":
        from . import triton as triton_ops

        return triton_ops.unavailable_reason(op, device, explicit=explicit)
    return f"unknown backend {backend!r}; expected one of {BACKENDS + ('auto',)}"


def pick(op: str, device: torch.device, backend: str = "auto") -> str:
    if backend != "auto":
        reason = why_not(backend, op, device, explicit=True)
        if reason is not None:
            raise RuntimeError(f"backend={backend!r} cannot run {op}: {reason}")
        return backend
    for candidate in BACKENDS:
        if why_not(candidate, op, device) is None:
            return candidate
    return "reference"


def reasons(op: str, device: torch.device) -> dict[str, str | None]:
    """Every backend's refusal for `op` on `device` (None = available); for logs and `hawk` diagnostics."""
    return {name: why_not(name, op, device) for name in BACKENDS}
