"""Whether the cuda-marked tests may run, decided ONCE per session (tests/conftest.py installs hooks() below).

Without a CUDA device, cuda-marked tests skip ("no CUDA device"). WITH one, they must not skip for a reason that
is a broken setup: on a GPU host that imports a hawk_kernels without the compiled `_C` (a non-editable install
shadowed by the source tree), or a `_C` built without its CUDA kernels, or a Triton that cannot compile a kernel,
every CUDA test would skip and the run would look green (issue 18). So there, every cuda-marked test FAILS with
the reason, before its body runs (deselect them with -m "not cuda" to run the rest on such a host).

    problems(probes)                 the reasons the probes give (empty: all is well)
    hooks(cuda_available, probes)    the two pytest hooks (collection: skip without CUDA; call: fail with reasons)
    compiled_problem(library)        _C missing, or without a CUDA kernel for some hawk op
    triton_problem(device)           Triton missing, interpreting on a GPU host, or failing on a trivial kernel
"""
from __future__ import annotations

from typing import Callable, Sequence

import pytest

OPS = ("accept_reject", "draft_heads", "philox_uniforms", "tree_mask")
DESELECT = 'deselect the CUDA tests with -m "not cuda" to run the rest on this host'


def compiled_problem(library=None) -> str | None:
    """Why the compiled hawk kernels cannot serve the CUDA tests (None: _C loads and has every op's CUDA kernel).
    library: hawk_kernels.ops._library, or a stand-in with compiled_available(), load_error(), has_kernel()."""
    if library is None:
        from hawk_kernels.ops import _library as library
    import hawk_kernels

    where = f"hawk_kernels imported from {hawk_kernels.__file__}"
    build = ("build it in place (HAWK_BUILD_CUDA=1 python setup.py build_ext --inplace) and run pytest with the "
             "repository root first on PYTHONPATH")
    if not library.compiled_available():
        return f"hawk_kernels._C is not importable ({library.load_error()}; {where}): {build}"
    missing = [op for op in OPS if not library.has_kernel(op, "CUDA")]
    if missing:
        return f"hawk_kernels._C was built without CUDA kernels (none for {', '.join(missing)}; {where}): {build}"
    return None


def triton_problem(device: str = "cuda") -> str | None:
    """Why Triton cannot run the Triton kernels on `device` (None: a trivial kernel compiled, ran and was right)."""
    import importlib.util
    import os

    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    interpreting = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
    if device != "cpu" and interpreting:
        return "TRITON_INTERPRET is set on a CUDA host: the Triton kernels would run in the interpreter, not compiled"
    try:
        from triton_probe import add_one_problem

        return add_one_problem(device)
    except Exception as exc:  # compilation or launch failed
        return f"Triton cannot compile and run a trivial kernel on {device}: {type(exc).__name__}: {exc}"


PROBES: tuple[Callable[[], str | None], ...] = (compiled_problem, triton_problem)


def problems(probes: Sequence[Callable[[], str | None]]) -> list[str]:
    out = []
    for probe in probes:
        try:
            reason = probe()
        except Exception as exc:  # a probe that crashes is a broken setup too
            reason = f"{getattr(probe, '__name__', 'probe')} raised {type(exc).__name__}: {exc}"
        if reason:
            out.append(reason)
    return out


def hooks(cuda_available: Callable[[], bool], probes: Sequence[Callable[[], str | None]] = PROBES):
    """(pytest_collection_modifyitems, pytest_pyfunc_call) for a conftest: without CUDA, cuda-marked tests skip;
    with it, the probes run once (at the first cuda-marked test) and, if any names a problem, every cuda-marked
    test fails with all of them."""
    found: list[list[str]] = []

    def pytest_collection_modifyitems(config, items):
        if cuda_available():
            return
        skip = pytest.mark.skip(reason="no CUDA device")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(pyfuncitem):
        if "cuda" not in pyfuncitem.keywords or not cuda_available():
            return None
        if not found:
            found.append(problems(probes))
        if found[0]:
            pytest.fail("a CUDA device is present, but the CUDA tests cannot test the CUDA kernels: "
                        + " | ".join(found[0]) + f" ({DESELECT})", pytrace=False)
        return None

    return pytest_collection_modifyitems, pytest_pyfunc_call
