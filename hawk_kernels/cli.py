"""Command line: `hawk demo` (also `python -m hawk_kernels`), `hawk generate` (real model families),
`hawk distill` and `hawk train-heads`.

Every input the command line alone can judge is checked before any model loads; an error is one line on
stderr and exit code 2. Nothing is written into the installed package, and an existing output is replaced only
with --overwrite.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from . import __version__
from .checks import as_device
from .fingerprint import model_fingerprint
from .heads import TREE_RATES_FILE, DraftHeads
from .drafts import MODES, needs_heads
from .pipelines.cli import add_generate_parser, generate_command, pixel_size


class UsageError(Exception):
    """A bad command-line input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we print one line
        raise UsageError(message)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class _DefaultsNoneFormatter(_Formatter):
    """Shows a default only where there is one (a None default means "the family's", which the help says)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _number(kind, low=None, high=None, low_open=False, name="value"):
    """An argparse type: `kind` (int/float) within bounds, with a message naming the bounds."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected {bound}" + (f" and <= {high}" if high is not None else "")
                                             + f", got {text}")
        return value
    parse.__name__ = name
    return parse


def _check_image_out(path: str) -> None:
    """--out must be writable now, with an image extension Pillow can save, so no result is lost later."""
    from PIL import Image

    target = Path(path)
    Image.init()
    if target.suffix.lower() not in Image.registered_extensions():
        raise UsageError(f"--out: unknown image extension {target.suffix or '(none)'!r} in {path!r}; use .png")
    if not target.parent.is_dir():
        raise UsageError(f"--out: directory {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise UsageError(f"--out: {path!r} is a directory; give an image file name such as hawk_demo.png")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- hawk demo -------------------------------------------------------------------------------------------
def demo(args) -> int:
    from .pipelines.demo.model import load_demo_tokenizer
    from .pipelines.demo.pipeline import DEFAULT_PROMPTS, load_demo_pipeline

    device = as_device("--device", args.device) if args.device else None
    _check_image_out(args.out)
    prompts = args.prompts or list(DEFAULT_PROMPTS)
    vocab = load_demo_tokenizer()[1]
    for prompt in prompts:  # unknown words fail here, before the model loads
        if not prompt.strip():
            raise UsageError("--prompts: an empty prompt would give an unconditional image")
        vocab.encode_prompt(prompt)
    torch.set_num_threads(args.threads)  # tiny model: more threads only add contention on small CPUs
    pipe = load_demo_pipeline(device=device)
    if pipe.heads is None and any(needs_heads(mode) for mode in args.modes):
        raise UsageError("--modes: no trained heads are bundled, so only modes without heads can run "
                         f"({', '.join(m for m in MODES if not needs_heads(m))})")
    print(f"device {pipe.device}; {_plural(len(prompts), 'prompt')}; cfg {args.cfg}, temperature "
          f"{args.temperature}, tree of {args.nodes} nodes")
    rows, results = {}, {}
    pipe.generate(prompts[:1], mode="ar", seed=args.seed, cfg_scale=args.cfg)  # warm-up (first-call overheads)
    for mode in args.modes:
        out = pipe.generate(prompts, mode=mode, seed=args.seed, cfg_scale=args.cfg, temperature=args.temperature,
                            top_k=args.top_k, num_nodes=args.nodes, progress=True)
        rows[mode], results[mode] = out.images, out
    _print_table(results, len(prompts))
    _grid_png(rows, prompts, args.out)
    print(f"\nimages: {args.out} (rows: {', '.join(rows)}; columns: {' | '.join(prompts)})")
    return 0


def _print_table(results: dict, num_prompts: int) -> None:
    base = results.get("ar")
    print(f"\n{'mode':<13}{'passes/img':>11}{'tokens/pass':>13}{'wall s':>9}{'step ratio':>12}{'speedup':>9}  steps")
    for mode, out in results.items():
        passes = sum(out.num_forward_passes) / num_prompts
        ratio = f"{sum(base.num_forward_passes) / sum(out.num_forward_passes):>11.2f}x" if base else f"{'-':>12}"
        speed = f"{base.seconds / out.seconds:>8.2f}x" if base else f"{'-':>9}"
        print(f"{mode:<13}{passes:>11.1f}{out.output.mean_accepted_length:>13.2f}{out.seconds:>9.2f}{ratio}{speed}"
              f"  {out.output.step_engine}")
    if base is None:
        print("(step ratio and speedup are relative to AR: add 'ar' to --modes to see them)")


def _grid_png(rows: dict, prompts, path: str, scale: int = 3) -> None:
    from PIL import Image, ImageDraw

    cell, label = 28 * scale, 90
    sheet = Image.new("L", (label + cell * len(prompts), cell * len(rows)), 255)
    draw = ImageDraw.Draw(sheet)
    for r, (mode, images) in enumerate(rows.items()):
        draw.text((4, r * cell + cell // 2 - 6), mode, fill=0)
        for c, img in enumerate(images):
            sheet.paste(img.resize((cell, cell), Image.NEAREST), (label + c * cell, r * cell))
    partial = Path(path).with_name(Path(path).name + ".partial")
    sheet.save(partial, format=Image.registered_extensions()[Path(path).suffix.lower()])
    os.replace(partial, path)  # never a half-written image under the real name


# --- hawk distill ---------------------------------------------------------------------------------------
def _read_prompts(path: str) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped."""
    if not os.path.isfile(path):
        raise UsageError(f"--prompts: no such file {path!r}")
    prompts = [line.strip() for line in Path(path).read_text().splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise UsageError(f"--prompts: {path!r} holds no prompt (one per line)")
    return prompts


def _read_input_ids(path: str) -> list[list[int]]:
    """A JSON file holding a list of token-id lists, one per prompt."""
    import json

    if not os.path.isfile(path):
        raise UsageError(f"--input-ids: no such file {path!r}")
    try:
        rows = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input-ids: {path!r} is not JSON ({exc})") from None
    if not isinstance(rows, list) or not rows or not all(
            isinstance(row, list) and row and all(isinstance(t, int) and t >= 0 for t in row) for row in rows):
        raise UsageError(f"--input-ids: {path!r} must hold a non-empty JSON list of non-empty lists of token ids")
    return rows


def distill_cmd(args) -> int:
    from .distill import distill, distill_images, image_files

    _one_model(args)
    if (args.prompts is None) + (args.images is None) + (args.input_ids is None) != 2:
        raise UsageError("distill: give --prompts FILE or --input-ids FILE (self-distillation), or --images DIR "
                         "(your own images): one of them")
    if args.demo and args.input_ids is not None:
        raise UsageError("--input-ids: the demo model takes text prompts (--prompts)")
    if args.images is not None and args.images_per_prompt != 1:
        raise UsageError("--images-per-prompt: 1 with --images (each image is one sequence)")
    if args.demo and args.size is not None:
        raise UsageError("--size: the demo model has one layout (28x28 px)")
    if args.images is not None:
        prompts = image_files(args.images)[1]
    else:
        prompts = _read_prompts(args.prompts) if args.prompts is not None else _read_input_ids(args.input_ids)
    if args.demo:
        _check_demo_words(prompts)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"--out: parent directory {str(out.parent)!r} does not exist")
    torch.set_num_threads(args.threads)
    pipe = _load_pipe(args, _rank_device(args.device))
    common = dict(batch_size=args.batch_size, size=args.size, overwrite=args.overwrite)
    if args.images is not None:
        manifest = distill_images(pipe, args.images, out, **common)
    else:
        manifest = distill(pipe, prompts, out, args.images_per_prompt, seed=args.seed, cfg_scale=args.cfg,
                           temperature=args.temperature, top_k=args.top_k, **common)
    settings = manifest["settings"]
    print(f"{settings['num_prompts'] * settings['images_per_prompt']} sequences in "
          f"{_plural(manifest['num_shards'], 'shard')} under {out}")
    return 0


def _one_model(args) -> None:
    if args.demo == (args.model is not None):
        raise UsageError(f"{args.command}: give --demo (the bundled model) or --model DIR, one of them")
    if args.model is not None and not os.path.isfile(os.path.join(args.model, "config.json")):
        raise UsageError(f"--model: {args.model!r} is not a model directory (no config.json); models load from "
                         f"local directories only")


def _check_demo_words(prompts: list[str]) -> None:
    from .pipelines.demo.model import load_demo_tokenizer

    vocab = load_demo_tokenizer()[1]
    for prompt in prompts:  # unknown words fail here, before the model loads
        vocab.encode_prompt(prompt)


def _rank_device(device: str | None) -> torch.device:
    """--device, or CUDA when available; under torchrun each rank takes the GPU LOCAL_RANK."""
    device = as_device("--device", device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _load_pipe(args, device, heads=None):
    """The bundled demo pipeline or the family pipeline of --model, on `device`."""
    if args.demo:
        from .pipelines.demo.pipeline import load_demo_pipeline

        return load_demo_pipeline(device=device, heads=heads)
    from .pipelines import load_pipeline

    print(f"loading {args.model}...", flush=True)
    return load_pipeline(args.model, heads=heads, device=device, dtype=getattr(args, "dtype", None))


# --- hawk train-heads ------------------------------------------------------------------------------------
def _check_heads_out(path: str, overwrite: bool) -> Path:
    from .pipelines.demo.model import ASSET_DIR

    out = Path(path).resolve()
    package = Path(__file__).resolve().parent
    if out == package or package in out.parents or out == ASSET_DIR or ASSET_DIR in out.parents:
        raise UsageError(f"--out: {path!r} lies inside the installed package; choose a directory of your own")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {path!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"--out: {path!r} exists and is not empty; pass --overwrite to replace its heads")
    if not out.parent.is_dir():
        raise UsageError(f"--out: parent directory {str(out.parent)!r} does not exist")
    return out


def _load_training_data(path: str):
    if not os.path.isfile(path):
        raise UsageError(f"--data: no such file {path!r}")
    data = torch.load(path, weights_only=True)
    if not isinstance(data, dict):
        raise UsageError(f"--data: expected a dict {{'sequences': LongTensor [N, L], 'body_start': int, "
                         f"'pad_id': int or None}}, got {type(data).__name__}")
    for key in ("sequences", "body_start"):
        if key not in data:
            raise UsageError(f"--data: missing key {key!r} (has {sorted(data)})")
    sequences = data["sequences"]
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2 or sequences.dtype.is_floating_point:
        raise UsageError(f"--data: 'sequences' must be an integer tensor [N, L], got "
                         f"{getattr(sequences, 'dtype', type(sequences).__name__)} {tuple(getattr(sequences, 'shape', ()))}")
    if sequences.shape[0] < 2:
        raise UsageError(f"--data: need at least 2 sequences (one is held out), got {sequences.shape[0]}")
    return sequences.long(), int(data["body_start"]), data.get("pad_id")


def train_heads_cmd(args) -> int:
    from .trainer import TrainConfig, train_heads

    out_dir = _check_heads_out(args.out, args.overwrite or args.resume)
    _one_model(args)
    device = _rank_device(args.device)
    if args.data is not None and os.path.isdir(args.data):
        return _train_streaming(args, out_dir, device)
    if args.resume or args.accumulation != 1 or args.checkpoint_every:
        raise UsageError("--resume/--accumulation/--checkpoint-every: need --data DIR made by `hawk distill`")
    if args.demo:
        model, grid, train, held = _demo_training_set(args.seed)
    else:
        model, grid, train, held = _user_training_set(args)
    config = model.config.get_text_config()
    heads = DraftHeads(config.hidden_size, config.vocab_size, args.horizontal, args.vertical, num_layers=args.layers,
                       model_fingerprint=model_fingerprint(model))
    model.to(device)
    print(f"training {heads.num_horizontal} horizontal + {heads.vertical_depth} vertical heads on "
          f"{_plural(len(train), 'sequence')} ({device})", flush=True)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=min(args.batch_size, len(train)), seed=args.seed)
    metrics = train_heads(model, heads, train, grid, config, held_out=held)
    print(metrics.table(heads.num_horizontal))
    _save_heads(heads, out_dir)
    return 0


def _train_streaming(args, out_dir: Path, device) -> int:
    """train-heads on a `hawk distill` directory (demo or family model): streaming, DDP under torchrun,
    checkpoints, --resume, then the built-in calibration."""
    from .distill import model_identity, read_prompts
    from .trainer import ShardSequences, TrainConfig, train_heads

    data = ShardSequences(args.data)  # manifest and every shard checked before the model loads
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, accumulation=args.accumulation,
                         checkpoint_every=args.checkpoint_every, seed=args.seed)
    pipe = _load_pipe(args, device)
    size = data.manifest["settings"]["size"]
    if data.manifest["model"] != model_identity(pipe):  # first: another model's layout may not exist here
        raise UsageError(f"--data: made with another model ({data.manifest['model']}), not this one "
                         f"({model_identity(pipe)})")
    grid = pipe.layout(None if size is None else tuple(size))
    _check_data_layout(data.manifest, grid)
    torch.manual_seed(args.seed)
    if args.demo:
        model, text = pipe.model, pipe.model.config.get_text_config()
        heads = DraftHeads(text.hidden_size, text.vocab_size, args.horizontal, args.vertical, num_layers=args.layers)
    else:
        model, heads = pipe.backbone(grid), pipe.make_heads(args.horizontal, args.vertical, args.layers)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        print(f"training {heads.num_horizontal} horizontal + {heads.vertical_depth} vertical heads on "
              f"{_plural(len(data), 'sequence')} ({device}, {os.environ.get('WORLD_SIZE', 1)} process(es))", flush=True)
    metrics = train_heads(model, heads, data, grid, config, checkpoint_dir=out_dir, resume=args.resume)
    if rank == 0:
        print(metrics.table(heads.num_horizontal))
        _save_heads(heads, out_dir)
        if args.calibrate_images:
            _calibrate_heads(args, out_dir, device, read_prompts(args.data), size)
    return 0


def _calibrate_heads(args, out_dir: Path, device, prompts: list[str], size) -> None:
    """Measure the tree rates of every mode that drafts with heads, on the data set's prompts with seeds away
    from its own (10,000+), on the training device, and save them beside the heads (calibration.py)."""
    import json

    from .calibration import calibrate

    modes = [mode for mode in MODES if needs_heads(mode)]
    print(f"calibrating the trees of {', '.join(modes)} on {_plural(args.calibrate_images, 'image')}...", flush=True)
    pipe = _load_pipe(args, device, heads=out_dir)
    report = calibrate(pipe, modes, args.calibrate_images, prompts=prompts,
                       size=None if size is None else tuple(size),
                       command="hawk train-heads (built-in calibration)", progress=False)
    (out_dir / TREE_RATES_FILE).write_text(json.dumps(report, indent=1))
    print(f"saved tree rates to {out_dir / TREE_RATES_FILE}")


def _check_data_layout(manifest: dict, grid) -> None:
    made = manifest["grid"]
    if (made["height"], made["width"]) != (grid.height, grid.width) or tuple(made["image_token_range"]) != \
            grid.image_token_range or made["row_end_token"] != grid.row_end_token:
        raise UsageError(f"--data: layout {made['height']}x{made['width']} (codes {made['image_token_range']}) does "
                         f"not match the model's {grid.height}x{grid.width} (codes {list(grid.image_token_range)})")


def _save_heads(heads, out_dir: Path) -> None:
    stale_rates = out_dir / TREE_RATES_FILE
    if stale_rates.exists():  # measured with the old heads: it would mis-shape every tree
        stale_rates.unlink()
        print(f"removed {stale_rates} (measured with the replaced heads; re-run python/calibrate_tree.py)")
    heads.cpu().save_pretrained(str(out_dir))
    print(f"saved heads to {out_dir}")


def _demo_training_set(seed: int):
    from .pipelines.demo.model import demo_image_grid, load_demo_backbone, load_demo_tokenizer
    from .pipelines.demo.training_data import demo_sequences
    from .trainer import TensorSequences

    print("loading the bundled model and the MNIST digits...", flush=True)
    model = load_demo_backbone()
    vq, vocab = load_demo_tokenizer()
    print("encoding the digits into VQ codes (train and held-out splits)...", flush=True)
    train, body_start = demo_sequences(vq, vocab, "train", seed=seed)
    held, _ = demo_sequences(vq, vocab, "heldout", seed=seed)
    return (model, demo_image_grid(vocab), TensorSequences(train, body_start, vocab.pad_id),
            TensorSequences(held, body_start, vocab.pad_id))


def _user_training_set(args):
    from .grid import ImageGrid
    from .trainer import TensorSequences

    missing = [flag for flag, value in (("--data", args.data), ("--height", args.height), ("--width", args.width),
                                        ("--image-range", args.image_range)) if value is None]
    if missing:
        raise UsageError(f"train-heads: with --model, give {', '.join(missing)} (or --data DIR made by hawk distill)")
    sequences, body_start, pad_id = _load_training_data(args.data)
    try:
        grid = ImageGrid(height=args.height, width=args.width, row_end_token=args.row_end,
                         image_token_range=tuple(args.image_range))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"grid: {exc}") from None
    if sequences.shape[1] < body_start + grid.num_body_tokens:
        raise UsageError(f"--data: sequences of length {sequences.shape[1]} cannot hold body_start {body_start} "
                         f"+ {grid.num_body_tokens} image tokens ({args.height} x {grid.row_stride})")
    from transformers import AutoModelForCausalLM

    print(f"loading {args.model}...", flush=True)
    model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True).eval()
    split = max(1, sequences.shape[0] // 10)
    return (model, grid, TensorSequences(sequences[split:], body_start, pad_id),
            TensorSequences(sequences[:split], body_start, pad_id))


# --- parser ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hawk", description="Hawk: exact speculative decoding for autoregressive image models",
                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"hawk_kernels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser("demo", formatter_class=_Formatter,
                       help="generate digits with the bundled model in several modes and compare them")
    d.add_argument("--prompts", nargs="+", default=None, metavar="TEXT",
                   help="prompts such as 'a handwritten digit seven' (default: six built-in prompts)")
    d.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="decoding modes to run")
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    d.add_argument("--seed", type=_number(int, 0, 2**64 - 1), default=0, help="random seed")
    d.add_argument("--cfg", type=_number(float, 0.0), default=3.0, help="classifier-free guidance scale")
    d.add_argument("--temperature", type=_number(float, 0.0), default=1.0, help="0 decodes greedily")
    d.add_argument("--top-k", type=_number(int, 1), default=None, help="keep the k most likely codes")
    d.add_argument("--nodes", type=_number(int, 2), default=16, help="tree nodes per step (16 suits a CPU)")
    d.add_argument("--out", default="hawk_demo.png", help="image sheet to write (one row per mode)")
    d.add_argument("--threads", type=_number(int, 1), default=1, help="CPU threads for torch")
    s = sub.add_parser("distill", formatter_class=_DefaultsNoneFormatter,
                       help="training sequences for draft heads: sampled from the model itself (AR mode), or "
                            "your own images through the family's VQ encoder; resumable shards")
    s.add_argument("--demo", action="store_true", help="the bundled model")
    s.add_argument("--model", help="a Janus, Emu3 or Lumina-mGPT checkpoint directory (loaded offline)")
    s.add_argument("--prompts", help="text file, one prompt per line (self-distillation)")
    s.add_argument("--input-ids", help="JSON file: a list of token-id lists, one per prompt (a model saved "
                                       "without its tokenizer; each row as the pipeline's input_ids takes it)")
    s.add_argument("--images", help="directory of images, each with a same-stem .txt caption (cat.png + cat.txt)")
    s.add_argument("--images-per-prompt", type=_number(int, 1), default=1)
    s.add_argument("--out", required=True, help="data directory (a rerun with the same settings resumes it)")
    s.add_argument("--batch-size", type=_number(int, 1), default=16, help="images per decoder batch and per shard")
    s.add_argument("--seed", type=_number(int, 0, 2**63), default=0, help="shard b is sampled with seed + b")
    s.add_argument("--cfg", type=_number(float, 0.0), default=None, help="CFG scale (default: the family's; demo 3)")
    s.add_argument("--temperature", type=_number(float, 0.0), default=None, help="(default: the family's, 1)")
    s.add_argument("--top-k", type=_number(int, 1), default=None, help="(default: the family's)")
    s.add_argument("--size", type=pixel_size, default=None, help="pixels, N or HxW (default: the family's)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu; under "
                                                  "torchrun each rank takes GPU LOCAL_RANK)")
    s.add_argument("--dtype", default=None, help="float32, bfloat16, ... (default: the checkpoint's)")
    s.add_argument("--threads", type=_number(int, 1), default=1, help="CPU threads for torch")
    s.add_argument("--overwrite", action="store_true", help="discard shards made with other settings")
    t = sub.add_parser("train-heads", formatter_class=_Formatter,
                       help="train horizontal + vertical heads on a frozen backbone")
    t.add_argument("--demo", action="store_true", help="the bundled model and its MNIST data (needs hawk_kernels[train])")
    t.add_argument("--model", help="a checkpoint directory (loaded offline): a Janus, Emu3 or Lumina-mGPT model "
                                   "with --data DIR; any transformers causal LM with a --data file")
    t.add_argument("--data", help="a `hawk distill` directory (streamed; DDP under torchrun), or a torch file "
                                  "{'sequences': LongTensor [N, L], 'body_start': int, 'pad_id': int|None}")
    t.add_argument("--dtype", default=None, help="with --model: float32, bfloat16, ... (default: the checkpoint's)")
    t.add_argument("--height", type=_number(int, 1), help="image rows (tokens)")
    t.add_argument("--width", type=_number(int, 1), help="image codes per row")
    t.add_argument("--row-end", type=_number(int, 0), default=None, help="row-end token id, if the layout has one")
    t.add_argument("--image-range", type=_number(int, 0), nargs=2, metavar=("LO", "HI"),
                   help="image code ids [LO, HI)")
    t.add_argument("--horizontal", type=_number(int, 0), default=4, help="horizontal heads")
    t.add_argument("--vertical", type=_number(int, 0), default=2, help="vertical heads")
    t.add_argument("--layers", type=_number(int, 1), default=1, help="ResBlocks per head")
    t.add_argument("--epochs", type=_number(int, 1), default=4)
    t.add_argument("--lr", type=_number(float, 0.0, low_open=True), default=3e-3, help="peak learning rate")
    t.add_argument("--batch-size", type=_number(int, 1), default=32)
    t.add_argument("--seed", type=_number(int, 0, 2**64 - 1), default=0)
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    t.add_argument("--out", required=True, help="directory for the trained heads (never the installed package)")
    t.add_argument("--overwrite", action="store_true", help="replace heads already in --out")
    t.add_argument("--accumulation", type=_number(int, 1), default=1, help="micro-batches per optimiser step")
    t.add_argument("--checkpoint-every", type=_number(int, 0), default=0, help="steps between checkpoints (0: none)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    t.add_argument("--calibrate-images", type=_number(int, 0), default=40,
                   help="with --data DIR: images that measure the tree rates after training, on the data set's "
                        "prompts with other seeds (0: skip)")
    add_generate_parser(sub)
    return parser


COMMANDS = {"demo": demo, "distill": distill_cmd, "train-heads": train_heads_cmd, "generate": generate_command}


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "horizontal", 1) + getattr(args, "vertical", 1) == 0:
            raise UsageError("--horizontal/--vertical: train at least one head")
        return COMMANDS[args.command](args)
    except UsageError as exc:
        command = f"hawk {args.command}" if "args" in locals() else "hawk"
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, ImportError, FloatingPointError) as exc:
        if "args" not in locals() or os.environ.get("HAWK_TRACEBACK"):
            raise
        print(f"hawk {args.command}: error: {exc} (HAWK_TRACEBACK=1 shows where)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
