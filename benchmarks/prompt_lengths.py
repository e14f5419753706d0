"""Janus prompts of many lengths in one generate() call: decoder batches, target passes and wall time.

Janus's unconditional CFG row is its prompt with the text replaced by pad tokens, so its length follows the
prompt's. Until 2026-12-05 the decoder took one unconditional length per batch and the pipelines split a call into
one decoder batch per distinct length; now both CFG branches are left-padded and masked in one batch. Run this at
the current commit and at one before the change (a git worktree at e22dd48, same command) to compare; the images
(first tokens recorded) must agree. Reduced Janus-Pro (tests/real_shapes.py: 2 layers, the released vocabulary,
384 px grid), float32, one CPU thread, 16 prompts of 16 lengths, CFG 5, best of --repeats.

    python benchmarks/prompt_lengths.py --out DIR [--modes ar jacobi] [--repeats 2]
    python benchmarks/prompt_lengths.py --smoke --out DIR     # 4 prompts, a 4 x 4 grid, one repeat (CI)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from hawk_kernels.pipelines import load_pipeline  # noqa: E402
from tests.real_shapes import build  # noqa: E402
from timing import report_header  # noqa: E402

WORDS = "a red fox sitting in the snow under a pale winter sky with pine trees and soft light".split()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--modes", nargs="+", default=["ar", "jacobi"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--smoke", action="store_true", help="4 prompts, a 4 x 4-code grid, one repeat")
    args = p.parse_args(argv)
    if args.smoke:
        args.prompts, args.repeats = 4, 1
    torch.set_num_threads(1)
    prompts = [" ".join(WORDS[: 2 + (i * 5) % 16]) for i in range(args.prompts)]
    with tempfile.TemporaryDirectory() as tmp:
        built = build("janus", Path(tmp) / "janus", vq="reduced", dtype=torch.float32,
                      janus_side=4 if args.smoke else None)
        pipe = load_pipeline(built.directory, dtype="float32")
        rows = pipe.prompt_rows(prompts, None, pipe.layout(None))
        report = dict(report_header("cpu", argv, "benchmarks/prompt_lengths.py"), smoke=args.smoke, prompts=len(prompts),
                      distinct_lengths=len({len(r) for r in rows.conditional}), runs={})
        for mode in args.modes:
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                res = pipe.generate_tokens(prompts, mode=mode, num_nodes=1 if mode == "ar" else 16, seed=0)
                seconds.append(time.perf_counter() - start)
            report["runs"][mode] = dict(decoder_batches=len(res.outputs), total_forward_passes=res.total_forward_passes,
                                        seconds=round(min(seconds), 2),
                                        first_tokens=res.image_tokens.flatten(1)[:, :8].tolist())
            print(mode, json.dumps({k: v for k, v in report["runs"][mode].items() if k != "first_tokens"}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompt_lengths.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
