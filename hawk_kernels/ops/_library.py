"""Loads hawk_kernels._C (schemas live in csrc/ops.cpp) and registers fake kernels for every hawk:: op."""
from __future__ import annotations

_error: str | None = None
try:
    from .. import _C  # noqa: F401
except ImportError as exc:  # the reference path stays usable without the extension
    _C = None
    _error = str(exc)


def compiled_available() -> bool:
    return _C is not None


def load_error() -> str | None:
    return _error


def has_kernel(op: str, dispatch_key: str) -> bool:
    import torch

    if _C is None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"hawk::{op}", dispatch_key)
    except RuntimeError:
        return False
