"""ops/_backend.py: the one place that picks a backend, names every reason for a refusal, and binds the
implementations once (bind, bind_kernels) for the decoder's hot loop."""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.ops import _backend, _library, reference
from conftest import require

CPU = torch.device("cpu")
COMPILED = _library.compiled_available()


def test_why_not_names_every_reason():
    """cuda on CPU float64 inputs, in a CPU-only build: the device, the missing kernels and the dtype."""
    if torch.cuda.is_available():
        pytest.skip("needs a host without CUDA kernels")
    reason = _backend.why_not("cuda", "draft_heads", CPU, torch.float64)
    assert "not a CUDA device" in reason
    assert "float64" in reason and "float16, bfloat16, float32" in reason
    assert ("without CUDA kernels" in reason) or ("not importable" in reason)
    assert len(reason.split("; ")) == 3


def test_why_not_dtypes_read_off_the_kernels():
    why = lambda backend, op, dtype, device=CPU: _backend.why_not(backend, op, device, dtype, explicit=True)
    assert why("reference", "draft_heads", torch.float64) is None
    assert why("reference", "accept_reject", torch.bfloat16) is None
    if COMPILED:  # the C++ CPU ops upcast: every float dtype, float64 included
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            assert why("cpu", "draft_heads", dtype) is None and why("cpu", "accept_reject", dtype) is None
    cuda = torch.device("cuda")
    for op in ("draft_heads", "accept_reject"):  # the GPU kernels stop at float32
        assert "not float64" in why("cuda", op, torch.float64, cuda)
        assert "not float64" in why("triton", op, torch.float64, cuda)
    assert "takes int64, not float32" in why("reference", "tree_mask", torch.float32)
    assert why("cpu", "philox_uniforms", None, torch.device("meta")).startswith("inputs are on meta")
    assert "unknown op" in _backend.why_not("cpu", "softmax", CPU)
    assert "unknown backend" in _backend.why_not("tpu", "tree_mask", CPU)


def test_triton_interpreter_only_by_name(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if _backend.why_not("triton", "tree_mask", CPU, explicit=True) is not None:
        pytest.skip("triton is not installed")
    assert "only when asked for by name" in _backend.why_not("triton", "tree_mask", CPU)
    assert "computes correctly in float32, not bfloat16" in _backend.why_not(
        "triton", "accept_reject", CPU, torch.bfloat16, explicit=True)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "Triton runs on CUDA tensors" in _backend.why_not("triton", "tree_mask", CPU, explicit=True)


def test_pick_auto_and_explicit():
    assert _backend.pick("tree_mask", CPU) == ("cpu" if COMPILED else "reference")
    assert _backend.pick("draft_heads", CPU, "reference", torch.float64) == "reference"
    with pytest.raises(RuntimeError) as err:
        _backend.pick("draft_heads", CPU, "cuda", torch.float64)
    message = str(err.value)
    assert message.startswith("backend='cuda' cannot run draft_heads on cpu with float64 inputs: ")
    assert "not a CUDA device" in message and "not float64" in message
    with pytest.raises(RuntimeError, match="no backend can run draft_heads .*reference: the reference draft_heads "
                                           "takes float16, bfloat16, float32, float64, not int64"):
        _backend.pick("draft_heads", CPU, "auto", torch.int64)


def test_auto_passes_over_the_backends_the_environment_skips(monkeypatch):
    """HAWK_KERNELS_SKIP: "auto" takes the next backend that can (the reason is in the refusals); a backend named
    explicitly is not affected; an unknown name is an error, not a silent no-op."""
    monkeypatch.setenv(_backend.SKIP_ENV, "cpu")
    assert _backend.pick("tree_mask", CPU) == "reference"
    assert _backend.bind_kernels(CPU, torch.float32).backends() == dict.fromkeys(_backend.OPS, "reference")
    if COMPILED:
        assert _backend.pick("tree_mask", CPU, "cpu") == "cpu"
    monkeypatch.setenv(_backend.SKIP_ENV, "cpu, reference")
    with pytest.raises(RuntimeError, match=r"reference: skipped \(HAWK_KERNELS_SKIP=cpu, reference\)"):
        _backend.pick("tree_mask", CPU)
    monkeypatch.setenv(_backend.SKIP_ENV, "cuda,cudaa")
    with pytest.raises(ValueError, match=r"HAWK_KERNELS_SKIP: unknown backend\(s\) \['cudaa'\]"):
        _backend.pick("tree_mask", CPU)


def test_explicit_request_through_the_public_ops():
    """The op names itself and every reason; float64 and CPU tensors are both wrong for the CUDA kernels."""
    hidden = torch.randn(2, 8, dtype=torch.float64)
    args = (hidden, torch.zeros(1, 1, 8, 8, dtype=torch.float64), torch.zeros(1, 1, 8, dtype=torch.float64),
            torch.randn(1, 11, 8, dtype=torch.float64))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"backend='cuda' cannot run draft_heads on cpu with float64 inputs: "
                                               r"inputs are on cpu, not a CUDA device; .*; .*not float64"):
            ops.draft_heads(*args, backend="cuda")
    with pytest.raises(RuntimeError, match="backend='triton' cannot run draft_heads .*not float64"):
        ops.draft_heads(*args, backend="triton")
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run tree_mask on cpu: inputs are on cpu"):
        ops.tree_mask(torch.tensor([-1, 0]), 1, backend="cuda")


@pytest.mark.parametrize("op", _backend.OPS)
def test_bind_returns_the_implementation_with_its_backend(op):
    bound = _backend.bind(op, "cpu", "reference")
    assert bound.backend == "reference" and bound.op == op
    auto = _backend.bind(op, CPU)
    assert auto.backend == _backend.pick(op, CPU)


def test_bound_callables_take_the_public_positional_signatures():
    """Every backend bound on CPU gives the reference's results through the documented signatures."""
    g = torch.Generator().manual_seed(0)
    parents = torch.tensor([-1, 0, 0, 1, 1, 2])
    target, draft = torch.randn(2, 6, 30, generator=g), torch.randn(2, 3, 30, generator=g)
    tokens, laws = torch.randint(0, 30, (2, 6), generator=g), torch.randint(0, 3, (2, 6), generator=g)
    uniforms = torch.rand(2, 6, 2, generator=g)
    heads = (torch.randn(3, 16, generator=g), torch.randn(2, 1, 16, 16, generator=g) * 0.2,
             torch.randn(2, 1, 16, generator=g) * 0.1, torch.randn(1, 40, 16, generator=g), 1.25)
    seed, offset = torch.tensor(5), torch.tensor(7)
    for backend in ("reference", "cpu"):
        if _backend.why_not(backend, "tree_mask", CPU):
            continue
        for rule in ("rejection", "match"):
            got = _backend.bind("accept_reject", CPU, backend, torch.float32)(target, draft, tokens, parents, laws,
                                                                              uniforms, rule)
            want = reference.accept_reject(target, draft, tokens, parents, laws, uniforms, rule)
            assert all(torch.equal(a, b) for a, b in zip(got, want)), (backend, rule)
        got = _backend.bind("draft_heads", CPU, backend, torch.float32)(*heads)
        torch.testing.assert_close(got, reference.draft_heads(*heads), rtol=0, atol=1e-5)
        got = _backend.bind("philox_uniforms", CPU, backend)(seed, offset, (4, 3), 16)
        assert torch.equal(got, reference.philox_uniforms(seed, offset, (4, 3), 16))
        got = _backend.bind("tree_mask", CPU, backend)(parents, 3)
        assert all(torch.equal(a, b) for a, b in zip(got, reference.tree_mask(parents, 3)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_bind_kernels_on_cpu(dtype):
    kernels = _backend.bind_kernels("cpu", dtype)
    assert isinstance(kernels, _backend.Kernels)
    want = "cpu" if COMPILED else "reference"  # the C++ ops take every float dtype, float64 included
    assert kernels.backends() == {op: want for op in _backend.OPS}
    with pytest.raises(Exception):  # frozen
        kernels.tree_mask = None


def test_bind_kernels_explicit_backends():
    kernels = _backend.bind_kernels(CPU, torch.float64, backend="reference")
    assert set(kernels.backends().values()) == {"reference"}
    if COMPILED:
        assert set(_backend.bind_kernels(CPU, torch.float64, backend="cpu").backends().values()) == {"cpu"}
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run accept_reject on cpu with float64 inputs"):
        _backend.bind_kernels(CPU, torch.float64, backend="cuda")


@pytest.mark.cuda
def test_bind_kernels_on_gpu():
    require("cuda", "draft_heads")
    assert set(_backend.bind_kernels("cuda", torch.bfloat16).backends().values()) == {"cuda"}
    float64 = _backend.bind_kernels("cuda", torch.float64).backends()
    # no CUDA / Triton kernel keeps float64: the reference computes those two ops on the GPU tensors
    assert float64 == {"accept_reject": "reference", "draft_heads": "reference", "philox_uniforms": "cuda",
                       "tree_mask": "cuda"}
