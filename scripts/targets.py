"""Issues 20's and 22's targets, checked against the outputs of one gpu_check run: each target, its threshold, the
measured value, a verdict (met / missed / not measured / info) and the file the number came from.

    python scripts/targets.py DIR                 # DIR: gpu_check's work folder, or its results.tar.gz unpacked
    python scripts/targets.py DIR --json FILE     # also the rows as JSON

gpu_check.sh runs it at the end (summary.json's "targets", and the table in gpu_check.log). Every ratio is taken
within one run, as the issues ask. Rows measured on a CPU (the smoke forms) are never judged against a GPU target:
those targets read "not measured".

Sources, by the file names gpu_check gives them:
  e2e_*.json (seven_b.steps) or, when e2e timed out before writing it, the JSON lines of e2e_7b.log / e2e_flex.log;
  kernels_bench*.json (pytest-benchmark, extra_info); tree_size*.json; real_shapes_*.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

AR_TO_FLOOR = 1.25  # issue 20: AR step <= 1.25x the weight-streaming floor measured in the same run
TREE_TO_AR = {32: 1.15, 64: 1.30}  # issue 20: tree step / AR step, hawk and hawk+jacobi
TREE_MODES = ("hawk", "hawk+jacobi")
ACCEPT_REJECT_US = 25.0  # issue 20: accept_reject, float32, 16-64 nodes, vocab 8194, 2 rows
SMALL_VERIFY = dict(vocab=8194, batch=2, nodes=(16, 32, 64))
LARGE_VERIFY = dict(vocab=32769, batch=32)
LARGE_VERIFY_TO_FLOOR = 1.4  # within 1.4x of its memory floor: bandwidth fraction >= 1 / 1.4
DRAFT_HEADS_FRACTION = 0.75
TREE_SIZE_VS_AR, TREE_SIZE_VS_BEST = 1.0, 0.90  # issue 20 item 4: batch >= 4 / batch 1
MEMORY_BATCH, MEMORY_LIMIT_BYTES = 16, 80e9  # issue 22: 16 images with CFG plus the 7B model, every mode
CUDA_CLOCK = "cuda events"  # the clock the benchmarks record on a GPU (benchmarks/timing.CUDA_CLOCK; a test checks)


def _row(issue, target, threshold, measured, verdict, source, **extra):
    return dict(issue=issue, target=target, threshold=threshold, measured=measured, verdict=verdict,
                source=source, **extra)


def _judge(value: float | None, limit: float, at_most: bool) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= limit if at_most else value >= limit) else "missed"


def _json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _json_lines(path: str) -> list[dict]:
    rows = []
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return rows
    for line in lines:
        line = line.strip()
        if line.startswith("copy bandwidth "):
            line = line[len("copy bandwidth "):]
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


# --- the 7B-shaped steps ------------------------------------------------------------------------------------------
def _timed_on_gpu(info: dict) -> bool:
    """A timing record (timing.copy_bandwidth's, a benchmark's extra_info) was timed on a GPU: its clock says so.
    (Its `device` is the card's name, "NVIDIA H200", not "cuda".)"""
    return info.get("clock") == CUDA_CLOCK


def _e2e_on_gpu(report: dict) -> bool:
    """An e2e report's 7B section ran at the 7B shape on a GPU (--smoke runs it at a tiny one)."""
    return _timed_on_gpu(report.get("bandwidth", {})) and not report.get("smoke")


def seven_b_steps(work: str) -> list[dict]:
    """Every timed 7B-shape step row, each with `source` and `on_gpu`: from the e2e JSON files, and from the e2e logs'
    JSON lines for the runs whose JSON is missing (a timeout keeps the rows printed before it)."""
    rows, seen_runs = [], set()
    for path in sorted(glob.glob(os.path.join(work, "e2e_*.json"))):
        report = _json(path)
        if not report or not report.get("seven_b"):
            continue
        run = os.path.basename(path)[len("e2e_"):-len(".json")]  # e.g. cuda_7b: its log is e2e_7b.log
        seen_runs.add(run.split("_")[-1])
        for step in (s for s in report["seven_b"]["steps"] if "ms_per_step" in s):  # not the rows that failed
            rows.append(dict(step, source=os.path.basename(path), on_gpu=_e2e_on_gpu(report),
                             floor_ms=report["seven_b"]["floor_ms"], run=run))
    for path in sorted(glob.glob(os.path.join(work, "e2e_*.log"))):
        name = os.path.basename(path)[len("e2e_"):-len(".log")]  # the gpu_check step: 7b, flex
        if name in seen_runs:
            continue
        lines = _json_lines(path)
        bandwidth = next((r for r in lines if "copy_bytes_per_s" in r), {})
        for step in lines:
            if "ms_per_step" in step and step.get("ratio_to_floor"):
                rows.append(dict(step, source=os.path.basename(path) + " (JSON lines: the run did not finish)",
                                 on_gpu=_timed_on_gpu(bandwidth),
                                 floor_ms=step["ms_per_step"] / step["ratio_to_floor"], run=name))
    return rows


def _label(step: dict) -> str:
    return (f"{'graphed' if step.get('cuda_graph') else 'eager'}{' compiled' if step.get('compiled') else ''} "
            f"{step.get('attention', 'sdpa')}")


def _floor_detail(step: dict) -> str:
    """The AR row's figures: its time, the floor (every weight, as issue 20 counts it) and, where the run recorded
    it, its ratio to the stricter floor of the bytes a step reads (e2e.streamed_bytes)."""
    strict = step.get("ratio_to_streamed_floor")
    return (f"{step['ms_per_step']:.3f} ms, floor {step['floor_ms']:.3f} ms"
            + ("" if strict is None else f" ({strict:.3f}x the floor of the bytes a step reads)") + f", {_label(step)}")


def step_targets(steps: list[dict]) -> list[dict]:
    out = []
    gpu = [s for s in steps if s["on_gpu"]]
    ar = [s for s in gpu if s["mode"] == "ar" and s.get("cuda_graph")]
    best = min(ar, key=lambda s: s["ratio_to_floor"], default=None)
    out.append(_row(20, "AR step / weight-streaming floor (7B shape, graphed; best engine)", f"<= {AR_TO_FLOOR}",
                    None if best is None else round(best["ratio_to_floor"], 3),
                    _judge(None if best is None else best["ratio_to_floor"], AR_TO_FLOOR, True),
                    None if best is None else best["source"],
                    detail=None if best is None else _floor_detail(best)))
    for mode in TREE_MODES:
        for nodes, limit in TREE_TO_AR.items():
            pairs = []
            for tree in (s for s in gpu if s["mode"] == mode and s["num_nodes"] == nodes):
                twin = [s for s in ar if _label(s) == _label(tree) and s["run"] == tree["run"]]
                if twin:
                    pairs.append((tree["ms_per_step"] / twin[0]["ms_per_step"], tree, twin[0]))
            if not pairs:
                out.append(_row(20, f"{mode} step at {nodes} nodes / AR step (same engine, same run)", f"<= {limit}",
                                None, "not measured", None))
            for ratio, tree, twin in sorted(pairs, key=lambda p: p[0]):
                out.append(_row(20, f"{mode} step at {nodes} nodes / AR step (same engine, same run)", f"<= {limit}",
                                round(ratio, 3), _judge(ratio, limit, True), tree["source"],
                                detail=f"{tree['ms_per_step']:.3f} / {twin['ms_per_step']:.3f} ms, {_label(tree)}"))
    return out


# --- kernels ------------------------------------------------------------------------------------------------------
def kernel_rows(work: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(work, "kernels_bench*.json"))):
        report = _json(path) or {}
        for bench in report.get("benchmarks", []):
            info = dict(bench.get("extra_info", {}))
            info.update(name=bench.get("name", ""), source=os.path.basename(path),
                        on_gpu=_timed_on_gpu(info))
            rows.append(info)
    return rows


def kernel_targets(rows: list[dict]) -> list[dict]:
    out = []
    verify = [r for r in rows if r["on_gpu"] and r["name"].startswith("test_accept_reject") and r.get("backend") == "cuda"
              and r.get("dtype") == "float32"]  # what the engine passes (rows before 2026-12-05 timed bf16)
    for nodes in SMALL_VERIFY["nodes"]:
        hit = [r for r in verify if r.get("nodes") == nodes and r.get("vocab") == SMALL_VERIFY["vocab"]
               and r.get("batch") == SMALL_VERIFY["batch"]]
        us = hit[0]["median_us"] if hit else None
        out.append(_row(20, f"accept_reject (CUDA, float32) at {nodes} nodes, vocab 8194, 2 rows: us",
                        f"<= {ACCEPT_REJECT_US}", None if us is None else round(us, 1),
                        _judge(us, ACCEPT_REJECT_US, True), hit[0]["source"] if hit else None))
    large = sorted((r for r in verify if r.get("vocab") == LARGE_VERIFY["vocab"] and r.get("batch") == LARGE_VERIFY["batch"]),
                   key=lambda r: r.get("nodes", 0))
    if not large:
        out.append(_row(20, "accept_reject (CUDA) at vocab 32769, 32 rows: memory floor / time", f">= {1 / LARGE_VERIFY_TO_FLOOR:.3f}",
                        None, "not measured", None))
    for r in large:
        fraction = r.get("bandwidth_fraction")
        out.append(_row(20, f"accept_reject (CUDA) at {r.get('nodes')} nodes, vocab 32769, 32 rows: memory floor / time",
                        f">= {1 / LARGE_VERIFY_TO_FLOOR:.3f}", None if fraction is None else round(fraction, 3),
                        _judge(fraction, 1 / LARGE_VERIFY_TO_FLOOR, False), r["source"],
                        detail=f"{r['median_us']:.1f} us"))
    heads = [r for r in rows if r["on_gpu"] and r["name"].startswith("test_draft_heads") and r.get("backend") == "cuda"]
    if not heads:
        out.append(_row(20, "draft_heads (CUDA): fraction of the bandwidth its bytes need", f">= {DRAFT_HEADS_FRACTION}",
                        None, "not measured", None))
    for r in heads:
        fraction = r.get("bandwidth_fraction")
        out.append(_row(20, f"draft_heads (CUDA), {r.get('heads')} heads, {r.get('tokens')} tokens: fraction of the "
                            "bandwidth its bytes need", f">= {DRAFT_HEADS_FRACTION}",
                        None if fraction is None else round(fraction, 3),
                        _judge(fraction, DRAFT_HEADS_FRACTION, False), r["source"], detail=f"{r['median_us']:.1f} us"))
    return out


# --- num_nodes="auto" on the GPU, and the real shapes' memory -----------------------------------------------------
def tree_size_targets(work: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(os.path.join(work, "tree_size*.json"))):
        report = _json(path) or {}
        on_gpu = "driver" in report  # timing.report_header records the driver on a GPU only
        for r in report.get("rows", []):
            if not on_gpu:
                continue
            if r["batch"] == 1:
                value, limit, what = r.get("auto_vs_best_fixed"), TREE_SIZE_VS_BEST, "of the best fixed size"
            else:
                value, limit, what = r.get("auto_vs_ar"), TREE_SIZE_VS_AR, "of AR"
            mode = r["mode"] + (" (rates measured on the model, none calibrated)" if report.get("uncalibrated") else "")
            out.append(_row(20, f"num_nodes='auto', {mode}, batch {r['batch']}: images/s as a fraction {what}",
                            f">= {limit}", None if value is None else round(value, 3), _judge(value, limit, False),
                            os.path.basename(path), detail=f"chose {r.get('auto_num_nodes')} nodes; AR vs AR again "
                                                           f"{r.get('ar_again_vs_ar', float('nan')):.3f}"))
    if not out:
        out.append(_row(20, "num_nodes='auto' on the GPU: >= AR at batch >= 4, >= 0.90 of the best fixed size at 1",
                        ">= 1.0 / >= 0.90", None, "not measured", None))
    return out


def real_shape_targets(work: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(os.path.join(work, "real_shapes_*.json"))):
        report = _json(path) or {}
        full = report.get("scale") == "full" and not report.get("smoke")
        for family, result in report.get("families", {}).items():
            if "failed" in result:  # the rows it finished before the error still count below
                out.append(_row(22, f"{family}: the benchmark ran", "no error", result["failed"], "missed",
                                os.path.basename(path)))
            for r in result.get("memory_batches", []):
                if r.get("batch") == MEMORY_BATCH and "failed" in r:  # it did not fit the device: a miss, not a gap
                    out.append(_row(22, f"{family} {r['mode']}: peak memory of {MEMORY_BATCH} images with CFG + the "
                                        "model", f"< {MEMORY_LIMIT_BYTES / 1e9:.0f} GB", r["failed"],
                                    "missed" if full else "not measured", os.path.basename(path)))
                if r.get("batch") != MEMORY_BATCH or "peak_memory_bytes" not in r:
                    continue
                # what the process held (the allocator's reservation, cached blocks and graph pools included)
                # where the run recorded it: the allocated peak alone would pass a run that needs more than 80 GB
                peak = r.get("peak_reserved_bytes") or r["peak_memory_bytes"]
                out.append(_row(22, f"{family} {r['mode']}: peak memory of {MEMORY_BATCH} images with CFG + the model",
                                f"< {MEMORY_LIMIT_BYTES / 1e9:.0f} GB", round(peak / 1e9, 2),
                                _judge(peak, MEMORY_LIMIT_BYTES, True) if full else "not measured",
                                os.path.basename(path), memory_kind=r.get("memory_kind"),
                                detail=f"reserved; {r['peak_memory_bytes'] / 1e9:.2f} GB allocated"
                                if r.get("peak_reserved_bytes") else "allocated"))
            for r in result.get("runs", []):
                if "seconds_per_image" in r and full:
                    out.append(_row(22, f"{family} {r['mode']}: seconds per image (peak GB)", "info",
                                    round(r["seconds_per_image"], 2), "info", os.path.basename(path),
                                    detail=f"{r['peak_memory_bytes'] / 1e9:.2f} GB, {r.get('tokens_per_pass', 0):.2f} "
                                           f"tokens/pass, {r.get('step_engine')}"))
    if not any(r["issue"] == 22 and r["verdict"] != "info" for r in out):
        out.append(_row(22, f"peak memory of {MEMORY_BATCH} images with CFG + the 7B model, every mode",
                        f"< {MEMORY_LIMIT_BYTES / 1e9:.0f} GB", None, "not measured", None))
    return out


def projections(work: str) -> list[dict]:
    """Seconds per 768 px image projected from the measured steps (e2e's `projection`): info, beside AR's and
    transformers generate's."""
    out = []
    for path in sorted(glob.glob(os.path.join(work, "e2e_*.json"))):
        report = _json(path) or {}
        big = report.get("seven_b") or {}
        if not _e2e_on_gpu(report):
            continue
        for key, seconds in sorted((big.get("projection") or {}).items()):
            out.append(_row(20, f"projected seconds per image ({big.get('body_tokens')} tokens): {key}", "info",
                            round(seconds, 2), "info", os.path.basename(path)))
    return out


def check(work: str) -> list[dict]:
    return (step_targets(seven_b_steps(work)) + projections(work) + kernel_targets(kernel_rows(work))
            + tree_size_targets(work) + real_shape_targets(work))


def table(rows: list[dict]) -> str:
    lines = ["| issue | target | threshold | measured | verdict | source |", "|---|---|---|---|---|---|"]
    for r in rows:
        measured = "-" if r["measured"] is None else f"{r['measured']}" + (f" ({r['detail']})" if r.get("detail") else "")
        lines.append(f"| {r['issue']} | {r['target']} | {r['threshold']} | {measured} | {r['verdict']} | "
                     f"{r['source'] or '-'} |")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("met", "missed", "not measured")}
    lines.append(f"\n{counts['met']} met, {counts['missed']} missed, {counts['not measured']} not measured")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", help="gpu_check's work folder (or its results.tar.gz unpacked)")
    parser.add_argument("--json", default=None, help="write the rows here too")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.work):
        parser.error(f"work: expected a folder of gpu_check outputs, got {args.work!r}")
    rows = check(args.work)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
