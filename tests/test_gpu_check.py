"""scripts/gpu_check.sh's own flow, on the CPU (each step's script is smoke-run elsewhere: test_benchmarks_smoke):
with a stand-in for the step commands, every step in its order and form, the summary, the targets table and the
tarball; a second call skips the build by its stamp; a failing step is recorded and the exit status is 1. In a copy
of the tree: the script writes build/ and its stamp where it runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["build", "canary", "tests_cuda", "e2e_7b", "kernel_bench", "tests_cuda_compiled", "sanitizer_memcheck",
         "sanitizer_racecheck", "e2e_flex", "e2e_bundled", "step_ops", "real_shapes", "tree_size",
         "tree_size_uncalibrated", "sanitizer_synccheck", "sanitizer_initcheck", "heads_training"]
CPU_FORMS = {"build", "e2e_7b", "kernel_bench", "step_ops", "real_shapes", "tree_size", "tree_size_uncalibrated",
             "heads_training"}
# the real interpreter for inline code (the GPU probe, the import check, the build key, the summary); a stand-in for
# every step's command, which fails where FAIL_STEP names it; FAKE_GPU: the GPU probe says there is one;
# FAKE_CARRIED_OK: a carried _C passes its check (it loads and holds the CUDA kernels)
FAKE_PYTHON = """#!/bin/bash
if [ -n "${{FAKE_GPU:-}}" ] && [[ "$2" == "import sys, torch; sys.exit(0 if torch.cuda.is_available()"* ]]; then exit 0; fi
if [ -n "${{FAKE_CARRIED_OK:-}}" ] && [[ "$2" == *"_library.has_kernel(op"* ]]; then exit 0; fi
if [ "$1" = "-" ] || [ "$1" = "-c" ]; then exec "{python}" "$@"; fi
if [ -n "${{FAIL_STEP:-}}" ] && [[ "$*" == *"$FAIL_STEP"* ]]; then echo "STAND-IN FAILS: $*"; exit 3; fi
echo "STAND-IN: $*"
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    if shutil.which("sha256sum") is None or shutil.which("timeout") is None:
        pytest.skip("coreutils' sha256sum and timeout are needed")
    copy = tmp_path_factory.mktemp("tree")
    for part in ("scripts", "csrc", "hawk_kernels"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "setup.py", copy / "setup.py")
    fake = copy / "fake_python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    return copy


def _run(tree: Path, out: Path, **env) -> tuple[int, dict, str]:
    env = dict(os.environ, PYTHON=str(tree / "fake_python"), OUT=str(out), **env)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    return proc.returncode, summary, proc.stdout + proc.stderr


def test_every_step_in_order_a_failing_step_recorded_and_the_build_skipped_by_its_stamp(tree, tmp_path):
    rc, summary, log = _run(tree, tmp_path / "first")
    assert rc == 0, log
    assert [s["name"] for s in summary["steps"]] == STEPS
    for step in summary["steps"]:
        if step["name"] in CPU_FORMS:
            assert step["status"] == "passed", step
        else:
            assert step["status"] == "skipped" and step["reason"].startswith("needs a GPU"), step
    assert summary["status"] == "pass" and summary["gpu"] is False
    assert {t["verdict"] for t in summary["targets"]} == {"not measured"}
    assert "| issue | target |" in log and (tmp_path / "first" / "results.tar.gz").stat().st_size > 0
    assert (tree / "build" / "gpu_check_stamp").exists()

    # a source changed: built again; a step fails: recorded, the steps after it still run, exit status 1
    source = tree / "csrc" / "cpu" / "tree_mask.cpp"
    source.write_text(source.read_text() + "\n")
    rc, summary, log = _run(tree, tmp_path / "second", FAIL_STEP="benchmarks/tree_size.py")
    assert rc == 1, log
    by_name = {s["name"]: s for s in summary["steps"]}
    assert by_name["build"]["status"] == "passed" and by_name["build"]["reason"] == ""
    assert by_name["tree_size"]["status"] == "failed" and by_name["tree_size"]["reason"] == "exit status 3"
    assert by_name["heads_training"]["status"] == "passed"  # after it
    assert summary["status"] == "fail" and summary["failed_steps"] == ["tree_size", "tree_size_uncalibrated"]

    rc, summary, log = _run(tree, tmp_path / "third", DEADLINE_S="500")  # nothing changed: the build is skipped
    assert rc == 0, log
    assert summary["command"] == "DEADLINE_S='500' bash scripts/gpu_check.sh" and summary["deadline_s"] == 500
    assert summary["steps"][0]["reason"] == "up to date: build/gpu_check_stamp matches"


def test_the_gpu_flow_after_a_failing_canary(tree, tmp_path):
    """The script's GPU branches (the stand-in says there is a GPU): every step in its GPU form, in order; the
    canary (the CUDA kernels' first call) fails, so the later steps run on the Triton kernels and the kernel
    benchmarks leave out the CUDA kernels' rows (an illegal address there would fail every later row)."""
    rc, summary, log = _run(tree, tmp_path / "gpu", FAKE_GPU="1", FAIL_STEP="scripts/sanitize_ops.py")
    assert rc == 1, log
    by_name = {s["name"]: s for s in summary["steps"]}
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert by_name["canary"]["status"] == "failed" and summary["failed_steps"] == ["canary"]
    assert "later steps run with HAWK_KERNELS_SKIP=cuda" in log
    for name in ("tests_cuda", "e2e_7b", "kernel_bench", "tests_cuda_compiled", "e2e_flex", "e2e_bundled",
                 "step_ops", "real_shapes", "tree_size", "heads_training"):
        assert by_name[name]["status"] == "passed" and by_name[name]["form"] == "gpu", by_name[name]
    assert "-k not cuda-cuda" in by_name["kernel_bench"]["command"], by_name["kernel_bench"]
    assert "--profile-steps 3" in by_name["e2e_7b"]["command"] and "HAWK_BUILD_CUDA=1" in by_name["build"]["command"]


def test_a_library_prebuilt_on_a_cpu_box_skips_the_gpu_hosts_build_if_it_runs_there(tree, tmp_path):
    """PREBUILD=1 builds _C for a GPU host (CUDA kernels, this Python's torch) and writes the stamp a GPU host computes,
    then stops; on the GPU host, with the library and the stamp carried, the build step reads "up to date" (55 s of a
    15-minute device budget), but only if the carried library loads there and holds the CUDA kernels: else it builds."""
    env = dict(os.environ, PYTHON=str(tree / "fake_python"), OUT=str(tmp_path / "prebuild"), PREBUILD="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "HAWK_BUILD_CUDA=1" in log and "PREBUILD done: carry hawk_kernels/_C." in log, log
    assert not (tmp_path / "prebuild" / "summary.json").exists()  # it stops after the build
    stamp = (tree / "build" / "gpu_check_stamp").read_text()

    rc, summary, log = _run(tree, tmp_path / "carried", FAKE_GPU="1", FAKE_CARRIED_OK="1", GPU_STEPS="canary")
    assert summary["steps"][0]["reason"] == "up to date: build/gpu_check_stamp matches", log
    # this CPU box's _C has no CUDA kernels: carried so, it fails its check and the GPU host builds
    (tree / "build" / "gpu_check_stamp").write_text(stamp)
    rc, summary, log = _run(tree, tmp_path / "broken", FAKE_GPU="1", GPU_STEPS="canary")
    assert summary["steps"][0]["name"] == "build" and summary["steps"][0]["reason"] == "", log
    assert "HAWK_BUILD_CUDA=1" in summary["steps"][0]["command"]
