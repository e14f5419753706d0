"""tests/cuda_checks.py on a CPU: with a (fake) CUDA device and a broken setup, a cuda-marked test FAILS, with the
reason, instead of skipping; without one it skips; a healthy setup runs it. The probes themselves run here too:
the _C check against stand-in libraries, the Triton probe kernel under Triton's interpreter."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cuda_checks

TESTS = Path(__file__).resolve().parent


class FakeLibrary:
    def __init__(self, importable=True, cuda_ops=cuda_checks.OPS):
        self.importable, self.cuda_ops = importable, set(cuda_ops)

    def compiled_available(self):
        return self.importable

    def load_error(self):
        return None if self.importable else "No module named 'hawk_kernels._C'"

    def has_kernel(self, op, key):
        return self.importable and (key != "CUDA" or op in self.cuda_ops)


def test_compiled_problem_names_a_missing_or_cpu_only_build():
    assert cuda_checks.compiled_problem(FakeLibrary()) is None
    missing = cuda_checks.compiled_problem(FakeLibrary(importable=False))
    assert "hawk_kernels._C is not importable (No module named 'hawk_kernels._C'" in missing
    assert "build_ext --inplace" in missing and "hawk_kernels imported from" in missing
    cpu_only = cuda_checks.compiled_problem(FakeLibrary(cuda_ops=()))
    assert "built without CUDA kernels (none for accept_reject, draft_heads, philox_uniforms, tree_mask" in cpu_only
    one = cuda_checks.compiled_problem(FakeLibrary(cuda_ops=set(cuda_checks.OPS) - {"tree_mask"}))
    assert "(none for tree_mask;" in one


def test_problems_collects_every_reason_and_a_crashing_probe():
    def crashes():
        raise RuntimeError("CUDA driver too old")

    assert cuda_checks.problems([lambda: None, lambda: None]) == []
    assert cuda_checks.problems([lambda: "a", lambda: None, crashes]) == ["a", "crashes raised RuntimeError: CUDA "
                                                                               "driver too old"]


class FakeItem:
    def __init__(self, cuda: bool):
        self.keywords = {"cuda": True} if cuda else {}
        self.markers = []

    def add_marker(self, marker):
        self.markers.append(marker)


def test_hooks_skip_without_cuda_and_fail_with_a_broken_setup():
    calls = []

    def probe():
        calls.append(1)
        return "hawk_kernels._C was built without CUDA kernels"

    # no CUDA: cuda-marked items get the skip marker, the probes never run, nothing fails
    collect, call = cuda_checks.hooks(lambda: False, [probe])
    items = [FakeItem(cuda=True), FakeItem(cuda=False)]
    collect(None, items)
    assert [m.kwargs["reason"] for m in items[0].markers] == ["no CUDA device"] and items[1].markers == []
    assert call(items[0]) is None and calls == []

    # CUDA and a broken build: every cuda-marked test fails with the reason; probes run once; others run
    collect, call = cuda_checks.hooks(lambda: True, [probe, lambda: "triton is not installed"])
    items = [FakeItem(cuda=True), FakeItem(cuda=False)]
    collect(None, items)
    assert items[0].markers == []
    for _ in range(2):
        with pytest.raises(pytest.fail.Exception, match=r"CUDA device is present.*built without CUDA kernels \| "
                                                        r"triton is not installed"):
            call(FakeItem(cuda=True))
    assert calls == [1] and call(FakeItem(cuda=False)) is None

    # CUDA and a healthy build: the test runs
    collect, call = cuda_checks.hooks(lambda: True, [lambda: None])
    assert call(FakeItem(cuda=True)) is None


def _pytest(tmp_path: Path, cuda: bool, problem: str | None) -> subprocess.CompletedProcess:
    """A real pytest session whose conftest installs the hooks with a fake device and a fake probe."""
    (tmp_path / "conftest.py").write_text(
        "import cuda_checks\n"
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'cuda: x')\n"
        f"pytest_collection_modifyitems, pytest_pyfunc_call = cuda_checks.hooks(lambda: {cuda}, [lambda: {problem!r}])\n")
    (tmp_path / "test_fake.py").write_text(
        "import pytest\n"
        "@pytest.mark.cuda\n"
        "def test_kernel():\n"
        "    pytest.skip('_C is not importable')  # what the op tests did on a GPU host with no _C\n"
        "def test_cpu():\n"
        "    pass\n")
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cuda,problem,summary", [
    (False, "hawk_kernels._C is not importable", "1 passed, 1 skipped"),
    (True, "hawk_kernels._C is not importable", "1 failed, 1 passed"),
    (True, None, "1 passed, 1 skipped"),  # healthy: the test body runs (and here skips by itself)
])
def test_in_a_real_session(tmp_path, cuda, problem, summary):
    out = _pytest(tmp_path, cuda, problem)
    assert summary in out.stdout, out.stdout + out.stderr
    if problem and cuda:
        assert "FAILED" in out.stdout and "a CUDA device is present" in out.stdout and problem in out.stdout


def test_triton_probe_kernel_runs_under_the_interpreter():
    """The probe kernel itself (the GPU host compiles it; here Triton's interpreter runs it on CPU tensors)."""
    pytest.importorskip("triton")
    env = dict(os.environ, PYTHONPATH=str(TESTS), TRITON_INTERPRET="1")
    code = "import cuda_checks; print(repr(cuda_checks.triton_problem('cpu')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stdout + out.stderr
    interpreting_on_gpu = subprocess.run([sys.executable, "-c", code.replace("'cpu'", "'cuda'")], env=env,
                                         capture_output=True, text=True, timeout=120)
    assert "TRITON_INTERPRET is set on a CUDA host" in interpreting_on_gpu.stdout
