"""Acceptance, steps, wall time and image quality of every decoding mode on the bundled model.

For each mode (AR, Medusa, vertical-only, Hawk): generate N images (prompts cycle over the ten digits and
their phrasings, CFG on, temperature 1, lossless), count target passes per image and tokens per pass, time
the batch, and judge the images with an independent trained MNIST classifier (python/digit_judge.py):
prompt-match accuracy and a Frechet distance on its features, against the real held-out digits.
Writes benchmarks/results/demo_eval_<device>.json.

    python python/evaluate_demo.py --images 1000 --modes ar hawk      # the quality comparison
    python python/evaluate_demo.py --images 100                         # all four modes, quick
    python python/evaluate_demo.py --images 2 --batch 2 --bootstrap 2 --out /tmp/e.json   # the CI smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchmarks.timing import report_header  # noqa: E402
from digit_judge import DigitJudge, frechet_distance  # noqa: E402

import hawk_kernels as hk  # noqa: E402
from hawk_kernels.pipelines.demo.data import load_split  # noqa: E402


def prompts_for(count: int, vocab) -> tuple[list[str], list[int]]:
    prompts, labels = [], []
    for i in range(count):
        digit = i % 10
        texts = vocab.all_prompt_texts(digit)
        prompts.append(texts[(i // 10) % len(texts)])
        labels.append(digit)
    return prompts, labels


def run_mode(pipe, mode, prompts, batch, seed, cfg, nodes):
    images, passes, tokens, seconds = [], [], [], 0.0
    for start in range(0, len(prompts), batch):
        out = pipe.generate(prompts[start: start + batch], mode=mode, seed=seed + start, cfg_scale=cfg,
                            num_nodes=nodes, progress=False)
        images += [np.asarray(img) for img in out.images]
        passes += out.num_forward_passes
        seconds += out.seconds
        # tokens committed by the passes (the prefill's first token and the fixed image-end are not)
        tokens += [sum(step[row] for step in out.outputs[0].accepted_lengths) for row in range(len(out.images))]
        print(f"  {mode}: {len(images)}/{len(prompts)} images, {seconds:.1f}s", flush=True)
    # per image: tokens committed by target passes (layout included) over those passes
    return np.stack(images), passes, float(np.sum(tokens) / np.sum(passes)), seconds


def bootstrap_frechet(feats, real_feats, rounds: int, seed: int = 0) -> float:
    """Standard deviation of the Frechet distance over bootstrap resamples of the generated images."""
    rng = np.random.default_rng(seed)
    values = [frechet_distance(feats[rng.integers(0, len(feats), len(feats))], real_feats) for _ in range(rounds)]
    return float(np.std(values))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--modes", nargs="*", default=["ar", "medusa", "vertical", "hawk"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--nodes", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bootstrap", type=int, default=50, help="bootstrap resamples of the Frechet distance")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # tiny model: extra threads only contend on small shared CPUs
    pipe = hk.load_demo_pipeline(device=args.device)
    judge = DigitJudge()
    real, real_labels = load_split("heldout")
    real_feats = judge.features(real)
    prompts, labels = prompts_for(args.images, pipe.vocab)
    results = {}
    for mode in args.modes:
        images, passes, per_pass, seconds = run_mode(pipe, mode, prompts, args.batch, args.seed, args.cfg, args.nodes)
        acc = float((judge.predict(images) == np.array(labels)).mean())
        feats = judge.features(images)
        fd = frechet_distance(feats, real_feats)
        results[mode] = dict(images=len(images), mean_passes_per_image=float(np.mean(passes)),
                             tokens_per_pass=per_pass, seconds=seconds, judge_prompt_accuracy=acc,
                             judge_prompt_accuracy_stderr=float(np.sqrt(acc * (1 - acc) / len(images))),
                             frechet_distance_vs_real=fd,
                             frechet_distance_bootstrap_std=bootstrap_frechet(feats, real_feats, rounds=args.bootstrap))
    base = results.get("ar")
    for mode, r in results.items():
        if base:
            r["step_ratio_vs_ar"] = base["mean_passes_per_image"] / r["mean_passes_per_image"]
            r["wall_ratio_vs_ar"] = base["seconds"] / r["seconds"] * (r["images"] / base["images"])
        print(mode, json.dumps(r))
    real_acc = float((judge.predict(real) == real_labels).mean())
    report = dict(**report_header(pipe.device), results=results, real_heldout_judge_accuracy=real_acc,
                  num_nodes=args.nodes, cfg=args.cfg, temperature=1.0)
    path = args.out or f"benchmarks/results/demo_eval_{pipe.device.type}.json"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
