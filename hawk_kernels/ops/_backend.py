"""THE place that resolves backends: which implementation of an op runs, chosen once, with every reason for a
refusal.

Priority of backend="auto": cuda (compiled hawk::* CUDA kernels) > triton > cpu (compiled hawk::* C++ kernels)
> reference. Triton on CPU tensors (TRITON_INTERPRET=1, the test setting) is taken only when asked for by name.

    why_not(backend, op, device, dtype)   every reason `backend` cannot take `op` (None: it can)
    pick(op, device, backend, dtype)      the backend name; an explicit request that cannot be served raises
    bind(op, device, backend, dtype)      the implementation itself, picked once: no checks, no dispatch
    bind_kernels(device, dtype, backend)  the four ops bound at once (Kernels), for a decoder's hot loop

HAWK_KERNELS_SKIP=cuda (a comma-separated list of backends) makes "auto" pass over those backends, e.g. to run
on the Triton kernels when a compiled CUDA kernel misbehaves on a machine (scripts/gpu_check.sh sets it when its
first CUDA call fails or hangs). The chosen backend is in Kernels.backends(); a backend named explicitly is used
regardless.

`dtype` is the dtype of the op's float inputs (target_logits for accept_reject, hidden for draft_heads); the
integer ops (philox_uniforms, tree_mask) take int64 tensors only, and dtype=None skips the dtype reasons.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

import torch

BACKENDS = ("cuda", "triton", "cpu", "reference")
SKIP_ENV = "HAWK_KERNELS_SKIP"  # backends "auto" passes over (comma-separated), read when a backend is picked
OPS = ("accept_reject", "draft_heads", "philox_uniforms", "tree_mask")

_ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_GPU_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_INT = (torch.int64,)
# The dtypes each kernel takes, read off the kernels: the C++ CPU ops upcast any float dtype (accept_reject to
# double; draft_heads to float32, float64 kept); the CUDA kernels switch over fp32/bf16/fp16 only
# (csrc/cuda/dispatch.h) and the Triton kernels are built for those three (compile_check.py) and return
# float32 draft_logq, so neither serves the float64 contract (float64 in, float64 decisions / out).
_DTYPES = {
    "reference": {"accept_reject": _ALL_FLOATS, "draft_heads": _ALL_FLOATS},
    "cpu": {"accept_reject": _ALL_FLOATS, "draft_heads": _ALL_FLOATS},
    "cuda": {"accept_reject": _GPU_FLOATS, "draft_heads": _GPU_FLOATS},
    "triton": {"accept_reject": _GPU_FLOATS, "draft_heads": _GPU_FLOATS},
}
_INTERPRETER_FLOATS = (torch.float32,)  # Triton's numpy interpreter gets bf16/fp16 arithmetic wrong


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _dtype_reason(backend: str, op: str, device: torch.device, dtype: torch.dtype | None) -> str | None:
    if dtype is None:
        return None
    takes = _DTYPES[backend].get(op, _INT)
    if backend == "triton" and device.type == "cpu" and op in ("accept_reject", "draft_heads"):
        takes = _INTERPRETER_FLOATS
        where = "the Triton interpreter (CPU tensors) computes correctly in"
    else:
        where = f"the {backend} {op} takes"
    if dtype in takes:
        return None
    return f"{where} {', '.join(_name(d) for d in takes)}, not {_name(dtype)}"


def _compiled_reason(op: str, dispatch_key: str) -> str | None:
    from . import _library

    if not _library.compiled_available():
        return f"hawk_kernels._C is not importable ({_library.load_error()})"
    if not _library.has_kernel(op, dispatch_key):
        what = "CUDA kernels" if dispatch_key == "CUDA" else f"a {dispatch_key} kernel for {op}"
        return f"hawk_kernels._C was built without {what}"
    return None


def _triton_reasons(op: str, device: torch.device, explicit: bool) -> list[str]:
    from .triton import KERNELS, interpreting

    reasons = [] if op in KERNELS else [f"no Triton kernel for {op}"]
    if importlib.util.find_spec("triton") is None:
        reasons.append("triton is not installed")
    if device.type == "cpu" and interpreting():
        if not explicit:
            reasons.append("inputs are on cpu; the Triton interpreter is used only when asked for by name")
    elif device.type != "cuda":
        reasons.append(f"inputs are on {device}; Triton runs on CUDA tensors (or CPU tensors under "
                       "TRITON_INTERPRET=1)")
    return reasons


def why_not(backend: str, op: str, device, dtype: torch.dtype | None = None, explicit: bool = False) -> str | None:
    """None if `backend` can run `op` on `device` with float inputs of `dtype`, else every reason it cannot,
    joined by '; '. explicit: the backend was asked for by name (only the Triton interpreter cares)."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; expected one of {BACKENDS + ('auto',)}"
    if op not in OPS:
        return f"unknown op {op!r}; expected one of {OPS}"
    device = torch.device(device)
    reasons: list[str] = []
    if backend == "cpu":
        if device.type != "cpu":
            reasons.append(f"inputs are on {device}, the C++ kernels take CPU tensors")
        reasons.append(_compiled_reason(op, "CPU"))
    elif backend == "cuda":
        if device.type != "cuda":
            reasons.append(f"inputs are on {device}, not a CUDA device")
        reasons.append(_compiled_reason(op, "CUDA"))
    elif backend == "triton":
        reasons += _triton_reasons(op, device, explicit)
    reasons.append(_dtype_reason(backend, op, device, dtype))
    reasons = [r for r in reasons if r is not None]
    return "; ".join(reasons) if reasons else None


def skipped_backends() -> set[str]:
    """The backends HAWK_KERNELS_SKIP names (an unknown name raises: a typo must not silently skip nothing)."""
    names = {n.strip() for n in os.environ.get(SKIP_ENV, "").split(",") if n.strip()}
    unknown = names - set(BACKENDS)
    if unknown:
        raise ValueError(f"{SKIP_ENV}: unknown backend(s) {sorted(unknown)}; expected names from {BACKENDS}")
    return names


def pick(op: str, device, backend: str = "auto", dtype: torch.dtype | None = None) -> str:
    """The backend that runs `op`: `backend` itself if it can, else a RuntimeError naming the op and every
    reason; for "auto" the first of BACKENDS that can (a RuntimeError with every backend's reasons if none)."""
    device = torch.device(device)
    where = f"{op} on {device}" + (f" with {_name(dtype)} inputs" if dtype is not None else "")
    if backend != "auto":
        reason = why_not(backend, op, device, dtype, explicit=True)
        if reason is not None:
            raise RuntimeError(f"backend={backend!r} cannot run {where}: {reason}")
        return backend
    refusals = []
    skipped = skipped_backends()
    for candidate in BACKENDS:
        reason = f"skipped ({SKIP_ENV}={os.environ[SKIP_ENV]})" if candidate in skipped else \
            why_not(candidate, op, device, dtype)
        if reason is None:
            return candidate
        refusals.append(f"{candidate}: {reason}")
    raise RuntimeError(f"no backend can run {where}: " + " | ".join(refusals))


# ------------------------------------------------------------------------------------------------ implementations


def _compiled_accept_reject(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms, rule):
    return torch.ops.hawk.accept_reject.default(target_logits, draft_logits, node_tokens, node_parent, node_law,
                                                uniforms, rule == "match")


def _implementation(op: str, backend: str) -> Callable:
    """The callable of `op` on `backend`, positional signature of the public op minus `backend`."""
    if backend == "reference":
        from . import reference

        return getattr(reference, op)
    if backend == "triton":
        from .triton import KERNELS

        module = importlib.import_module(f"{__package__}.triton.{KERNELS[op]}")
        return getattr(module, op)
    from . import _library  # noqa: F401  (loads _C: the schemas and fake kernels)

    if op == "accept_reject":
        return _compiled_accept_reject
    return getattr(torch.ops.hawk, op).default


def bind(op: str, device, backend: str = "auto", dtype: torch.dtype | None = None) -> Callable:
    """Picks the backend of `op` once and returns its implementation, which checks nothing and dispatches
    nothing further. Positional signatures (the public op's, minus `backend`):
        accept_reject(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms, rule)
        draft_heads(hidden, res_weight, res_bias, proj_weight, inv_temperature)
        philox_uniforms(seed, offset, shape_tuple, stream)
        tree_mask(node_parent, max_depth)
    The returned callable has `.backend` (the chosen name) and `.op`."""
    chosen = pick(op, device, backend, dtype)
    bound = functools.partial(_implementation(op, chosen))
    bound.backend, bound.op = chosen, op
    return bound


@dataclass(frozen=True)
class Kernels:
    """The four ops bound once for one device and model dtype (see bind for their signatures)."""

    accept_reject: Callable
    draft_heads: Callable
    philox_uniforms: Callable
    tree_mask: Callable

    def backends(self) -> dict[str, str]:
        """op -> chosen backend, for logs."""
        return {op: getattr(self, op).backend for op in OPS}


def bind_kernels(device, dtype: torch.dtype, backend: str = "auto") -> Kernels:
    """Binds every op once for a model of float `dtype` on `device`. accept_reject is bound for the logits the
    decoder hands it: float64 for a float64 model, float32 (processed logits) otherwise."""
    device = torch.device(device)
    logits_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return Kernels(accept_reject=bind("accept_reject", device, backend, logits_dtype),
                   draft_heads=bind("draft_heads", device, backend, dtype),
                   philox_uniforms=bind("philox_uniforms", device, backend),
                   tree_mask=bind("tree_mask", device, backend))
