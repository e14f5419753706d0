"""`hawk generate`: prompts -> PNG files with a model-family pipeline (Janus, Emu3, Lumina-mGPT and LlamaGen
t2i: text; LlamaGen c2i: class labels).

    hawk generate (--demo | --model DIR) [--heads DIR] (--prompt TEXT... | --prompts FILE) --out DIR
                  [--batch-size N] [--mode] [--seed] [--cfg]
    torchrun --nproc_per_node R -m hawk_kernels generate ...   (rank r makes images i with i % R == r)

Everything that can be judged before generating is (the output directory, the prompts, the checkpoint, the
heads, the sampling arguments, a pixel decoder); images are written under a temporary name and renamed, so
--out never holds a half-written PNG; each image gets a manifest.jsonl line, and a re-run skips the images
already written (pipelines/batch_job.py).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..checks import ATTENTION_IMPLEMENTATIONS, text_prompts
from ..decoder import VERIFY_RULES
from ..drafts import MODES, default_mode
from .common import (SEED, UsageError, add_command, as_flag_error, cfg_scale, check_heads_dir, check_mode_heads,
                     check_out_dir, compile_word, number, pixel_size, plural, process_group, rank_device, temperature,
                     tree_nodes)
from .models import CheckpointModel, add_model_arguments, model_choice

FLAGS = {"size": "--size", "cfg_scale": "--cfg", "temperature": "--temperature", "top_k": "--top-k",
         "num_nodes": "--nodes", "mode": "--mode", "heads": "--heads",
         "negative_prompt": "--negative-prompt"}  # the library's argument names -> flags


def add_parser(subparsers) -> None:
    g = add_command(subparsers, "generate", run,
                    "prompts -> PNGs with the bundled model or a Janus, Emu3, Lumina-mGPT or LlamaGen checkpoint; "
                    "batched, resumable, split over torchrun ranks")
    add_model_arguments(g, "checkpoint directory (family from config.json)", pixels=True)
    g.add_argument("--heads", default=None, metavar="DIR|REPO",
                   help="draft heads directory (`hawk train-heads --out DIR`), or a Hub repository id of one "
                        "(default: the demo's bundled heads; "
                        "none for a checkpoint, so modes without heads)")
    g.add_argument("--prompt", dest="prompts", nargs="+", default=None, metavar="TEXT", help="one image per prompt")
    g.add_argument("--prompts", dest="prompts_file", default=None, metavar="FILE",
                   help="text file (one prompt per line; LlamaGen c2i: one class label per line, e.g. 207) or JSONL "
                        "({\"prompt\": ..., \"seed\", \"size\", \"cfg\", \"negative_prompt\" optional}): one image "
                        "per prompt")
    g.add_argument("--out", required=True, metavar="DIR",
                   help="directory for the PNGs and manifest.jsonl (created if missing; a re-run resumes it)")
    g.add_argument("--mode", choices=MODES, default=None,
                   help="decoding mode (default: hawk+jacobi with heads, else jacobi: the most tokens per pass, exact)")
    g.add_argument("--seed", type=SEED, default=0, help="image i is sampled with seed + i (unless its line gives one)")
    g.add_argument("--batch-size", type=number(int, 1), default=1,
                   help="images per decoder batch (1: images identical whatever the process or batch)")
    g.add_argument("--max-images", type=number(int, 1), default=None,
                   help="stop after this many new images per process (a re-run resumes) (default: all)")
    g.add_argument("--cfg", type=cfg_scale, default=None, help="CFG scale (default: the model's)")
    g.add_argument("--negative-prompt", default=None, metavar="TEXT",
                   help="the CFG branch's text, for images whose line gives none (Emu3; default: the model's own "
                        "branch)")
    g.add_argument("--temperature", type=temperature, default=None,
                   help="0 decodes greedily (default: the model's, 1)")
    g.add_argument("--top-k", type=number(int, 1), default=None, help="top-k (default: the model's)")
    g.add_argument("--size", type=pixel_size, default=None, help="pixels, N or HxW (default: the model's)")
    g.add_argument("--nodes", type=tree_nodes, default="auto",
                   help="tree nodes per step, or auto: the size that maximises images per second for the batch "
                        "(step costs measured once, cached under ~/.cache/hawk_kernels); 1 decodes with AR steps")
    g.add_argument("--verify", choices=VERIFY_RULES, default="coupled",
                   help="coupled: every image is the AR image of its seed, in every mode, tree size and batch; "
                        "rejection: Hawk's multi-draft rejection sampling (the same law, another image per mode)")
    g.add_argument("--compile", type=compile_word, default="auto",
                   help="compile the decode step with torch.compile: auto (on CUDA), on, off, or regional (the "
                        "decoder layers compiled once as one region: faster to compile, a slightly slower step)")
    g.add_argument("--attn-implementation", choices=ATTENTION_IMPLEMENTATIONS, default=None,
                   help="the model's attention (default: the checkpoint's); flex_attention (CUDA) attends to the "
                        "filled cache slots only")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu; under "
                                                  "torchrun each rank takes GPU LOCAL_RANK)")
    g.add_argument("--threads", type=number(int, 1), default=None, help="CPU threads for torch (default: torch's)")
    g.set_defaults(on_interrupt=lambda args: f"the images written are complete and listed in "
                                             f"{Path(args.out) / 'manifest.jsonl'}; the same command resumes")


def run(args) -> int:
    """Run `hawk generate`; bad input raises ValueError / TypeError / FileNotFoundError naming the flag."""
    from ..pipelines.batch_job import check_resume, merge_manifest, run_jobs, written
    from ..training.distillation import rank_and_world

    for name, value in _NEW_ARGUMENTS.items():  # callers that build args themselves (the pipelines' old API)
        if not hasattr(args, name):
            setattr(args, name, value)
    model = model_choice(args)
    out_dir = check_out_dir("--out", args.out)
    _check_heads(model, args)
    jobs = _jobs(args)
    model.check_inputs(size=args.size)
    _check_prompts(model, jobs, args)
    _check_sizes(model, jobs, args)
    early = {key: value for key, value in (("temperature", args.temperature), ("top_k", args.top_k),
                                           ("verify", args.verify)) if value is not None}
    check_resume(out_dir, jobs, args.mode, settings=early)  # other jobs' images there: refused before the model loads
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rank, world = rank_and_world()
    device = rank_device(args.device)
    pipe = model.load(device, heads=args.heads, dtype=args.dtype, compile=args.compile,
                      attn_implementation=args.attn_implementation)
    pipe.verify = args.verify
    if not pipe.has_pixel_decoder:
        raise FileNotFoundError(f"--model: no pixel decoder for this {pipe.family} checkpoint in {args.model!r} "
                                f"(Lumina-mGPT needs Meta's vqgan.ckpt there, or --vqgan FILE): no PNG could be "
                                f"written")
    mode = args.mode or default_mode(pipe.heads is not None)
    check_mode_heads(mode, pipe.heads is not None, "this model has none")
    _check_jobs(pipe, jobs, args)  # every job against the model: a bad one fails before anything is written
    barrier = process_group(device) if world > 1 else None
    if rank == 0:
        print(f"{pipe.family} on {pipe.device}; {plural(len(jobs), 'image')}; mode {mode}"
              + (f"; {world} processes" if world > 1 else ""), flush=True)
    start = time.perf_counter()
    try:
        paths = run_jobs(pipe, jobs, out_dir, mode, args.batch_size, args.nodes, args.temperature, args.top_k, rank,
                         world, args.max_images, progress=True, barrier=barrier)
    except KeyboardInterrupt:  # Ctrl-C, one process: manifest.jsonl lists the images written (ranks: on resume)
        if world == 1 and written(out_dir):
            merge_manifest(out_dir)
        raise
    except (ValueError, TypeError) as exc:  # e.g. heads trained for another model: found when the decoder is built
        flags = FLAGS if args.heads is not None else {k: v for k, v in FLAGS.items() if k != "heads"}
        raise as_flag_error(exc, flags) or exc from None
    for path in paths:
        print(path)
    if barrier is not None:
        torch.distributed.destroy_process_group()
    if rank == 0:
        _summary(pipe, jobs, out_dir, paths, time.perf_counter() - start)
    return 0


def _summary(pipe, jobs, out_dir: Path, paths: list, seconds: float) -> None:
    """The closing line: every image of the manifest (this run's and earlier ones), then this process's."""
    rows = [json.loads(line) for line in (out_dir / "manifest.jsonl").read_text().splitlines()]
    passes = sum(r["passes"] for r in rows) / max(1, len(rows))
    tokens = sum(r["passes"] * r["tokens_per_pass"] for r in rows) / max(1, sum(r["passes"] for r in rows))
    nodes = "/".join(str(n) for n in sorted({r["num_nodes"] for r in rows}))
    weighed = "; ".join(dict.fromkeys(r["tree_rates"] for r in rows if "tree_rates" in r))  # --nodes auto's
    nodes += f" (auto, acceptance {weighed})" if weighed else ""
    steps = "; ".join(dict.fromkeys(r.get("steps", "?") for r in rows))
    compiling = pipe.compile_seconds  # this process's, num_nodes="auto"'s timing included
    print(f"{plural(len(rows), 'image')} of {len(jobs)} in {out_dir / 'manifest.jsonl'}; passes per image "
          f"{passes:.1f}, tokens per pass {tokens:.2f}, tree nodes {nodes}, steps: {steps}; this process made "
          f"{len(paths)} in {seconds:.1f} seconds"
          + (f" ({compiling:.1f} of them compiling the step)" if compiling >= 0.05 else ""))


def _check_heads(model, args) -> None:
    """--heads (a heads directory) and a --mode that needs heads on a checkpoint without --heads: before it loads."""
    check_heads_dir("--heads", args.heads)
    check_mode_heads(args.mode, args.heads is not None or not isinstance(model, CheckpointModel),
                     "a checkpoint has none of its own")


def _jobs(args) -> list:
    """--prompt TEXT... or --prompts FILE (one of them) -> the image jobs, --size, --cfg and --negative-prompt
    filled in."""
    from ..pipelines.batch_job import prompt_jobs, read_prompt_file

    if (args.prompts is None) == (args.prompts_file is None):
        raise UsageError("give --prompt TEXT... or --prompts FILE, one of them")
    if args.prompts_file is None:
        return prompt_jobs(text_prompts("--prompt", args.prompts), args.seed, args.size, args.cfg,
                           args.negative_prompt)
    try:
        jobs = read_prompt_file(args.prompts_file, args.seed)
    except (ValueError, FileNotFoundError) as exc:  # they name --prompts, the file and the line
        raise UsageError(str(exc)) from None
    return [replace(j, size=args.size if j.size is None else j.size, cfg=args.cfg if j.cfg is None else j.cfg,
                    negative_prompt=args.negative_prompt if j.negative_prompt is None else j.negative_prompt)
            for j in jobs]


def _check_prompts(model, jobs, args) -> None:
    """The prompts, where the model's tokenizer is known before it loads (the demo's words): an error names the
    prompt's --prompt or its line of --prompts."""
    from ..pipelines.batch_job import job_where

    try:
        model.check_inputs([job.prompt for job in jobs])
    except UsageError as exc:
        for job in jobs:  # which one: one at a time, on the error path only
            try:
                model.check_inputs([job.prompt])
            except UsageError as own:
                message = str(own).partition(": ")[2] if str(own).startswith("--prompts: ") else str(own)
                raise UsageError(f"{job_where(job, args.prompts_file)}: {message}") from None
        raise exc


def _check_sizes(model, jobs, args) -> None:
    """The sizes of the prompts file's lines, where the model's layouts are known before it loads (the demo)."""
    from ..pipelines.batch_job import job_where

    for size, job in {job.size: job for job in reversed(jobs) if job.size != args.size}.items():
        try:
            model.check_inputs(size=size)
        except UsageError as exc:  # "--size: ..." of the line's own size
            raise UsageError(f"{job_where(job, args.prompts_file)}: {str(exc).removeprefix('--')}") from None


def _check_jobs(pipe, jobs, args) -> None:
    """The arguments every job shares, then each job (batch_job.check_jobs: its sampling, layout, prompt tokens
    and the model's positions), before the first image: errors name the flag, or the job's line of --prompts."""
    from ..pipelines.batch_job import check_jobs

    try:
        pipe._prepare("ar", args.size, args.cfg, args.temperature, args.top_k, None)  # the flags, by the family's rules
        if args.negative_prompt is not None:  # a family without a text CFG branch: named by the flag, not per prompt
            pipe.negative_rows([args.negative_prompt], pipe.layout(args.size))
        check_jobs(pipe, jobs, args.temperature, args.top_k, args.prompts_file)
    except (ValueError, TypeError) as exc:
        raise as_flag_error(exc, FLAGS) or UsageError(str(exc)) from None


_NEW_ARGUMENTS = dict(demo=False, prompts_file=None, batch_size=1, max_images=None, threads=None, nodes="auto",
                      compile="auto", attn_implementation=None, negative_prompt=None, verify="coupled")


def write_pngs(images: list, prompts: list[str], out_dir: Path) -> list[Path]:
    """images[i] -> out_dir/NNN_<prompt words>.png, each written as .partial then renamed."""
    from ..pipelines.writer import save_image

    paths = []
    for i, (image, prompt) in enumerate(zip(images, prompts)):
        slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "image"
        path = out_dir / f"{i:03d}_{slug}.png"
        save_image(image, path)
        paths.append(path)
    return paths
