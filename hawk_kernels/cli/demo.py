"""`hawk demo` (also `python -m hawk_kernels`): the bundled model (or heads you trained for it, --heads) in
several decoding modes on the same prompts and seed; prints passes, tokens per pass, wall time and how the steps
ran, and writes one image sheet (a row per mode)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..drafts import MODES, needs_heads
from .common import (SEED, UsageError, add_command, check_heads_dir, check_parent, check_writable, compile_word, number,
                     plural, tree_nodes)
from .models import BundledModel

SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # what --out may end with (where Pillow can save it)


def add_parser(subparsers) -> None:
    d = add_command(subparsers, "demo", run,
                    "generate digits with the bundled model in several modes and compare them")
    d.add_argument("--prompts", nargs="+", default=None, metavar="TEXT",
                   help="prompts such as 'a handwritten digit seven' (default: six built-in prompts)")
    d.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, metavar="MODE",
                   help=f"decoding modes to run, of {', '.join(MODES)} (default: all of them)")
    d.add_argument("--heads", default=None, metavar="DIR|REPO",
                   help="draft heads trained for the bundled model (`hawk train-heads --demo --out DIR`; or a Hub "
                        "repository id of them) "
                        "(default: the bundled heads)")
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    d.add_argument("--seed", type=SEED, default=0, help="random seed")
    d.add_argument("--cfg", type=number(float, 0.0), default=3.0, help="classifier-free guidance scale")
    d.add_argument("--temperature", type=number(float, 0.0), default=1.0, help="0 decodes greedily")
    d.add_argument("--top-k", type=number(int, 1), default=None,
                   help="keep the k most likely codes (default: all codes)")
    d.add_argument("--nodes", type=tree_nodes, default="auto",
                   help="tree nodes per step, or auto: the size that maximises images per second for the batch "
                        "(step costs measured once, cached under ~/.cache/hawk_kernels)")
    d.add_argument("--compile", type=compile_word, default="auto",
                   help="compile the decode step with torch.compile: auto (on CUDA), on, off, or regional (the "
                        "decoder layers compiled once as one region: faster to compile, a slightly slower step)")
    d.add_argument("--out", default="hawk_demo.png",
                   help=f"image sheet to write, one row per mode ({', '.join(SHEET_SUFFIXES)})")
    d.add_argument("--threads", type=number(int, 1), default=1, help="CPU threads for torch")
    d.add_argument("--rounds", type=number(int, 1), default=2,
                   help="run every mode this many times in turn and show each mode's fastest run (the images are "
                        "the same each time: same seed): one timing of a second or so reads tens of percent off "
                        "on a shared CPU")


def run(args) -> int:
    from ..checks import as_device
    from ..pipelines.demo.pipeline import DEFAULT_PROMPTS

    device = as_device("--device", args.device) if args.device else None
    check_sheet_path(args.out)
    prompts = args.prompts or list(DEFAULT_PROMPTS)
    if any(not prompt.strip() for prompt in prompts):
        raise UsageError("--prompts: an empty prompt would give an unconditional image")
    check_heads_dir("--heads", args.heads)
    model = BundledModel()
    model.check_inputs(prompts)  # unknown words fail here, before the model loads
    torch.set_num_threads(args.threads)  # tiny model: more threads only add contention on small CPUs
    pipe = model.load(device, heads=args.heads, compile=args.compile)
    if pipe.heads is None and any(needs_heads(mode) for mode in args.modes):
        raise UsageError("--modes: no trained heads are bundled, so only modes without heads can run "
                         f"({', '.join(m for m in MODES if not needs_heads(m))}); or give --heads DIR")
    print(f"device {pipe.device}; {plural(len(prompts), 'prompt')}; cfg {args.cfg}, temperature "
          f"{args.temperature}, tree nodes {args.nodes}" + (f"; heads from {args.heads}" if args.heads else ""))
    results = {}
    pipe.generate(prompts[:1], mode="ar", seed=args.seed, cfg_scale=args.cfg)  # warm-up (first-call overheads)
    for _ in range(args.rounds):  # modes in turn, so a slow spell of the machine does not fall on one mode alone
        for mode in args.modes:
            out = pipe.generate(prompts, mode=mode, seed=args.seed, cfg_scale=args.cfg, temperature=args.temperature,
                                top_k=args.top_k, num_nodes=args.nodes, progress=True)
            if mode not in results or out.seconds < results[mode].seconds:
                results[mode] = out
    print_table(results, args.rounds)
    outputs = list(results.values())
    if len(outputs) > 1 and all(torch.equal(out.image_tokens, outputs[0].image_tokens) for out in outputs):
        print(f"every mode sampled the same images (verify {pipe.verify}: each the AR image of its seed)")
    write_sheet({mode: out.images for mode, out in results.items()}, args.out)
    print(f"\nimages: {args.out} (rows: {', '.join(results)}; columns: {' | '.join(prompts)})")
    return 0


def print_table(results: dict, rounds: int = 1) -> None:
    """One line per mode of PipelineOutputs: passes per image, tokens per pass, seconds (the fastest of `rounds`
    runs), ratios to AR, steps."""
    base = results.get("ar")
    print(f"\n{'mode':<13}{'nodes':>6}{'passes/img':>11}{'tokens/pass':>13}{'wall s':>9}{'step ratio':>12}"
          f"{'speedup':>9}  steps")
    for mode, out in results.items():
        passes = sum(out.num_forward_passes) / len(out.num_forward_passes)
        ratio = f"{sum(base.num_forward_passes) / sum(out.num_forward_passes):>11.2f}x" if base else f"{'-':>12}"
        speed = f"{base.seconds / out.seconds:>8.2f}x" if base else f"{'-':>9}"
        nodes = "/".join(map(str, dict.fromkeys(out.num_nodes or [])))
        print(f"{mode:<13}{nodes:>6}{passes:>11.1f}{out.tokens_per_pass:>13.2f}{out.seconds:>9.2f}{ratio}{speed}"
              f"  {out.step_engine}")
    if rounds > 1:
        print(f"(wall s: each mode's fastest of {rounds} runs, taken in turn)")
    if base is None:
        print("(step ratio and speedup are relative to AR: add 'ar' to --modes to see them)")


def check_sheet_path(path: str) -> None:
    """--out must be writable now, with an extension of SHEET_SUFFIXES, so no result is lost later."""
    target = Path(path)
    if target.suffix.lower() not in sheet_suffixes():
        raise UsageError(f"--out: unknown image extension {target.suffix or '(none)'!r} in {path!r}; use "
                         f"{', '.join(sheet_suffixes())}")
    check_parent("--out", path)
    if target.is_dir():
        raise UsageError(f"--out: {path!r} is a directory; give an image file name such as hawk_demo.png")
    check_writable("--out", target.parent)


def sheet_suffixes() -> list[str]:
    """SHEET_SUFFIXES this Pillow can write."""
    from PIL import Image

    Image.init()
    return [s for s in SHEET_SUFFIXES if Image.registered_extensions().get(s) in Image.SAVE]


def write_sheet(rows: dict, path: str, scale: int = 3) -> None:
    """rows: mode -> images (one per prompt) -> a grayscale sheet, one labelled row per mode, written as
    path.partial then renamed (never a half-written image under the real name)."""
    from PIL import Image, ImageDraw

    from ..pipelines.writer import save_image

    columns = max(map(len, rows.values()))
    cell, label = 28 * scale, 90
    sheet = Image.new("L", (label + cell * columns, cell * len(rows)), 255)
    draw = ImageDraw.Draw(sheet)
    for r, (mode, images) in enumerate(rows.items()):
        draw.text((4, r * cell + cell // 2 - 6), mode, fill=0)
        for c, img in enumerate(images):
            sheet.paste(img.resize((cell, cell), Image.NEAREST), (label + c * cell, r * cell))
    save_image(sheet, Path(path), format=Image.registered_extensions()[Path(path).suffix.lower()])
