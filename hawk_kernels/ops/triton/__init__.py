"""Triton kernels: one file per op (launch wrapper on top, @triton.jit kernel below).

Each op is also a torch op (hawk::<op>_triton, declared with torch.library.triton_op) so torch.compile
traces into it. Import them as `from hawk_kernels.ops.triton.<op> import <op>` (lazily: `import hawk_kernels`
never imports triton).
"""
from __future__ import annotations

import importlib.util
import os

import torch

OPS = ("accept_reject", "tree_mask", "draft_heads", "philox_uniforms")
MODULES = {"philox_uniforms": "philox"}  # op -> module file, where they differ


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (kernels run on CPU tensors through Triton's numpy interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def unavailable_reason(op: str, device: torch.device | None = None, explicit: bool = False) -> str | None:
    """None if the Triton kernel of `op` can take tensors on `device`, else why not."""
    if op not in OPS or not os.path.exists(os.path.join(os.path.dirname(__file__), f"{MODULES.get(op, op)}.py")):
        return f"no Triton kernel for {op}"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if device is None or device.type == "cuda":
        return None
    if device.type == "cpu" and interpreting():
        return None if explicit else "inputs are on cpu; the Triton interpreter is used only when asked for by name"
    return f"inputs are on {device}; Triton runs on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1)"

