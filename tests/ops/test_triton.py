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
    torch.library.opcheck(torch.ops.hawk.tree_mask_triton.default, (parents, torch.tensor([4, 9], device=dev), 2))
    heads = (logits(5, 32), logits(3, 2, 32, 32) * 0.1, logits(3, 2, 32), logits(1, 500, 32), 1.0)
    torch.library.opcheck(torch.ops.hawk.draft_heads_triton.default, heads)
