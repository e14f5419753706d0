"""Triton-only checks: every kernel compiles ahead of time for sm_90 (no GPU needed), and on a GPU the
hawk::*_triton ops pass opcheck (under the interpreter fake tensors would reach the kernels)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "hawk_kernels.ops.triton.compile_check", "--arch", "90"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") >= 16, result.stdout


# Every @triton.jit kernel: the integer arguments that change from call to call (not specialised, so a new
# size reuses the compiled kernel). Model sizes (width, vocab, heads) may stay specialised; BLOCK_* are constexpr.
PER_CALL = {
    ("accept_reject", "_draft_stats_kernel"): {"total_rows"},
    ("accept_reject", "_decide_kernel"): {"items", "num_nodes", "num_rows"},
    ("accept_reject", "_walk_kernel"): {"num_nodes"},
    ("draft_heads", "_resblock_kernel"): {"tokens", "layer"},
    ("draft_heads", "_projection_kernel"): {"rows", "tokens"},
    ("draft_heads", "_logsoftmax_finish_kernel"): set(),  # sizes per model (vocab, tiles); T*H is the grid
    ("philox", "_philox_uniforms_kernel"): {"numel", "stream", "seed_stride", "offset_stride", "first_row"},
    ("tree_mask", "_tree_mask_kernel"): {"num_nodes", "max_depth"},
}


def test_per_call_sizes_are_not_specialised():
    import importlib
    import inspect

    from hawk_kernels.ops.triton import KERNELS

    launched = set()
    for module_name in set(KERNELS.values()):
        module = importlib.import_module(f"hawk_kernels.ops.triton.{module_name}")
        source = inspect.getsource(module)
        launched |= {(module_name, name) for name in dir(module) if f"launch({name})" in source}
    assert launched == set(PER_CALL), "every launched kernel must be listed in PER_CALL"
    for (module_name, name), sizes in PER_CALL.items():
        kernel = getattr(importlib.import_module(f"hawk_kernels.ops.triton.{module_name}"), name)
        # JITFunction keeps the list; the interpreter's InterpretedFunction keeps the decorator's kwargs
        declared = (getattr(kernel, "do_not_specialize", None) or getattr(kernel, "kwargs", {}).get("do_not_specialize")
                    or [])
        params = inspect.signature(kernel.fn).parameters
        assert sizes <= set(declared) <= set(params), (name, declared)
        assert all(params[p].annotation is inspect.Parameter.empty for p in declared), name  # none is constexpr


def test_launch_takes_the_bare_kernel_only_under_the_interpreter(monkeypatch):
    """torch 2.11's wrap_triton (the GPU machine's) rejects the interpreter's kernels: those launch bare on CPU
    tensors; a compiled kernel that wrap_triton rejects still raises."""
    import torch.library

    from hawk_kernels.ops.triton import launch

    def rejects(kernel):
        raise RuntimeError("wrap_triton only works on functions annotated with triton.jit or triton.autotune")

    monkeypatch.setattr(torch.library, "wrap_triton", rejects)
    kernel = object()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert launch(kernel) is kernel
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="wrap_triton only works"):
        launch(kernel)


@pytest.mark.cuda
def test_opcheck_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from hawk_kernels.ops.triton import accept_reject, draft_heads, tree_mask  # noqa: F401  (registers the ops)

    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    parents = torch.tensor([-1, 0, 0, 1, 1, 2], device=dev)
    logits = lambda *s: torch.randn(*s, generator=g).to(dev)
    args = (logits(2, 6, 300), logits(2, 3, 300), torch.randint(0, 300, (2, 6), generator=g).to(dev), parents,
            torch.randint(0, 3, (2, 6), generator=g).to(dev), torch.rand(2, 6, 2, generator=g).to(dev), False)
    torch.library.opcheck(torch.ops.hawk.accept_reject_triton.default, args)
    torch.library.opcheck(torch.ops.hawk.tree_mask_triton.default, (parents, 2))
    heads = (logits(5, 32), logits(3, 2, 32, 32) * 0.1, logits(3, 2, 32), logits(1, 500, 32), 1.0)
    torch.library.opcheck(torch.ops.hawk.draft_heads_triton.default, heads)
