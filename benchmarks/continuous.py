"""Continuous batching against fixed batches (pipelines/continuous.py), on the bundled model.

The same images (prompts, seeds, mode, tree size) two ways:
  * fixed: `pipe.generate` on consecutive batches of `batch` prompts, each batch stepping until its slowest row
    is done (how `hawk generate` ran before continuous batching);
  * continuous: `stream_images` with `batch` rows, a finished row taking the next prompt at once.
Reported per (mode, batch): decode steps of the whole run (a device-independent count: each step is one target
pass over `batch` rows), wall time (perf_counter around the whole run, pixels decoded in both, best of --rounds,
the two ways interleaved), their ratios, and whether every image is the same both ways (it must be: a refilled row
decodes exactly as its image alone; in float32 a fixed batch's matmuls may round a near-tie draw differently from
the image decoded alone, so --dtype float64 checks exactness). Steps are counted by wrapping DecodeSession.run in
this process.

    python benchmarks/continuous.py --out benchmarks/results/continuous_batching_cpu.json
    python benchmarks/continuous.py --smoke --out /tmp/continuous_smoke.json      # seconds (CI smoke test)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import hawk_kernels as hk  # noqa: E402
from hawk_kernels.engine.session import DecodeSession  # noqa: E402
from hawk_kernels.pipelines.continuous import stream_images  # noqa: E402
from timing import report_header  # noqa: E402

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class StepCounter:
    """Counts DecodeSession.run's steps while active (the benchmark's own instrument, not the package's)."""

    def __init__(self):
        self.steps, self._run = 0, DecodeSession.run

    def __enter__(self):
        counter = self

        def run(session, steps: int = 1):
            counter.steps += steps
            return counter._run(session, steps)

        DecodeSession.run = run
        return self

    def __exit__(self, *exc):
        DecodeSession.run = self._run


def run_fixed(pipe, prompts, seeds, batch, mode, nodes):
    tokens = []
    with StepCounter() as counter:
        start = time.perf_counter()
        for k in range(0, len(prompts), batch):
            res = pipe.generate(prompts[k:k + batch], mode=mode, seed=seeds[k:k + batch], num_nodes=nodes)
            tokens.extend(res.image_tokens)
        seconds = time.perf_counter() - start
    return counter.steps, seconds, tokens


def run_continuous(pipe, prompts, seeds, batch, mode, nodes):
    tokens = [None] * len(prompts)
    with StepCounter() as counter:
        start = time.perf_counter()
        for members, res in stream_images(pipe, prompts, batch, mode=mode, seed=seeds, num_nodes=nodes):
            for k, i in enumerate(members):
                tokens[i] = res.image_tokens[k]
        seconds = time.perf_counter() - start
    return counter.steps, seconds, tokens


def measure(pipe, mode: str, batch: int, images: int, nodes: int, rounds: int) -> dict:
    prompts = [f"a handwritten digit {WORDS[i % 10]}" for i in range(images)]
    seeds = list(range(images))
    best = {"fixed": None, "continuous": None}
    for _ in range(rounds):  # interleaved, best of rounds: machine noise falls on both alike
        for name, runner in (("fixed", run_fixed), ("continuous", run_continuous)):
            steps, seconds, tokens = runner(pipe, prompts, seeds, batch, mode, nodes)
            if best[name] is None or seconds < best[name][1]:
                best[name] = (steps, seconds, tokens)
    (f_steps, f_sec, f_tok), (c_steps, c_sec, c_tok) = best["fixed"], best["continuous"]
    differing = [i for i, (a, b) in enumerate(zip(f_tok, c_tok)) if not torch.equal(a, b)]
    return dict(mode=mode, batch=batch, images=images, num_nodes=nodes, fixed_steps=f_steps, continuous_steps=c_steps,
                steps_ratio=round(f_steps / c_steps, 4), fixed_seconds=round(f_sec, 4),
                continuous_seconds=round(c_sec, 4), speedup=round(f_sec / c_sec, 4),
                images_per_second=dict(fixed=round(images / f_sec, 3), continuous=round(images / c_sec, 3)),
                same_images=not differing, differing_images=differing)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="result JSON file")
    parser.add_argument("--modes", nargs="+", default=["jacobi", "hawk", "hawk+jacobi"])
    parser.add_argument("--batches", nargs="+", type=int, default=[4, 16])
    parser.add_argument("--images-per-row", type=int, default=4, help="images = batch x this")
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype", default="float32", help="the bundled model's dtype (float64: exact comparison)")
    parser.add_argument("--smoke", action="store_true", help="jacobi, batch 2, 4 images, 1 round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.modes, args.batches, args.images_per_row, args.nodes, args.rounds = ["jacobi"], [2], 2, 8, 1
    pipe = hk.load_demo_pipeline(dtype=args.dtype)
    report = report_header(pipe.device, argv, script="benchmarks/continuous.py")
    report["rows"] = []
    for batch in args.batches:
        for mode in args.modes:
            row = measure(pipe, mode, batch, batch * args.images_per_row, args.nodes, args.rounds)
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    if args.dtype == "float64" and not all(row["same_images"] for row in report["rows"]):
        print("continuous batching changed an image in float64", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
