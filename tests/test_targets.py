"""scripts/targets.py: issue 20's and 22's targets judged from one gpu_check run's outputs, on made-up GPU results
(every verdict and source checked), and CPU rows never judged against a GPU target."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import targets  # noqa: E402


def _step(mode, nodes, ms, floor=3.28, attention="sdpa", graphed=True, compiled=True):
    return dict(mode=mode, num_nodes=nodes, attention=attention, cuda_graph=graphed, compiled=compiled, ms_per_step=ms,
                ratio_to_floor=ms / floor, ratio_to_streamed_floor=ms / (floor * 0.928))


# what benchmarks/timing.copy_bandwidth records: the card's name as `device`, and the clock it timed with
GPU_BANDWIDTH = dict(copy_bytes_per_s=4.28e12, clock="cuda events", device="NVIDIA H200")
CPU_BANDWIDTH = dict(copy_bytes_per_s=2e10, clock="time.perf_counter", device="cpu")


def _bench(name, **info):
    return dict(name=name, extra_info=dict(clock="cuda events", device="NVIDIA H200", **info))


def _gpu_run(work: Path) -> None:
    """What gpu_check leaves on a GPU: e2e_7b finished (JSON), e2e_flex timed out (its log's JSON lines only)."""
    seven_b = dict(floor_ms=3.28, dtype="bfloat16", body_tokens=2352, projection=dict(graphed_ar_s=9.4), steps=[
        _step("ar", 1, 4.0), _step("hawk", 32, 4.5), _step("hawk", 64, 5.6), _step("ar", 1, 30.0, graphed=False),
        _step("hawk+jacobi", 64, 5.0), _step("hawk+jacobi", 32, 4.4, graphed=False),
        dict(mode="hawk", num_nodes=128, attention="sdpa", cuda_graphs_requested=True, failed="OutOfMemoryError")])
    (work / "e2e_cuda_7b.json").write_text(json.dumps(dict(bandwidth=GPU_BANDWIDTH, smoke=False, seven_b=seven_b)))
    (work / "e2e_flex.log").write_text("\n".join([
        "copy bandwidth " + json.dumps(GPU_BANDWIDTH),
        json.dumps(_step("ar", 1, 3.9, attention="flex_attention")),
        json.dumps(_step("hawk+jacobi", 32, 4.4, attention="flex_attention")),
        "Traceback (most recent call last): killed"]))
    (work / "kernels_bench.json").write_text(json.dumps(dict(benchmarks=[
        _bench("test_accept_reject[cuda-cuda-N16]", backend="cuda", nodes=16, vocab=8194, batch=2, dtype="float32",
               median_us=20.0, bandwidth_fraction=0.1),
        _bench("test_accept_reject[cuda-cuda-N32]", backend="cuda", nodes=32, vocab=8194, batch=2, dtype="float32",
               median_us=24.0, bandwidth_fraction=0.1),
        _bench("test_accept_reject[cuda-triton-N64]", backend="triton", nodes=64, vocab=8194, batch=2,
               dtype="float32", median_us=10.0, bandwidth_fraction=0.1),  # not the CUDA kernel: not judged
        _bench("test_accept_reject[cuda-cuda-N64-V32769-B32]", backend="cuda", nodes=64, vocab=32769, batch=32,
               dtype="float32", median_us=300.0, bandwidth_fraction=0.8),
        _bench("test_draft_heads[cuda-cuda-H5]", backend="cuda", heads=5, tokens=2, median_us=100.0,
               bandwidth_fraction=0.7),
        _bench("test_accept_reject[cpu-cpu-N16-V1024]", backend="cpu", nodes=16, vocab=1024, batch=2,
               dtype="float32", median_us=5.0)])))
    (work / "tree_size.json").write_text(json.dumps(dict(driver="580", device="NVIDIA H100", rows=[
        dict(batch=1, mode="hawk", auto_num_nodes=16, auto_vs_best_fixed=0.95, auto_vs_ar=2.0, ar_again_vs_ar=1.0),
        dict(batch=16, mode="hawk+jacobi", auto_num_nodes=4, auto_vs_best_fixed=1.0, auto_vs_ar=0.98,
             ar_again_vs_ar=1.01)])))
    (work / "tree_size_uncalibrated.json").write_text(json.dumps(dict(driver="580", device="NVIDIA H100",
                                                                      uncalibrated=True, rows=[
        dict(batch=16, mode="jacobi", auto_num_nodes=8, auto_vs_best_fixed=1.0, auto_vs_ar=1.2, ar_again_vs_ar=1.0)])))
    (work / "real_shapes_full_cuda.json").write_text(json.dumps(dict(scale="full", smoke=False, families=dict(
        janus=dict(failed="OutOfMemoryError: CUDA out of memory"),
        chameleon=dict(runs=[dict(mode="hawk", seconds_per_image=9.5, peak_memory_bytes=20e9, tokens_per_pass=3.0,
                                  step_engine="compiled + CUDA graph")],
                       memory_batches=[dict(mode="ar", batch=16, peak_memory_bytes=70e9, peak_reserved_bytes=75e9,
                                            memory_kind="cuda"),
                                       dict(mode="hawk+jacobi", batch=16, peak_memory_bytes=78e9,
                                            peak_reserved_bytes=81e9, memory_kind="cuda"),  # judged reserved
                                       dict(mode="hawk", batch=16, peak_memory_bytes=85e9, memory_kind="cuda"),
                                       dict(mode="jacobi", batch=16, rows=32, steps=4, device_total_bytes=80e9,
                                            failed="out of memory: CUDA out of memory.")])))))


def _verdicts(rows):
    return {(r["target"], r.get("detail", "")): (r["measured"], r["verdict"]) for r in rows}


def test_each_target_is_judged_from_its_own_rows(tmp_path):
    _gpu_run(tmp_path)
    rows = targets.check(str(tmp_path))
    by_target = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    ar = by_target["AR step / weight-streaming floor (7B shape, graphed; best engine)"]
    # the best graphed AR row of the run: flex 3.9 ms (from the log the timeout left) against the floor 3.28
    assert [(r["measured"], r["verdict"]) for r in ar] == [(round(3.9 / 3.28, 3), "met")]
    assert "JSON lines" in ar[0]["source"]
    assert ar[0]["detail"] == (f"3.900 ms, floor 3.280 ms ({3.9 / (3.28 * 0.928):.3f}x the floor of the bytes a step "
                               "reads), graphed compiled flex_attention")
    hawk32 = by_target["hawk step at 32 nodes / AR step (same engine, same run)"]
    assert [(r["measured"], r["verdict"]) for r in hawk32] == [(1.125, "met")]
    assert [(r["measured"], r["verdict"]) for r in by_target["hawk step at 64 nodes / AR step (same engine, same run)"]] \
        == [(1.4, "missed")]
    # hawk+jacobi at 32: the eager row has no graphed AR twin in its run; the flex pair (from the log) does
    hj32 = by_target["hawk+jacobi step at 32 nodes / AR step (same engine, same run)"]
    assert [(r["measured"], r["verdict"]) for r in hj32] == [(round(4.4 / 3.9, 3), "met")]
    assert [(r["measured"], r["verdict"]) for r in by_target[
        "hawk+jacobi step at 64 nodes / AR step (same engine, same run)"]] == [(1.25, "met")]
    assert [(r["measured"], r["verdict"]) for r in by_target["projected seconds per image (2352 tokens): graphed_ar_s"]] \
        == [(9.4, "info")]
    verify = {r["target"]: (r["measured"], r["verdict"]) for r in rows if r["target"].startswith("accept_reject")}
    assert verify["accept_reject (CUDA, float32) at 16 nodes, vocab 8194, 2 rows: us"] == (20.0, "met")
    assert verify["accept_reject (CUDA, float32) at 32 nodes, vocab 8194, 2 rows: us"] == (24.0, "met")
    assert verify["accept_reject (CUDA, float32) at 64 nodes, vocab 8194, 2 rows: us"] == (None, "not measured")
    assert verify["accept_reject (CUDA) at 64 nodes, vocab 32769, 32 rows: memory floor / time"] == (0.8, "met")
    heads = [r for r in rows if r["target"].startswith("draft_heads")]
    assert [(r["measured"], r["verdict"]) for r in heads] == [(0.7, "missed")]
    auto = {r["target"]: r["verdict"] for r in rows if r["target"].startswith("num_nodes")}
    assert auto == {"num_nodes='auto', hawk, batch 1: images/s as a fraction of the best fixed size": "met",
                    "num_nodes='auto', hawk+jacobi, batch 16: images/s as a fraction of AR": "missed",
                    "num_nodes='auto', jacobi (rates measured on the model, none calibrated), batch 16: images/s as a "
                    "fraction of AR": "met"}
    memory = {r["target"]: (r["measured"], r["verdict"]) for r in rows if r["issue"] == 22}
    assert memory == {
        "janus: the benchmark ran": ("OutOfMemoryError: CUDA out of memory", "missed"),
        "chameleon ar: peak memory of 16 images with CFG + the model": (75.0, "met"),
        "chameleon hawk+jacobi: peak memory of 16 images with CFG + the model": (81.0, "missed"),
        "chameleon hawk: peak memory of 16 images with CFG + the model": (85.0, "missed"),
        "chameleon jacobi: peak memory of 16 images with CFG + the model": ("out of memory: CUDA out of memory.",
                                                                             "missed"),
        "chameleon hawk: seconds per image (peak GB)": (9.5, "info")}


def test_cpu_rows_are_never_judged_against_gpu_targets(tmp_path):
    """The smoke forms gpu_check runs without a GPU: a tiny-shape e2e on the CPU, the kernels' CPU rows, the
    smoke tree_size and real_shapes: every GPU target reads 'not measured'; the CLI prints the table."""
    seven_b = dict(floor_ms=0.1, steps=[_step("ar", 1, 0.12, floor=0.1), _step("hawk", 32, 0.13, floor=0.1)])
    (tmp_path / "e2e_smoke_cpu.json").write_text(json.dumps(dict(bandwidth=CPU_BANDWIDTH, smoke=True,
                                                                 seven_b=seven_b)))
    (tmp_path / "kernels_bench_cpu.json").write_text(json.dumps(dict(benchmarks=[dict(
        name="test_accept_reject[cpu-cpu-N16-V1024]", extra_info=dict(clock="time.perf_counter", backend="cuda",
                                                                      nodes=16, vocab=8194, batch=2, dtype="float32",
                                                                      median_us=1.0))])))
    (tmp_path / "tree_size.json").write_text(json.dumps(dict(device="cpu", rows=[dict(batch=1, mode="hawk",
                                                                                     auto_vs_best_fixed=1.0)])))
    (tmp_path / "real_shapes_smoke_cpu.json").write_text(json.dumps(dict(scale="smoke", smoke=True, families=dict(
        chameleon=dict(runs=[], memory_batches=[dict(mode="ar", batch=16, peak_memory_bytes=1e9)])))))
    rows = targets.check(str(tmp_path))
    assert {r["verdict"] for r in rows} == {"not measured"}, [r for r in rows if r["verdict"] != "not measured"]
    out = subprocess.run([sys.executable, "scripts/targets.py", str(tmp_path), "--json", str(tmp_path / "t.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "| issue | target |" in out.stdout and f"0 met, 0 missed, {len(rows)} not measured" in out.stdout
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    bad = subprocess.run([sys.executable, "scripts/targets.py", str(tmp_path / "missing")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "work: expected a folder of gpu_check outputs" in bad.stderr


def test_gpu_rows_are_told_by_the_clock_the_benchmarks_record():
    """A figure counts as timed on a GPU by its clock, the word benchmarks/timing.py writes (its `device` is the
    card's name: a test of `device.startswith("cuda")` read every GPU row of a real run as a CPU row)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import timing

    assert targets.CUDA_CLOCK == timing.CUDA_CLOCK
    assert not targets._timed_on_gpu(timing.copy_bandwidth("cpu", nbytes=1 << 20, repeats=2))


def test_a_real_gpu_runs_kernel_rows_count_as_gpu_rows(tmp_path):
    """The kernel benchmarks' JSON of the H200 run of 2026-12-04, as it came back: every row timed on the GPU (its
    id starts with cuda-) counts as a GPU row, and none of the CPU rows does."""
    real = ROOT / "benchmarks" / "results" / "h200-2026-12-04" / "kernels_bench.json"
    (tmp_path / "kernels_bench.json").write_text(real.read_text())
    rows = targets.kernel_rows(str(tmp_path))
    on_gpu = {r["name"] for r in rows if r["on_gpu"]}
    assert on_gpu and on_gpu == {r["name"] for r in rows if "[cuda-" in r["name"]}
    heads = [r for r in targets.kernel_targets(rows) if r["target"].startswith("draft_heads (CUDA), ")]
    assert len(heads) == 2  # judged rows (that run predates bandwidth_fraction: its value reads not measured)
