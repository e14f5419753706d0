"""Never slower than AR: images per second of num_nodes="auto" (hawk_kernels/tree_size.py) against AR and fixed
tree sizes, per drafting mode and batch size, on the bundled model, in one run (best of `--repeats`).

For each batch size: AR's images/s; for each drafting mode the size "auto" chooses (step costs measured into a
fresh table under --out, the bundled heads' calibrated rates) and its images/s; at batch 1 also every fixed size,
since "auto" must come within 10% of the best of them. Ratios are to AR measured in the same run. Every decoder of a
batch size is timed once per round, in turn, for --repeats rounds (best of the rounds) after --warmup-rounds
untimed ones (1: first-call costs such as a CUDA-graph capture are not timed), so a change of load
during the run hits all of them alike; AR is timed twice per round (two decoders), and the ratio of the two is
the run's noise band (where "auto" picks size 1 it runs AR steps, so its ratio is AR's within that band).

    python benchmarks/tree_size.py --out DIR [--batches 1 4 16 64] [--repeats 3]
    python benchmarks/tree_size.py --out DIR --continuous 4   # continuous batching: 4 images per row
    python benchmarks/tree_size.py --smoke --out DIR          # hawk, batch 1, sizes 1 and 4, one repeat
    python benchmarks/tree_size.py --out DIR --uncalibrated   # no calibrated rates: acceptance measured on the model

--continuous K times what `hawk generate --batch-size B` and `generate(prompts, batch_size=B)` run: B x K prompts
through one session of B rows, a finished row taking the next prompt (pipelines/continuous.py), and "auto" chooses
with continuous=True (a mean row's passes, not the slowest row's). Without it each decoder generates one fixed
batch of B prompts (`generate(prompts)`).
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
from timing import report_header  # noqa: E402
from hawk_kernels.cli.common import COMPILE_WORDS  # noqa: E402
from hawk_kernels.target import SamplingConfig  # noqa: E402
from hawk_kernels.tree_size import CANDIDATE_SIZES, SizeChoice, StepCostTable, choose_num_nodes  # noqa: E402

DRAFTING = ("medusa", "vertical", "hawk", "jacobi", "hawk+jacobi")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def decoder_factory(pipe, mode):
    """n -> the pipeline's own decoder of `mode` with n nodes (1: its AR decoder), what num_nodes="auto" picks
    from; built once each, with the pipeline's rates, trees and compile word."""
    return lambda n: pipe._decoder_of_size(mode, pipe.layout(None), n)


def interleaved(decoders: dict, pipe, batch: int, repeats: int, seed: int = 0, warmup: int = 1,
                per_row: int = 0) -> dict:
    """{label: images/s}, best of `repeats` rounds; each round times every decoder once, in turn, after `warmup`
    untimed rounds (a decoder's first image pays its first-call costs: CUDA-graph capture, a compile, allocator
    growth; without them a one-round run timed those). per_row > 0: each decoder runs a continuous session of
    `batch` rows over batch x per_row prompts (continuous_images) instead of one fixed batch."""
    if per_row:
        return _interleaved(decoders, pipe.device, repeats, warmup, batch * per_row,
                            lambda decoder: continuous_images(decoder, pipe, batch, per_row, seed))
    prompts = [f"a handwritten digit {WORDS[i % 10]}" for i in range(batch)]
    ids = [pipe.vocab.encode_prompt(p) for p in prompts]
    width = max(map(len, ids))
    device = pipe.device
    tokens = torch.tensor([[pipe.vocab.pad_id] * (width - len(x)) + x for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    negative = torch.tensor([pipe.vocab.unconditional_prompt()], device=device)
    return _interleaved(decoders, device, repeats, warmup, batch, lambda decoder: decoder.generate(
        tokens, attention_mask=mask, negative_input_ids=negative, cfg_scale=3.0, seed=seed))


def _interleaved(decoders: dict, device, repeats: int, warmup: int, images: int, run) -> dict:
    best = dict.fromkeys(decoders, float("inf"))
    for round_index in range(warmup + repeats):
        for label, decoder in decoders.items():
            start = time.perf_counter()
            run(decoder)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= warmup:
                best[label] = min(best[label], time.perf_counter() - start)
    return {label: images / seconds for label, seconds in best.items()}


def continuous_images(decoder, pipe, batch: int, per_row: int, seed: int = 0) -> None:
    """batch x per_row images through one session of `batch` rows of `decoder`, a finished row refilled with the
    next prompt at once (the loop of pipelines/continuous.py, on a decoder of the benchmark's choosing)."""
    from hawk_kernels.pipelines.continuous import _Call, _run_session
    from hawk_kernels.pipelines.rows import prompt_width

    prompts = [f"a handwritten digit {WORDS[i % 10]}" for i in range(batch * per_row)]
    grid, sampling = pipe._prepare(decoder.mode, None, 3.0, None, None, None)
    rows = pipe.call_rows(prompts, None, grid, sampling)
    every = range(len(prompts))
    call = _Call(rows, [(seed + i) % 2**64 for i in every], sampling, batch,
                 prompt_width(rows, every, sampling.uses_cfg), decoder, decoder.mode,
                 SizeChoice(decoder.tree.num_nodes, {}))  # a fixed size: no acceptance counts kept
    for _ in _run_session(pipe, call):
        pass


def acceptance_of(pipe, mode: str, table) -> tuple:
    """(the rates "auto" weighs `mode`'s sizes with, where they came from): the bundled heads' calibrated rates,
    or, with --uncalibrated (the pipeline's rates dropped), the acceptance a first call measures on the model
    (hawk_kernels/acceptance.py: a probe of the benchmark's first two images, counts kept beside `table`)."""
    from hawk_kernels.acceptance import AcceptanceTable, acceptance_key, measured_rates
    from hawk_kernels.pipelines.rows import probe_batch

    if pipe.accept_rates.get(mode) is not None:
        return pipe.accept_rates[mode], "calibrated with the heads"
    sampling, grid = SamplingConfig(3.0), pipe.layout(None)  # what the timed decoders sample
    prompts = [f"a handwritten digit {WORDS[i % 10]}" for i in range(2)]

    def probe():
        return probe_batch(pipe.call_rows(prompts, None, grid, sampling), range(2), [0, 1], True, pipe.device)

    return measured_rates(pipe, acceptance_key(pipe, mode, grid, sampling), mode, grid, sampling, probe,
                          AcceptanceTable(table.path.with_name("acceptance.json")))[:2]


def batch_rows(pipe, factories: dict, table, sizes, batch: int, repeats: int, compile="auto",
               warmup: int = 1, per_row: int = 0) -> list[dict]:
    """One row per mode at `batch`: auto's choice and estimates, its images/s against AR's, timed interleaved
    (per_row > 0: continuous sessions of per_row images per row)."""
    rates = {mode: acceptance_of(pipe, mode, table) for mode in factories}
    choices = {mode: choose_num_nodes(make, mode, rates[mode][0], batch, SamplingConfig(3.0), "demo",
                                      table, sizes, continuous=per_row > 0)
               for mode, make in factories.items()}
    ar_again = hk.HawkDecoder(pipe.model, None, pipe.grid, mode="ar", compile=compile)  # the noise band
    decoders = {"ar": next(iter(factories.values()))(1), "ar again": ar_again}
    for mode, make in factories.items():
        decoders[mode] = make(choices[mode].num_nodes)
        if batch == 1:
            decoders.update({(mode, n): make(n) for n in sizes if n > 1})
    speed = interleaved(decoders, pipe, batch, repeats, warmup=warmup, per_row=per_row)
    ar, rows = speed["ar"], []
    for mode, choice in choices.items():
        row = dict(batch=batch, mode=mode, continuous_images_per_row=per_row, auto_num_nodes=choice.num_nodes,
                   ar_images_per_s=ar,
                   ar_again_vs_ar=speed["ar again"] / ar, auto_images_per_s=speed[mode],
                   auto_vs_ar=speed[mode] / ar, estimates=choice.estimates, rates_from=rates[mode][1])
        if batch == 1:
            row["fixed_images_per_s"] = {n: speed[(mode, n)] for n in sizes if n > 1}
            row["auto_vs_best_fixed"] = speed[mode] / max(row["fixed_images_per_s"].values())
        print(f"batch {batch:>3} {mode:<12} auto={choice.num_nodes:<3} {speed[mode] / ar:5.2f}x AR (AR again "
              f"{speed['ar again'] / ar:.2f}x)" + (f", {row['auto_vs_best_fixed']:.2f}x best fixed" if batch == 1 else ""),
              flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64])
    p.add_argument("--modes", nargs="+", default=list(DRAFTING), choices=DRAFTING)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (best of them)")
    p.add_argument("--warmup-rounds", type=int, default=1, help="untimed rounds first (every decoder once each)")
    p.add_argument("--continuous", type=int, default=0, metavar="K",
                   help="time continuous sessions of K images per row (0: one fixed batch per decoder)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="drop the bundled heads' calibrated rates: trees take the generic prior's shapes and "
                        "'auto' weighs sizes with the acceptance measured on the model (a user without calibration)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu (1 thread) or cuda")
    p.add_argument("--compile", choices=tuple(COMPILE_WORDS), default="auto",
                   help="the decoders' compile word (auto: on CUDA; every size and mode compiles once)")
    args = p.parse_args(argv)
    if args.smoke:
        args.batches, args.modes, args.repeats = [1], ["hawk"], 1
    device = torch.device(args.device)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = StepCostTable(out / "step_costs.json")
    pipe = hk.load_demo_pipeline(device=device)
    compile = pipe.compile = COMPILE_WORDS[args.compile]
    if args.uncalibrated:
        pipe.set_heads(pipe.heads, None)
    factories = {mode: decoder_factory(pipe, mode) for mode in args.modes}
    sizes = (1, 4) if args.smoke else CANDIDATE_SIZES
    rows = []
    for batch in args.batches:
        rows += batch_rows(pipe, factories, table, sizes, batch, args.repeats, compile, args.warmup_rounds,
                           args.continuous)
    info = dict(report_header(device, argv, "benchmarks/tree_size.py"), threads=1, warmup_rounds=args.warmup_rounds,
                repeats=args.repeats, rows=rows, compile=args.compile, verify=pipe.verify,
                continuous_images_per_row=args.continuous, uncalibrated=args.uncalibrated,
                what="images/s of num_nodes='auto' vs AR and fixed sizes, bundled model, CFG 3, best of repeats "
                     "(after warmup_rounds untimed rounds)")
    name = f"tree_size_continuous{args.continuous}.json" if args.continuous else "tree_size.json"
    name = name.replace(".json", "_uncalibrated.json") if args.uncalibrated else name
    (out / name).write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
