"""`hawk generate`: text prompts -> PNG files with a model-family pipeline (Janus, Emu3, Lumina-mGPT).

    hawk generate --model DIR [--heads DIR] --prompt "a red fox" "a blue car" --out DIR [--mode] [--seed] [--cfg]

Everything that can be judged before generating is (the output directory, the prompts, the checkpoint, the
heads, the sampling arguments, a pixel decoder); images are written under a temporary name and renamed, so
--out never holds a half-written PNG. Prints the target passes, tokens per pass and seconds.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from ..checks import text_prompts
from ..drafts import MODES


def add_generate_parser(subparsers) -> argparse.ArgumentParser:
    """Add `generate` to the `hawk` command's subparsers (hawk_kernels/cli.py's build_parser)."""
    from ..cli import _DefaultsNoneFormatter, _number  # imported here: cli.py imports this module

    g = subparsers.add_parser("generate", formatter_class=_DefaultsNoneFormatter,
                              help="prompts -> PNGs with a Janus, Emu3 or Lumina-mGPT checkpoint")
    g.add_argument("--model", required=True, help="checkpoint directory (loaded offline; family from config.json)")
    g.add_argument("--heads", default=None, help="draft heads directory (DraftHeads.save_pretrained)")
    g.add_argument("--prompt", dest="prompts", nargs="+", required=True, metavar="TEXT", help="one image per prompt")
    g.add_argument("--out", required=True, help="directory for the PNGs (created if missing)")
    g.add_argument("--mode", choices=MODES, default=None, help="decoding mode (default: hawk with --heads, else ar)")
    g.add_argument("--seed", type=_number(int, 0, 2**64 - 1), default=0, help="random seed")
    g.add_argument("--cfg", type=_number(float, 0.0), default=None, help="CFG scale (default: the family's)")
    g.add_argument("--temperature", type=_number(float, 0.0), default=None,
                   help="0 decodes greedily (default: the family's, 1)")
    g.add_argument("--top-k", type=_number(int, 1), default=None, help="top-k (default: the family's)")
    g.add_argument("--size", type=pixel_size, default=None, help="pixels, N or HxW (default: the family's)")
    g.add_argument("--nodes", type=_number(int, 2), default=None, help="tree nodes per step (default: 32)")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    g.add_argument("--dtype", default=None, help="float32, bfloat16, ... (default: the checkpoint's)")
    return g


def generate_command(args) -> int:
    """Run `hawk generate`; bad input raises ValueError / TypeError / FileNotFoundError naming the flag."""
    from . import load_pipeline

    out_dir = _checked_out(args.out)
    prompts = text_prompts("--prompt", args.prompts)
    pipe = load_pipeline(args.model, heads=args.heads, device=args.device, dtype=args.dtype)
    if not pipe.has_pixel_decoder:
        raise FileNotFoundError(f"--model: no pixel decoder for this {pipe.family} checkpoint in {args.model!r} "
                                f"(Lumina-mGPT needs Meta's vqgan.ckpt there): no PNG could be written")
    mode = args.mode or ("hawk" if pipe.heads is not None else "ar")
    print(f"{pipe.family} on {pipe.device}; {len(prompts)} prompt(s); mode {mode}", flush=True)
    res = pipe.generate(prompts, mode=mode, size=args.size, cfg_scale=args.cfg, temperature=args.temperature,
                        top_k=args.top_k, seed=args.seed, num_nodes=args.nodes, progress=True)
    out_dir.mkdir(exist_ok=True)
    for path in write_pngs(res.images, prompts, out_dir):
        print(path)
    print(f"passes {res.num_forward_passes}, tokens per pass {res.tokens_per_pass:.2f}, seconds {res.seconds:.2f}, "
          f"steps: {res.step_engine}")
    return 0


def write_pngs(images: list, prompts: list[str], out_dir: Path) -> list[Path]:
    """images[i] -> out_dir/NNN_<prompt words>.png, each written as .partial then renamed."""
    paths = []
    for i, (image, prompt) in enumerate(zip(images, prompts)):
        slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "image"
        path = out_dir / f"{i:03d}_{slug}.png"
        partial = path.with_name(path.name + ".partial")
        image.save(partial, format="PNG")
        os.replace(partial, path)
        paths.append(path)
    return paths


def _checked_out(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {path!r} exists and is not a directory")
    if not out.exists() and not out.parent.is_dir():
        raise ValueError(f"--out: parent directory {str(out.parent)!r} does not exist")
    if out.exists() and not os.access(out, os.W_OK):
        raise ValueError(f"--out: {path!r} is not writable")
    return out


def pixel_size(text: str):
    """'768' -> 768; '512x768' -> (512, 768) as (height, width)."""
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected N or HxW in pixels, got {text!r}")
    height = int(match.group(1))
    return height if match.group(2) is None else (height, int(match.group(2)))
