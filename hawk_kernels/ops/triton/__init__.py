"""Triton kernels: one file per op (launch wrapper on top, @triton.jit kernel below).

Each op is also a torch op (hawk::<op>_triton, declared with torch.library.triton_op) so torch.compile
traces into it. Which backend runs an op is decided in ops/_backend.py only; import a kernel as
`from hawk_kernels.ops.triton.<module> import <op>` (lazily: `import hawk_kernels` never imports triton).
"""
from __future__ import annotations

import os

KERNELS = {  # op -> module file under ops/triton/
    "accept_reject": "accept_reject",
    "draft_heads": "draft_heads",
    "philox_uniforms": "philox",
    "tree_mask": "tree_mask",
}


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (kernels run on CPU tensors through Triton's numpy interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def launch(kernel):
    """`wrap_triton(kernel)`: the launch form torch.compile traces inside a `triton_op`. Under the interpreter
    on torch 2.11 (the GPU machine's), wrap_triton takes only compiled kernels (triton.jit / autotune objects) and
    raises on the interpreter's; those run eagerly on CPU tensors, so the kernel itself is launched."""
    from torch.library import wrap_triton

    try:
        return wrap_triton(kernel)
    except RuntimeError:
        if interpreting():
            return kernel
        raise
