"""draft_heads: every backend within a stated tolerance of the float64 reference on the same inputs.

Tolerances on draft_logq (absolute): float32 inputs 1e-5 * scale of the logits (fp32 math against float64),
bf16 / fp16 inputs 2e-2 on CUDA (bf16 GEMM operands and ResBlock state, as the model runs) and 1e-4 on CPU
(which upcasts to float32 before any math).
"""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.ops import reference
from conftest import backend_params, require

SHAPES = [  # (tokens, width, heads, layers, vocab, shared projection)
    (1, 16, 1, 1, 37, True),
    (5, 32, 3, 1, 1000, True),
    (17, 48, 5, 2, 301, False),
    (4, 16, 2, 0, 64, False),
    (3, 64, 4, 3, 129, True),
]


def make_inputs(tokens, width, heads, layers, vocab, shared, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    scale = width ** -0.5
    return dict(
        hidden=torch.randn(tokens, width, generator=g).to(dtype),
        res_weight=(torch.randn(heads, layers, width, width, generator=g) * scale).to(dtype),
        res_bias=(torch.randn(heads, layers, width, generator=g) * 0.1).to(dtype),
        proj_weight=(torch.randn(1 if shared else heads, vocab, width, generator=g) * 2 * scale).to(dtype),
    )


def tolerance(dtype, device):
    if dtype == torch.float32:
        return 1e-5
    return 2e-2 if device.type == "cuda" else 1e-4


def expected(inputs, inv_temperature):
    return reference.draft_heads(**inputs, inv_temperature=inv_temperature, compute_dtype=torch.float64)


@pytest.mark.parametrize("backend", backend_params("draft_heads"))
@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_matches_reference(backend, shape, dtype):
    _check_against_reference(backend, dtype, make_inputs(*SHAPES[shape], seed=shape, dtype=dtype),
                             1.0 if shape % 2 else 1.7)


def _check_against_reference(backend, dtype, inputs, inv_temperature):
    device = require(backend, "draft_heads", dtype)  # the Triton interpreter: fp32 only (bf16 on the GPU)
    want = expected(inputs, inv_temperature)
    got = ops.draft_heads(**{k: v.to(device) for k, v in inputs.items()}, inv_temperature=inv_temperature,
                          backend=backend)
    assert got.dtype == torch.float32 and got.shape == want.shape
    err = (got.cpu().double() - want).abs().max().item()
    scale = max(1.0, want.abs().max().item())
    assert err <= tolerance(dtype, device) * scale, f"max abs error {err:.3g} (scale {scale:.3g})"


# Decode sizes: the small-T weight-streaming path of the CUDA and Triton kernels (at most 32 rows per GEMM; the
# shared projection's rows are heads x tokens). Widths not a multiple of the 64-k step or the 32-column tile,
# vocabularies not a multiple of 32; the last rows cross the 32-row limit (T = 32 with a shared lm_head: 64
# projection rows) or a width not a multiple of 8 (CUDA: the cuBLAS path).
SMALL_T = [  # (tokens, width, heads, layers, vocab, shared projection)
    (1, 40, 3, 1, 200, True),
    (2, 72, 5, 1, 257, True),  # the 7B layout scaled down: 10 projection rows
    (2, 200, 8, 2, 97, True),
    (5, 136, 4, 2, 100, False),  # per-head projections
    (5, 56, 5, 1, 33, True),  # 25 projection rows
    (8, 96, 4, 1, 300, True),  # 32 projection rows
    (32, 64, 1, 2, 64, False),  # 32 ResBlock rows
    (32, 48, 2, 3, 129, True),  # 64 projection rows: past the small-T limit
    (8, 20, 2, 1, 50, True),  # width % 8 != 0
]


@pytest.mark.parametrize("backend", backend_params("draft_heads"))
@pytest.mark.parametrize("shape", SMALL_T, ids=lambda s: "T{}-d{}-H{}-L{}-V{}-{}".format(*s[:5], "PS"[s[5]]))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_small_tokens_match_reference(backend, shape, dtype):
    _check_against_reference(backend, dtype, make_inputs(*shape, seed=shape[0] + shape[1], dtype=dtype), 1.4)


@pytest.mark.cuda
@pytest.mark.parametrize("tokens", [1, 2, 5, 32])
def test_cuda_small_tokens_are_deterministic(tokens):
    """The small-T CUDA path adds its warps' partial sums in a fixed order: the same inputs, the same bits."""
    device = require("cuda", "draft_heads", torch.bfloat16)
    inputs = {k: v.to(device) for k, v in make_inputs(tokens, 256, 5, 1, 1000, True, seed=3,
                                                      dtype=torch.bfloat16).items()}
    first = ops.draft_heads(**inputs, backend="cuda")
    assert torch.equal(first, ops.draft_heads(**inputs, backend="cuda"))


@pytest.mark.parametrize("backend", ["auto", "reference", "cpu"])
def test_float64_in_float64_out(backend):
    """float64 inputs: the reference or the C++ CPU op (which computes in double), never a float32 kernel."""
    if backend == "cpu":
        require("cpu", "draft_heads", torch.float64)
    inputs = make_inputs(*SHAPES[2], seed=0, dtype=torch.float64)
    got = ops.draft_heads(**inputs, inv_temperature=1.3, backend=backend)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected(inputs, 1.3), rtol=0, atol=1e-12)


def test_opcheck():
    require("cpu", "draft_heads")
    for shape in (SHAPES[1], SHAPES[2]):
        inputs = make_inputs(*shape, seed=1)
        torch.library.opcheck(torch.ops.hawk.draft_heads.default, tuple(inputs.values()) + (1.3,))


def test_compiled_op_checks_its_arguments():
    """csrc/op_args.h: the checks the CPU and CUDA kernels share, each message naming the argument."""
    require("cpu", "draft_heads")
    inputs = make_inputs(*SHAPES[2], seed=0)  # T 17, d 48, H 5, L 2, V 301, per-head projections
    op = lambda inv_temperature=1.0, **changed: torch.ops.hawk.draft_heads(*{**inputs, **changed}.values(),
                                                                           inv_temperature)
    with pytest.raises(RuntimeError, match=r"res_bias: expected shape \[5, 2, 48\], got \[5, 2, 47\]"):
        op(res_bias=inputs["res_bias"][..., :-1])
    with pytest.raises(RuntimeError, match=r"res_weight: expected shape \[\*, \*, 48, 48\]"):
        op(res_weight=inputs["res_weight"][..., :-1])
    with pytest.raises(RuntimeError, match="proj_weight: expected 1 \\(shared\\) or 5 projections"):
        op(proj_weight=inputs["proj_weight"][:2])
    with pytest.raises(RuntimeError, match="proj_weight: expected dtype Float, got Double"):
        op(proj_weight=inputs["proj_weight"].double())
    with pytest.raises(RuntimeError, match="hidden: expected dtype float16, bfloat16, float32 or float64, got Long"):
        op(hidden=inputs["hidden"].long())
    with pytest.raises(RuntimeError, match="inv_temperature"):
        op(0.0)


def test_bad_inputs_name_the_argument():
    inputs = make_inputs(*SHAPES[1], seed=0)
    with pytest.raises(ValueError, match="proj_weight"):
        ops.draft_heads(**{**inputs, "proj_weight": inputs["proj_weight"].expand(2, -1, -1)})
    with pytest.raises(ValueError, match="res_bias"):
        ops.draft_heads(**{**inputs, "res_bias": inputs["res_bias"][:, :, :-1]})
    with pytest.raises(TypeError, match="res_weight"):
        ops.draft_heads(**{**inputs, "res_weight": inputs["res_weight"].double()})
    with pytest.raises(ValueError, match="inv_temperature"):
        ops.draft_heads(**inputs, inv_temperature=0.0)
