"""`hawk generate`: text prompts -> PNG files with a model-family pipeline (Janus, Emu3, Lumina-mGPT).

    hawk generate --model DIR [--heads DIR] --prompt "a red fox" "a blue car" --out DIR [--mode] [--seed] [--cfg]

Everything that can be judged before generating is (the output directory, the prompts, the checkpoint, the
heads, the sampling arguments, a pixel decoder); images are written under a temporary name and renamed, so
--out never holds a half-written PNG. Prints the target passes per image, tokens per pass, seconds and how the
steps ran.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..checks import text_prompts
from ..drafts import MODES
from ..pipelines.base import DEFAULT_NUM_NODES
from .common import SEED, add_command, check_out_dir, number, pixel_size


def add_parser(subparsers) -> None:
    g = add_command(subparsers, "generate", run, "prompts -> PNGs with a Janus, Emu3 or Lumina-mGPT checkpoint")
    g.add_argument("--model", required=True, metavar="DIR",
                   help="checkpoint directory (loaded offline; family from config.json)")
    g.add_argument("--heads", default=None, metavar="DIR",
                   help="draft heads directory (`hawk train-heads --out DIR`) (default: none, so modes without heads)")
    g.add_argument("--prompt", dest="prompts", nargs="+", required=True, metavar="TEXT", help="one image per prompt")
    g.add_argument("--out", required=True, metavar="DIR", help="directory for the PNGs (created if missing)")
    g.add_argument("--mode", choices=MODES, default=None, help="decoding mode (default: hawk with --heads, else ar)")
    g.add_argument("--seed", type=SEED, default=0, help="random seed")
    g.add_argument("--cfg", type=number(float, 0.0), default=None, help="CFG scale (default: the family's)")
    g.add_argument("--temperature", type=number(float, 0.0), default=None,
                   help="0 decodes greedily (default: the family's, 1)")
    g.add_argument("--top-k", type=number(int, 1), default=None, help="top-k (default: the family's)")
    g.add_argument("--size", type=pixel_size, default=None, help="pixels, N or HxW (default: the family's)")
    g.add_argument("--nodes", type=number(int, 2), default=DEFAULT_NUM_NODES, help="tree nodes per step")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    g.add_argument("--dtype", default=None, help="float32, bfloat16, ... (default: the checkpoint's)")


def run(args) -> int:
    """Run `hawk generate`; bad input raises ValueError / TypeError / FileNotFoundError naming the flag."""
    from ..pipelines import load_pipeline

    out_dir = check_out_dir("--out", args.out)
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
    print(f"passes per image {res.num_forward_passes}, tokens per pass {res.tokens_per_pass:.2f}, "
          f"seconds {res.seconds:.2f}, steps: {res.step_engine}")
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
