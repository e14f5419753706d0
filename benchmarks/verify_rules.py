"""The two verification rules side by side on the bundled model: tokens per target pass of every drafting mode
under "coupled" (the default: the target's own Gumbel-max sample, keyed by seed and position, the drafts drawing
with the same noise) and "rejection" (Hawk's multi-draft rejection sampling), and whether each coupled image is the
AR image of its seed token for token. The bundled model, its heads and rates; CFG 3, temperature 1; the same
prompts and seed sets for both rules (each rule samples its own images, so the tokens-per-pass figures differ by
content as well as by rule: more seed sets shrink that).

    python benchmarks/verify_rules.py --out DIR [--images 60] [--seed-sets 3] [--nodes 16 32]
    python benchmarks/verify_rules.py --smoke --out DIR     # 4 images, one seed set, 8 nodes, two modes (CI)
    python benchmarks/verify_rules.py --out DIR --rules coupled --heads HEADS_DIR   # another rate table, same images

Under "coupled" an image does not depend on the drafts, so two runs of it (e.g. two rate tables via --heads: the
rates beside those heads) compare tokens per pass on the very same images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "python")]

import hawk_kernels as hk  # noqa: E402
from evaluate_demo import prompts_for  # noqa: E402
from timing import report_header  # noqa: E402

MODES = ("medusa", "vertical", "hawk", "jacobi", "hawk+jacobi")
RULES = ("coupled", "rejection")


def _decode(pipe, mode: str, prompts, nodes: int, seed: int, batch: int):
    """All prompts in batches of `batch` (image i: seed + i) -> (image tokens, committed, passes, seconds)."""
    tokens, committed, passes, start = [], 0, 0, time.perf_counter()
    for first in range(0, len(prompts), batch):
        res = pipe.generate_tokens(prompts[first:first + batch], mode=mode, seed=seed + first, num_nodes=nodes)
        tokens.append(res.image_tokens)
        committed += sum(res.committed)
        passes += sum(res.num_forward_passes)
    return torch.cat(tokens), committed, passes, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--seed-sets", type=int, default=3)
    p.add_argument("--nodes", type=int, nargs="+", default=[16, 32])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    p.add_argument("--heads", default=None, help="heads directory (and the tree_rates.json beside them); default: "
                   "the bundled heads")
    p.add_argument("--smoke", action="store_true", help="4 images, one seed set, 8 nodes, medusa and hawk+jacobi")
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.seed_sets, args.nodes, args.modes, args.batch = 4, 1, [8], ["medusa", "hawk+jacobi"], 4
    torch.set_num_threads(1)
    pipe = hk.load_demo_pipeline(device="cpu", heads=args.heads)
    prompts, _ = prompts_for(args.images, pipe.vocab)
    seeds = [500 + 1000 * k for k in range(args.seed_sets)]
    report = dict(report_header("cpu", argv, "benchmarks/verify_rules.py"), smoke=args.smoke, images=args.images,
                  seeds=seeds, batch=args.batch, heads=args.heads or "bundled",
                  cfg_scale=pipe.defaults.get("cfg_scale"), rows=[])
    ar = {seed: _decode(pipe, "ar", prompts, 1, seed, args.batch)[0] for seed in seeds}  # coupled AR, per seed set
    for nodes in args.nodes:
        for mode in args.modes:
            for rule in args.rules:
                pipe.verify = rule
                runs = [_decode(pipe, mode, prompts, nodes, seed, args.batch) for seed in seeds]
                same = [bool(torch.equal(run[0], ar[seed])) for run, seed in zip(runs, seeds)]
                report["rows"].append(dict(mode=mode, nodes=nodes, verify=rule,
                                           tokens_per_pass=round(sum(r[1] for r in runs) / sum(r[2] for r in runs), 4),
                                           per_seed_set=[round(r[1] / r[2], 4) for r in runs],
                                           same_as_ar=all(same) if rule == "coupled" else any(same),
                                           seconds=round(sum(r[3] for r in runs), 2)))
                print(json.dumps(report["rows"][-1]), flush=True)
    pipe.verify = "coupled"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify_rules.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
