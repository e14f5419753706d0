"""Calibrate the candidate trees of the bundled model (or of --heads DIR) from measured acceptance, written to
tree_rates.json beside the heads. The method is hawk_kernels/calibration.py (which `hawk train-heads` also runs
after training); `load_demo_pipeline` reads the rates. The tree template (TreeTemplate.from_budget) is a
best-first tree under the model "rank r at depth k is the accepted child with probability rate(k, r)".

    python python/calibrate_tree.py --images 40      # ~2 min on one CPU thread
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import hawk_kernels as hk  # noqa: E402
from hawk_kernels.training.tree_calibration import JACOBI_CHAIN, calibrate  # noqa: E402
from hawk_kernels.drafts import MODE_SOURCES  # noqa: E402
from hawk_kernels.pipelines.demo.pipeline import HEADS_DIR, TREE_RATES_FILE  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=64, help="exploratory tree size")
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=10_000)  # away from the evaluation seeds
    ap.add_argument("--modes", nargs="*", default=["medusa", "vertical", "hawk", "jacobi", "hawk+jacobi"],
                    choices=[m for m in MODE_SOURCES if MODE_SOURCES[m]])
    ap.add_argument("--jacobi-depth", type=int, default=JACOBI_CHAIN, help="Jacobi modes: chain depth explored")
    ap.add_argument("--jacobi-nodes", type=int, default=160, help="Jacobi modes: exploratory tree size")
    ap.add_argument("--heads", default=None, help="heads directory to calibrate (default: the bundled heads)")
    ap.add_argument("--out", default=None, help="default: tree_rates.json beside the heads")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = hk.load_demo_pipeline(device="cpu", heads=args.heads)
    out = args.out or os.path.join(args.heads or HEADS_DIR, TREE_RATES_FILE)
    report = None
    if os.path.exists(out):  # modes not measured now keep their tables
        with open(out) as f:
            report = json.load(f)
    report = calibrate(pipe, args.modes, args.images, args.batch, args.nodes, args.cfg, args.seed, args.jacobi_depth,
                       args.jacobi_nodes, report, command="python " + " ".join(sys.argv))
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
