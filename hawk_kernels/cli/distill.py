"""`hawk distill`: training sequences for draft heads, sampled by the model itself (its default sampling and CFG,
decoded in --mode: every mode is exact, jacobi the default) from --prompts or --input-ids, or your own --images
through the model's VQ encoder; resumable shards
(training/distillation.py), split over ranks under torchrun."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..drafts import MODES
from .common import (SEED, UsageError, add_command, as_flag_error, cfg_scale, check_heads_dir, check_mode_heads,
                     check_out_dir, number, pixel_size, plural, process_group, rank_device, temperature, tree_nodes)
from .models import CheckpointModel, add_model_arguments, model_choice


def add_parser(subparsers) -> None:
    s = add_command(subparsers, "distill", run,
                    "training sequences for draft heads: sampled from the model itself (--mode), or your own "
                    "images through the model's VQ encoder; resumable shards")
    add_model_arguments(s, "a Janus, Emu3, Lumina-mGPT or LlamaGen checkpoint directory", pixels=True)
    s.add_argument("--prompts", metavar="FILE", help="text file, one prompt per line (self-distillation; "
                                                     "LlamaGen c2i: one class label per line)")
    s.add_argument("--input-ids", metavar="FILE", help="JSON file: a list of token-id lists, one per prompt (a model "
                                                       "saved without its tokenizer; each row as the pipeline's "
                                                       "input_ids takes it)")
    s.add_argument("--images", metavar="DIR",
                   help="directory of images, each with a same-stem .txt caption (cat.png + cat.txt)")
    s.add_argument("--mode", choices=MODES, default="jacobi",
                   help="decoding mode that samples (all follow the model's law; jacobi: fewest passes, no heads)")
    s.add_argument("--heads", default=None, metavar="DIR|REPO",
                   help="draft heads (a directory, or a Hub repository id) for the modes that need them (default: "
                        "the demo's bundled heads; none for a checkpoint)")
    s.add_argument("--nodes", type=tree_nodes, default="auto",
                   help="tree nodes per step of every shard, or auto: chosen once for --batch-size from timed steps "
                        "and recorded in the manifest (a resumed run and every torchrun rank use the recorded size)")
    s.add_argument("--images-per-prompt", type=number(int, 1), default=1, help="samples of each prompt")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="data directory (a rerun with the same settings resumes it)")
    s.add_argument("--batch-size", type=number(int, 1), default=16, help="images per decoder batch and per shard")
    s.add_argument("--seed", type=SEED, default=0,
                   help="image k (prompt p, sample i: k = p * images-per-prompt + i) is sampled with seed + k")
    s.add_argument("--cfg", type=cfg_scale, default=None, help="CFG scale (default: the model's; demo 3)")
    s.add_argument("--temperature", type=temperature, default=None,
                   help="0 samples greedily (default: the model's, 1)")
    s.add_argument("--top-k", type=number(int, 1), default=None,
                   help="keep the k most likely codes (default: the model's)")
    s.add_argument("--size", type=pixel_size, default=None, help="pixels, N or HxW (default: the model's)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu; under "
                                                  "torchrun each rank takes GPU LOCAL_RANK)")
    s.add_argument("--threads", type=number(int, 1), default=1, help="CPU threads for torch")
    s.add_argument("--overwrite", action="store_true", help="discard shards made with other settings")
    s.set_defaults(on_interrupt=lambda args: "the shards written are complete; the same command resumes")


def run(args) -> int:
    from ..training.distillation import distill, distill_images, image_files

    model = model_choice(args)
    if (args.prompts is None) + (args.images is None) + (args.input_ids is None) != 2:
        raise UsageError("give --prompts FILE or --input-ids FILE (self-distillation), or --images DIR (your own "
                         "images): one of them")
    if args.images is not None and args.images_per_prompt != 1:
        raise UsageError("--images-per-prompt: 1 with --images (each image is one sequence)")
    model.check_inputs(size=args.size)
    if args.images is not None:
        try:
            prompts = image_files(args.images)[1]
        except (ValueError, FileNotFoundError) as exc:  # "images: ..." -> "--images: ..."
            raise as_flag_error(exc, {"images": "--images"}) or exc from None
    else:
        prompts = read_prompts(args.prompts) if args.prompts is not None else read_input_ids(args.input_ids)
    model.check_inputs(prompts)
    out = check_out_dir("--out", args.out)  # writable, before the model loads
    _check_before_loading(args, model, out)
    torch.set_num_threads(args.threads)
    device = rank_device(args.device)
    pipe = model.load(device, heads=args.heads, dtype=args.dtype)
    if args.input_ids is not None:  # the ids meet the model's vocabulary: name the file
        _check_input_ids(pipe, prompts, args)
    if args.images is None:
        check_mode_heads(args.mode, pipe.heads is not None, "this model has none")
    common = dict(batch_size=args.batch_size, size=args.size, overwrite=args.overwrite)
    # the library checks its arguments (sampling, layout, prompts against the model's positions) before it writes
    # the manifest; its errors name its arguments, mapped here to the flags
    source = "--images" if args.images is not None else "--prompts" if args.prompts is not None else "--input-ids"
    flags = {"size": "--size", "cfg_scale": "--cfg", "temperature": "--temperature", "top_k": "--top-k",
             "mode": "--mode", "num_nodes": "--nodes", "batch_size": "--batch-size", "out": "--out",
             "images": "--images", "prompts": source, "input_ids": source}
    try:
        if args.images is not None:
            manifest = distill_images(pipe, args.images, out, **common)
        else:
            manifest = distill(pipe, prompts, out, args.images_per_prompt, seed=args.seed, cfg_scale=args.cfg,
                               temperature=args.temperature, top_k=args.top_k, mode=args.mode, num_nodes=args.nodes,
                               **common)
    except (ValueError, TypeError) as exc:
        named = str(exc).partition(": ")[0] in ("prompts", "input_ids")  # a prompt of the file: name the file too
        flagged = as_flag_error(exc, flags, f"{(args.prompts or args.input_ids or args.images)!r}: " if named else "")
        if flagged is None:
            raise
        raise flagged from None
    _summary(manifest, out, device)
    return 0


def _check_before_loading(args, model, out: Path) -> None:
    """--heads, a --mode that needs heads on a checkpoint without --heads, and --out's manifest (unreadable:
    refused), before the model loads."""
    from ..training.shards import MANIFEST, read_manifest

    check_heads_dir("--heads", args.heads)
    if args.images is None:
        check_mode_heads(args.mode, args.heads is not None or not isinstance(model, CheckpointModel),
                         "a checkpoint has none of its own")
    if (out / MANIFEST).exists() and not args.overwrite:
        try:
            read_manifest(out / MANIFEST, "--out")
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def _summary(manifest: dict, out: Path, device) -> None:
    """One closing line, by rank 0 once every rank's shards are written (torchrun: after a barrier)."""
    from ..training.distillation import rank_and_world

    rank, world = rank_and_world()
    if world > 1:
        process_group(device)()
        torch.distributed.destroy_process_group()
    if rank == 0:
        settings = manifest["settings"]
        tree = "" if settings.get("num_nodes") is None else \
            f", decoded in {settings['mode']} with {settings['num_nodes']}-node trees"
        print(f"{settings['num_prompts'] * settings['images_per_prompt']} sequences in "
              f"{plural(manifest['num_shards'], 'shard')} under {out}{tree}")


def read_prompts(path: str) -> list[str]:
    """One prompt per line (UTF-8); blank lines and lines starting with '#' are skipped."""
    from ..pipelines.batch_job import prompt_lines

    try:
        return [line for _, line in prompt_lines(path, "--prompts")]
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None


def read_input_ids(path: str) -> list[list[int]]:
    """A JSON file holding a list of token-id lists, one per prompt."""
    if not os.path.isfile(path):
        raise UsageError(f"--input-ids: no such file {path!r}")
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--input-ids: {path!r} is not JSON ({exc})") from None
    if not isinstance(rows, list) or not rows or not all(
            isinstance(row, list) and row and all(isinstance(t, int) and t >= 0 for t in row) for row in rows):
        raise UsageError(f"--input-ids: {path!r} must hold a non-empty JSON list of non-empty lists of token ids")
    return rows


def _check_input_ids(pipe, rows: list[list[int]], args) -> None:
    """--input-ids rows as the pipeline takes them (ids inside its vocabulary, ...): errors name the flag and file."""
    try:
        grid = pipe.layout(args.size)
    except ValueError as exc:
        raise as_flag_error(exc, {"size": "--size"}) or exc from None
    try:
        pipe.prompt_rows(None, rows, grid)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--input-ids: {args.input_ids!r}: {exc}") from None
