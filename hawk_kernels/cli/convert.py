"""`hawk convert-llamagen`: LlamaGen's released files -> a model directory that `hawk generate --model DIR` (and
distill, train-heads, load_pipeline) reads (pipelines/llamagen_convert.py). Class-conditional (c2i): a GPT such as
c2i_XL_384.pt and the VQ tokenizer vq_ds16_c2i.pt (huggingface.co/FoundationVision/LlamaGen); text-to-image (t2i):
t2i_XL_stage1_256.pt or t2i_XL_stage2_512.pt, vq_ds16_t2i.pt (huggingface.co/peizesun/llamagen_t2i) and --t5, the
google/flan-t5-xl directory its captions are read with (its encoder and tokenizer are written to text_encoder/).

    hawk convert-llamagen --gpt c2i_XL_384.pt --vq vq_ds16_c2i.pt --image-size 384 --out ckpt/llamagen-xl-384
    hawk convert-llamagen --gpt t2i_XL_stage1_256.pt --vq vq_ds16_t2i.pt --t5 flan-t5-xl --image-size 256 \\
        --out ckpt/llamagen-t2i-256

The image size is the one thing no weight records (the released file names say it: c2i_XL_384.pt is 384 px);
the model size, condition (classes or captions) and codebook are read from the weights. Every flag and path is
checked before a file is read; the directory is written whole in a temporary directory beside --out, then renamed.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..backbones.llamagen_gpt import GPT_SIZES
from .common import UsageError, add_command, as_flag_error, check_out_dir, number

DTYPES = ("float32", "bfloat16", "float16")
FLAGS = {"gpt_checkpoint": "--gpt", "vq_checkpoint": "--vq", "image_size": "--image-size", "gpt_model": "--gpt-model",
         "n_head": "--n-head", "out_dir": "--out", "dtype": "--dtype",
         "t5": "--t5"}  # the library's argument names -> flags


def add_parser(subparsers) -> None:
    c = add_command(subparsers, "convert-llamagen", run,
                    "LlamaGen's released files (a class-conditional c2i or text-to-image t2i GPT .pt, the VQ .pt; "
                    "t2i: and the flan-t5-xl directory, --t5) -> a model directory for --model DIR")
    c.add_argument("--gpt", required=True, metavar="FILE",
                   help="the released GPT: c2i (class labels), e.g. c2i_XL_384.pt, or t2i (text, with --t5), e.g. "
                        "t2i_XL_stage1_256.pt (DDP {'model': ...} and FSDP state dicts alike)")
    c.add_argument("--vq", required=True, metavar="FILE",
                   help="the VQ tokenizer the GPT was trained with: vq_ds16_c2i.pt (c2i) or vq_ds16_t2i.pt (t2i)")
    c.add_argument("--t5", default=None, metavar="DIR",
                   help="t2i GPTs only, and required for them: the T5 model directory their captions are read with "
                        "(google/flan-t5-xl as downloaded: config.json, weights, tokenizer); its encoder and "
                        "tokenizer are written into --out")
    c.add_argument("--image-size", required=True, type=number(int, 1, name="pixels"), metavar="PX",
                   help="pixels per side the GPT was trained for; its file name says it (c2i_XL_384.pt: 384; "
                        "c2i_B_256.pt: 256; t2i_XL_stage1_256.pt: 256; t2i_XL_stage2_512.pt: 512)")
    c.add_argument("--gpt-model", choices=tuple(GPT_SIZES), default=None,
                   help="upstream's size name (default: the size whose depth and width the weights have)")
    c.add_argument("--n-head", type=number(int, 1), default=None, metavar="N",
                   help="attention heads of a GPT of your own size, none of --gpt-model's (no weight records them)")
    c.add_argument("--dtype", choices=DTYPES, default=None,
                   help="dtype of the written GPT and T5 encoder (default: the checkpoint's, T5's as saved; the VQ "
                        "tokenizer stays float32)")
    c.add_argument("--out", required=True, metavar="DIR",
                   help="the model directory to write (created if missing; must be empty unless --overwrite)")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    c.set_defaults(on_interrupt=lambda args: f"{args.out} was not written (it is made in a temporary directory "
                                             f"and renamed whole); the same command starts again")


def run(args) -> int:
    """Run `hawk convert-llamagen`; bad input is one line naming the flag (UsageError)."""
    from ..pipelines.llamagen_convert import convert_llamagen

    _check_args(args)
    if not sys.stderr.isatty():  # a log file or pipe: transformers' T5 loading and writing bars would be noise there
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    print(f"converting {args.gpt} and {args.vq}{f' with {args.t5}' if args.t5 else ''}...", flush=True)
    try:
        out = convert_llamagen(args.gpt, args.vq, args.out, args.image_size, gpt_model=args.gpt_model,
                               dtype=args.dtype, overwrite=args.overwrite, n_head=args.n_head, t5=args.t5)
    except (ValueError, TypeError, OSError) as exc:
        if args.t5 is None and str(exc).startswith("t5: "):  # a t2i GPT, no --t5: the library's "got None" is
            raise UsageError(f"--t5: required for --gpt {args.gpt!r}, a text-to-image (t2i) GPT, which reads T5 "
                             f"captions: give --t5 DIR, the T5 model directory it was trained with "
                             f"(google/flan-t5-xl)") from None
        flags = {**FLAGS, **({"config": "--n-head"} if args.n_head is not None else {})}  # a head count that
        flagged = as_flag_error(exc, flags)  # does not divide the width is the config's error
        if flagged is None:
            raise
        raise UsageError(_flag_words(str(flagged))) from None
    _summary(out)
    return 0


def _check_args(args) -> None:
    """Everything the command line alone can judge, before a file is read: the two files exist, --t5 (when given)
    is a model directory, --out can be written and holds nothing (unless --overwrite), and replacing it would not
    delete the files read."""
    if args.gpt_model is not None and args.n_head is not None:
        raise UsageError("--n-head: give --gpt-model (a released size) or --n-head (a size of your own), not both")
    for flag, path in (("--gpt", args.gpt), ("--vq", args.vq)):
        if not os.path.isfile(path):
            raise UsageError(f"{flag}: no such file {path!r}" if not os.path.isdir(path) else
                             f"{flag}: {path!r} is a directory; give the .pt file")
    if args.t5 is not None and not os.path.isfile(os.path.join(args.t5, "config.json")):
        raise UsageError(f"--t5: {args.t5!r} " + ("holds no config.json" if os.path.isdir(args.t5) else
                                                  "is not a directory" if os.path.exists(args.t5) else
                                                  "does not exist") +
                         "; expected the T5 model directory (google/flan-t5-xl as downloaded: config.json, weights, "
                         "tokenizer)")
    out = check_out_dir("--out", args.out)
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            raise UsageError(f"--out: {args.out!r} exists and is not empty (--overwrite replaces it)")
        read = (("--gpt", args.gpt), ("--vq", args.vq)) + ((("--t5", args.t5),) if args.t5 is not None else ())
        for flag, path in read:
            if out.resolve() in (Path(path).resolve(), *Path(path).resolve().parents):
                raise UsageError(f"--out: {args.out!r} holds {flag} {path!r}, which --overwrite would delete; "
                                 f"write the model directory elsewhere")


def _flag_words(message: str) -> str:
    """The library's argument names inside a message ("pass n_head for a size of your own") -> the flags; quoted
    paths are left as written."""
    words = re.compile(r"\b(n_head|gpt_model|image_size)\b(?!=)")  # "n_head=5" is the config's value, kept
    parts = re.split(r"('(?:[^'\\]|\\.)*')", message)
    return "".join(part if i % 2 else words.sub(lambda m: FLAGS[m.group(1)], part) for i, part in enumerate(parts))


def _summary(out: Path) -> None:
    """What was written, read back from the directory, and the command that makes images with it."""
    from ..pipelines.llamagen import TEXT_ENCODER, read_config

    gpt, vq = read_config(out)
    size = next((name for name, shape in GPT_SIZES.items() if shape == (gpt.n_layer, gpt.n_head, gpt.dim)),
                "GPT of your own size")  # a released size's name says GPT itself (GPT-XL)
    side, text = gpt.grid_side, gpt.gpt_type == "t2i"
    condition = (f"text: captions of up to {gpt.cls_token_num} T5 ids ({gpt.cls_token_num} caption positions, "
                 f"T5 width {gpt.caption_dim})" if text else
                 f"{gpt.num_classes} classes (labels 0..{gpt.num_classes - 1})")
    print(f"wrote {out}: config.json, model.safetensors, vq_model.safetensors"
          + (f", {TEXT_ENCODER}/ (the T5 encoder and tokenizer)" if text else ""))
    print(f"  {size}: {gpt.n_layer} layers, width {gpt.dim}, {gpt.n_head} heads; {side * vq.pixels_per_code} px "
          f"images ({side} x {side} codes, {vq.pixels_per_code} px per code); {condition}; codebook of "
          f"{gpt.vocab_size} codes")
    print(f"next: hawk generate --model {out} --prompts FILE --out OUT   (FILE: "
          + ("the prompts: text, one per line)" if text else "one class label per line)"))
