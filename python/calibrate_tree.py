"""Calibrate the candidate trees of the bundled model from measured acceptance (writes heads/tree_rates.json).

The tree template (TreeTemplate.from_budget) is a best-first tree under the model "rank r at depth k is the
accepted child with probability rate(k, r)". Generic priors waste nodes: which source wins at which depth is
an empirical question (the horizontal heads run out after their last distance, vertical drafts exist only
once a row above is committed). This script decodes images with a wide exploratory tree, counts per
(depth, rank) how often a node was tried (its parent accepted) and accepted, and stores the smoothed rates
per mode beside the heads. `load_demo_pipeline` reads them; any tree stays lossless, only its shape changes.

    python python/calibrate_tree.py --images 40      # ~2 min on one CPU thread
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import hawk_kernels as hk  # noqa: E402
from hawk_kernels.pipelines.demo.pipeline import HEADS_DIR, TREE_RATES_FILE  # noqa: E402

PRIOR_WEIGHT = 4.0  # pseudo-counts of the generic prior 0.6 * 0.5**rank in each (depth, rank) estimate


def measure(pipe, mode: str, images: int, batch: int, nodes: int, depth: int, cfg: float, seed: int):
    dec = hk.HawkDecoder(pipe.model, pipe.heads, pipe.grid, mode=mode, num_nodes=nodes, max_depth=depth)
    width = dec.tree.template.max_rank
    shape = (dec.tree.template.max_depth + 1, width)  # the exploratory tree may stop short of `depth`
    tried = torch.zeros(shape, dtype=torch.int64)
    accepted = torch.zeros_like(tried)
    prompts = [f"a handwritten digit {d}" for d in "zero one two three four five six seven eight nine".split()]
    for start in range(0, images, batch):
        chunk = [prompts[i % len(prompts)] for i in range(start, min(images, start + batch))]
        out = pipe.generate(chunk, mode=mode, seed=seed + start, cfg_scale=cfg, decoder=dec).output
        tried += torch.tensor(out.rank_tried)
        accepted += torch.tensor(out.rank_accepted)
    prior = 0.6 * 0.5 ** torch.arange(width, dtype=torch.float64)
    rates = (accepted[1:] + PRIOR_WEIGHT * prior) / (tried[1:] + PRIOR_WEIGHT)
    return rates, tried[1:], accepted[1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=64, help="exploratory tree size")
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=10_000)  # away from the evaluation seeds
    ap.add_argument("--modes", nargs="*", default=["medusa", "vertical", "hawk"])
    ap.add_argument("--out", default=str(HEADS_DIR / TREE_RATES_FILE))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = hk.load_demo_pipeline(device="cpu")
    heads = pipe.heads
    depths = {"medusa": heads.num_horizontal, "vertical": heads.num_horizontal + 2, "hawk": heads.num_horizontal + 4}
    report = dict(rates={}, tried={}, accepted={}, images=args.images, exploratory_nodes=args.nodes, cfg=args.cfg,
                  date=datetime.date.today().isoformat(), command="python " + " ".join(sys.argv))
    for mode in args.modes:
        rates, tried, accepted = measure(pipe, mode, args.images, args.batch, args.nodes, depths[mode], args.cfg,
                                         args.seed)
        report["rates"][mode] = [[round(float(r), 4) for r in row] for row in rates]
        report["tried"][mode], report["accepted"][mode] = tried.tolist(), accepted.tolist()
        print(mode)
        for depth, row in enumerate(report["rates"][mode], 1):
            print(f"  depth {depth}: " + " ".join(f"{r:.3f}" for r in row))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
