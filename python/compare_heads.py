"""Tokens committed per target pass of several sets of draft heads on the bundled model, in one run: same
prompts, seeds and node budgets. Heads without a tree_rates.json are calibrated first (hawk_kernels/calibration.py,
seeds 10,000+, away from the evaluation seeds) and the rates written beside them.

    python python/compare_heads.py --heads bundled /path/to/new/heads --nodes 16 --images 60
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import hawk_kernels as hk  # noqa: E402
from benchmarks.timing import report_header  # noqa: E402
from hawk_kernels.training import calibrate  # noqa: E402
from hawk_kernels.pipelines.demo.pipeline import HEADS_DIR, TREE_RATES_FILE  # noqa: E402


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def calibrate_heads(heads_dir: Path, mode: str, images: int) -> None:
    pipe = hk.load_demo_pipeline(device="cpu", heads=heads_dir)
    report = calibrate(pipe, [mode], images, command="python " + " ".join(sys.argv))
    (heads_dir / TREE_RATES_FILE).write_text(json.dumps(report, indent=1))


def tokens_per_pass(heads_dir: Path, mode: str, nodes: int, images: int, batch: int) -> float:
    evaluate_demo = _module("evaluate_demo")
    pipe = hk.load_demo_pipeline(device="cpu", heads=heads_dir)
    prompts, _ = evaluate_demo.prompts_for(images, pipe.vocab)
    committed = row_passes = 0
    for start in range(0, images, batch):
        out = pipe.generate(prompts[start: start + batch], mode=mode, seed=start, cfg_scale=3.0,
                            num_nodes=nodes).outputs[0]
        committed += sum(map(sum, out.accepted_lengths))
        row_passes += sum(1 for step in out.accepted_lengths for n in step if n > 0)
    return committed / row_passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", nargs="+", required=True, help="heads directories ('bundled' = the shipped heads)")
    ap.add_argument("--nodes", type=int, nargs="+", default=[16])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--mode", default="hawk")
    ap.add_argument("--calibration-images", type=int, default=40)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in args.heads:
        heads_dir = HEADS_DIR if name == "bundled" else Path(name)
        if not (heads_dir / TREE_RATES_FILE).exists():
            calibrate_heads(heads_dir, args.mode, args.calibration_images)
        results[name] = {n: tokens_per_pass(heads_dir, args.mode, n, args.images, args.batch) for n in args.nodes}
        print(name, {n: round(v, 3) for n, v in results[name].items()}, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(dict(**report_header("cpu"), results=results, mode=args.mode,
                                                  images=args.images, cfg=3.0), indent=1))


if __name__ == "__main__":
    main()
