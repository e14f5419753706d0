"""Calibrate the candidate trees of the bundled model from measured acceptance (writes heads/tree_rates.json).

The tree template (TreeTemplate.from_budget) is a best-first tree under the model "rank r at depth k is the
accepted child with probability rate(k, r)". Generic priors waste nodes: which source wins at which depth is
an empirical question (the horizontal heads run out after their last distance, vertical drafts exist only
once a row above is committed). This script decodes images with a wide exploratory tree, counts per
(depth, rank) how often a node was tried (its parent accepted) and accepted, and stores the smoothed rates
per mode beside the heads. `load_demo_pipeline` reads them; any tree stays lossless, only its shape changes.
Jacobi modes draft from how far the previous tree reached, so their exploratory tree is the rank-0 chain (the
Jacobi chain) down to the measured depth with siblings along it (rank 1 at every depth, then rank 2, ...): Jacobi
drafts are weak exactly where the previous tree was conditioned on the token the verifier rejected (the next
depth, and the row below it), deep in the tree where a best-first exploratory tree never puts siblings.

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
from hawk_kernels.drafts import MODE_SOURCES, needs_heads, sources_for  # noqa: E402
from hawk_kernels.pipelines.demo.pipeline import HEADS_DIR, TREE_RATES_FILE  # noqa: E402
from hawk_kernels.tree import TreeTemplate  # noqa: E402

PRIOR_WEIGHT = 4.0  # pseudo-counts of the generic prior 0.6 * 0.5**rank in each (depth, rank) estimate
JACOBI_CHAIN = 64  # the Jacobi chain of the exploratory tree (64-node trees reserve 48); --jacobi-nodes in all


def exploratory_tree(pipe, mode: str, nodes: int, depth: int, chain: int):
    sources = sources_for(mode, pipe.heads if needs_heads(mode) else None)
    width = max(1, sum(s.num_candidates() for s in sources))
    if not chain:
        return TreeTemplate.from_budget(nodes, depth, width)
    paths = [(0,) * k for k in range(1, chain + 1)]
    siblings = [(0,) * (k - 1) + (rank,) for rank in range(1, width) for k in range(1, chain + 1)]
    return TreeTemplate.from_paths(paths + siblings[: max(0, nodes - 1 - chain)])


def measure(pipe, mode: str, images: int, batch: int, nodes: int, depth: int, cfg: float, seed: int, chain: int = 0):
    heads = pipe.heads if needs_heads(mode) else None
    tree = exploratory_tree(pipe, mode, nodes, depth, chain)
    dec = hk.HawkDecoder(pipe.model, heads, pipe.grid, mode=mode, tree=tree)
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
    return smoothed_rates(tried[1:], accepted[1:]), tried[1:], accepted[1:]


def smoothed_rates(tried: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
    """[depth, rank] counts -> rates: PRIOR_WEIGHT pseudo-counts of the generic prior 0.6 * 0.5**rank, except in
    cells the exploratory tree never tried, which inherit their rank's rate from the nearest shallower depth (a
    generic prior there would outbid measured ranks: 0.3 for a rank 1 that is accepted 1 time in 10)."""
    prior = 0.6 * 0.5 ** torch.arange(tried.shape[1], dtype=torch.float64)
    rates = (accepted + PRIOR_WEIGHT * prior) / (tried + PRIOR_WEIGHT)
    for depth in range(1, rates.shape[0]):
        rates[depth] = torch.where(tried[depth] > 0, rates[depth], rates[depth - 1])
    return rates


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
    ap.add_argument("--out", default=str(HEADS_DIR / TREE_RATES_FILE))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = hk.load_demo_pipeline(device="cpu")
    heads = pipe.heads
    depths = {"medusa": heads.num_horizontal, "vertical": heads.num_horizontal + 2, "hawk": heads.num_horizontal + 4,
              "jacobi": args.jacobi_depth, "hawk+jacobi": args.jacobi_depth}
    run = dict(images=args.images, exploratory_nodes=args.nodes, cfg=args.cfg, date=datetime.date.today().isoformat(),
               command="python " + " ".join(sys.argv))
    report = dict(rates={}, tried={}, accepted={}, **run)
    if os.path.exists(args.out):  # modes not measured now keep their tables; `runs` says which run made each
        with open(args.out) as f:
            report = json.load(f)
    report.setdefault("runs", {})
    for mode in args.modes:
        chain = depths[mode] if "jacobi" in MODE_SOURCES[mode] else 0
        nodes = args.jacobi_nodes if chain else args.nodes
        rates, tried, accepted = measure(pipe, mode, args.images, args.batch, nodes, depths[mode], args.cfg,
                                         args.seed, chain)
        report["rates"][mode] = [[round(float(r), 4) for r in row] for row in rates]
        report["tried"][mode], report["accepted"][mode] = tried.tolist(), accepted.tolist()
        report["runs"][mode] = dict(run, exploratory_nodes=nodes, chain=chain)
        print(mode)
        for depth, row in enumerate(report["rates"][mode], 1):
            print(f"  depth {depth}: " + " ".join(f"{r:.3f}" for r in row))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
