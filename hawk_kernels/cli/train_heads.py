"""`hawk train-heads`: horizontal + vertical draft heads on a frozen model (training/head_trainer.py).

Three data sources: a `hawk distill` directory (--data DIR: streamed, DDP under torchrun, checkpoints, --resume,
then the tree rates measured beside the heads); the MNIST digits for the bundled model (--demo without --data);
a torch file of sequences for any transformers causal LM (--model DIR --data FILE with the layout flags).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..heads import MAX_HEADS, MAX_LAYERS
from .common import SEED, UsageError, add_command, as_flag_error, check_out_dir, number, plural, rank_device
from .models import add_layout_arguments, add_model_arguments, check_head_counts, model_choice

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the installed hawk_kernels: never written into


def add_parser(subparsers) -> None:
    t = add_command(subparsers, "train-heads", run, "train horizontal + vertical heads on a frozen backbone")
    add_model_arguments(t, "a checkpoint directory: a Janus, Emu3, Lumina-mGPT or LlamaGen model "
                           "with --data DIR; any transformers causal LM with a --data file",
                        demo_help="the bundled model (without --data: its MNIST digits, needs hawk_kernels[train])")
    t.add_argument("--data", metavar="DIR|FILE",
                   help="a `hawk distill` directory (streamed; DDP under torchrun), or a torch file "
                        "{'sequences': LongTensor [N, L], 'body_start': int, 'pad_id': int|None}")
    add_layout_arguments(t)
    t.add_argument("--horizontal", type=number(int, 0, MAX_HEADS), default=4,
                   help="horizontal heads (at most the codes of an image row)")
    t.add_argument("--vertical", type=number(int, 0, MAX_HEADS), default=2,
                   help="vertical heads (at most the image rows below the first)")
    t.add_argument("--layers", type=number(int, 1, MAX_LAYERS), default=1, help="ResBlocks per head")
    t.add_argument("--epochs", type=number(int, 1), default=4, help="passes over the training sequences")
    t.add_argument("--lr", type=number(float, 0.0, low_open=True), default=3e-3, help="peak learning rate")
    t.add_argument("--batch-size", type=number(int, 1), default=32,
                   help="sequences per optimiser step, over all processes")
    t.add_argument("--seed", type=SEED, default=0, help="seed of the data order (and of the MNIST prompts)")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="directory for the trained heads (never the installed package)")
    t.add_argument("--overwrite", action="store_true", help="replace heads already in --out")
    t.add_argument("--accumulation", type=number(int, 1), default=1, help="micro-batches per optimiser step")
    t.add_argument("--checkpoint-every", type=number(int, 0), default=0, help="steps between checkpoints (0: none)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --out (refused when there is none)")
    t.add_argument("--calibrate-images", type=number(int, 0), default=40,
                   help="with --data DIR: images that measure the tree rates after training, on the data set's "
                        "prompts with other seeds (0: skip)")
    t.set_defaults(on_interrupt=_interrupted)


def _interrupted(args) -> str:
    from ..training.head_trainer import CHECKPOINTS, latest_checkpoint

    latest = latest_checkpoint(args.out)
    if latest is None:
        return "no checkpoint was written (--checkpoint-every N with --data DIR makes a run resumable)"
    return f"--resume continues from {latest.name} in {Path(args.out) / CHECKPOINTS}"


def run(args) -> int:
    from ..heads import heads_for
    from ..training import TrainConfig, train_heads

    if args.horizontal + args.vertical == 0:
        raise UsageError("--horizontal/--vertical: train at least one head")
    if args.horizontal + args.vertical > MAX_HEADS:
        raise UsageError(f"--horizontal/--vertical: at most {MAX_HEADS} heads in all, got {args.horizontal} + "
                         f"{args.vertical}")
    out_dir = check_heads_out(args.out, args.overwrite or args.resume)
    model = model_choice(args)
    device = rank_device(args.device)
    if args.data is not None and os.path.isdir(args.data):
        return _train_streaming(args, model, out_dir, device)
    if args.resume or args.accumulation != 1 or args.checkpoint_every:
        raise UsageError("--resume/--accumulation/--checkpoint-every: need --data DIR made by `hawk distill`")
    grid = model.known_layout() if args.data is None else None  # the demo's digits: its layout, before it loads
    if grid is not None:
        check_head_counts(args, grid.height, grid.width)
    data = model.training_set(args, device)  # a token file: its layout checked against the heads there
    heads = heads_for(data.backbone, args.horizontal, args.vertical, args.layers, family=data.family)
    print(f"training {heads.num_horizontal} horizontal + {heads.vertical_depth} vertical heads on "
          f"{plural(len(data.train), 'sequence')} ({device})", flush=True)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=min(args.batch_size, len(data.train)),
                         seed=args.seed)
    metrics = train_heads(data.backbone, heads, data.train, data.backbone.grid, config, held_out=data.held_out)
    print(metrics.table(heads.num_horizontal))
    _save(heads, out_dir)
    return 0


def _train_streaming(args, model, out_dir: Path, device) -> int:
    """train-heads on a `hawk distill` directory (demo or family model): streaming, DDP under torchrun,
    checkpoints, --resume, then the built-in calibration."""
    from ..training import ShardSequences, TrainConfig, train_heads
    from ..fingerprint import short
    from ..training.distillation import model_identity, same_identity
    from ..training.head_trainer import CHECKPOINTS, check_checkpoint, latest_checkpoint, remove_checkpoints, run_identity
    from ..training.sequences import split_indices
    from ..training.shards import read_prompts

    if args.resume and latest_checkpoint(out_dir) is None:
        raise UsageError(f"--resume: no checkpoint in {str(out_dir / CHECKPOINTS)!r} to continue from (a run with "
                         f"--checkpoint-every N writes them); run without --resume to start fresh")
    try:  # manifest and every shard checked before the model loads
        data = ShardSequences(args.data)
        prompts = read_prompts(args.data) if args.calibrate_images else None
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(f"--{exc}" if str(exc).startswith("data:") else f"--data: {exc}") from None
    made = data.manifest["grid"]
    check_head_counts(args, made["height"], made["width"])  # the data's layout, before the model loads
    world = int(os.environ.get("WORLD_SIZE", 1))
    batch_size = _fitted_batch(args, len(split_indices(len(data), TrainConfig.eval_fraction)[0]), world)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=batch_size, accumulation=args.accumulation,
                         checkpoint_every=args.checkpoint_every, seed=args.seed)
    rank = int(os.environ.get("RANK", 0))
    if args.resume:  # the checkpoint against these settings, heads and data: before the model loads
        try:
            latest = check_checkpoint(out_dir, run_identity(config, args.horizontal, args.vertical, args.layers, data))
        except ValueError as exc:
            raise as_flag_error(exc, RESUME_FLAGS) or UsageError(f"--resume: {exc}") from None
        if rank == 0:
            print(f"resuming from {latest}", flush=True)
    elif rank == 0 and latest_checkpoint(out_dir) is not None:  # another run's (--overwrite): never resumed later
        print(f"removed {plural(remove_checkpoints(out_dir), 'checkpoint')} of the run being replaced from "
              f"{out_dir / CHECKPOINTS}", flush=True)
    pipe = model.load(device, dtype=args.dtype)
    size = data.manifest["settings"]["size"]
    if not same_identity(data.manifest["model"], pipe):  # first: another model's layout may not exist here
        made, this = data.manifest["model"], model_identity(pipe)
        made = made if isinstance(made, dict) else {}
        raise UsageError(f"--data: made with another model ({made.get('family')}, {short(made.get('fingerprint'))}),"
                         f" not this one ({this['family']}, {short(this['fingerprint'])})")
    grid = pipe.layout(None if size is None else tuple(size))
    _check_data_layout(data.manifest, grid)
    torch.manual_seed(args.seed)
    heads = pipe.make_heads(args.horizontal, args.vertical, args.layers)
    if rank == 0:
        print(f"training {heads.num_horizontal} horizontal + {heads.vertical_depth} vertical heads on "
              f"{plural(len(data), 'sequence')} ({device}, {world} process(es), batch {batch_size})", flush=True)
    try:
        metrics = train_heads(pipe.backbone(grid), heads, data, grid, config, checkpoint_dir=out_dir,
                              resume=args.resume)
    except ValueError as exc:  # the trainer's batch rules, said with the flags
        raise as_flag_error(exc, RESUME_FLAGS) or exc from None
    if rank == 0:
        print(metrics.table(heads.num_horizontal))
        _save(heads, out_dir)
        if args.calibrate_images:
            _calibrate(args, model, out_dir, device, prompts, size)
    return 0


RESUME_FLAGS = {"batch_size": "--batch-size", "epochs": "--epochs", "lr": "--lr", "accumulation": "--accumulation",
                "seed": "--seed", "num_horizontal": "--horizontal", "vertical_depth": "--vertical",
                "num_layers": "--layers", "heads": "--horizontal/--vertical/--layers", "data": "--data",
                "resume": "--resume"}  # the trainer's argument names -> flags


def _fitted_batch(args, train_sequences: int, world: int) -> int:
    """--batch-size, cut to the training sequences where they are fewer (a small data set then trains on all of
    them each step, as the token-file path does), kept a multiple of --accumulation x the processes."""
    if args.batch_size <= train_sequences:
        return args.batch_size  # the trainer checks that it splits
    unit = args.accumulation * world
    if train_sequences < unit:
        raise UsageError(f"--batch-size: {plural(train_sequences, 'training sequence')} cannot fill one step of "
                         f"--accumulation {args.accumulation} x {world} process(es); distill more images")
    return train_sequences // unit * unit


def _calibrate(args, model, out_dir: Path, device, prompts: list, size) -> None:
    """Measure the tree rates of every mode that drafts with heads, on the data set's prompts with seeds away
    from its own (10,000+), on the training device, and save them beside the heads (tree_calibration.py)."""
    from ..drafts import MODES, needs_heads
    from ..heads import TREE_RATES_FILE
    from ..training.tree_calibration import calibrate

    modes = [mode for mode in MODES if needs_heads(mode)]
    print(f"calibrating the trees of {', '.join(modes)} on {plural(args.calibrate_images, 'image')}...", flush=True)
    pipe = model.load(device, heads=out_dir, dtype=args.dtype)
    report = calibrate(pipe, modes, args.calibrate_images, prompts=prompts, size=None if size is None else tuple(size),
                       command="hawk train-heads (built-in calibration)", progress=False)
    (out_dir / TREE_RATES_FILE).write_text(json.dumps(report, indent=1))
    print(f"saved tree rates to {out_dir / TREE_RATES_FILE}")


def check_heads_out(path: str, overwrite: bool) -> Path:
    """--out: a directory of our own (never inside the installed package), empty unless --overwrite."""
    out = Path(path).resolve()
    if out == PACKAGE_DIR or PACKAGE_DIR in out.parents:
        raise UsageError(f"--out: {path!r} lies inside the installed package; choose a directory of your own")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        from ..training.head_trainer import latest_checkpoint

        if latest_checkpoint(out) is not None:
            raise UsageError(f"--out: {path!r} holds checkpoints of an earlier run: --resume continues it, "
                             f"--overwrite starts afresh (removing them)")
        raise UsageError(f"--out: {path!r} exists and is not empty; pass --overwrite to replace its heads")
    return check_out_dir("--out", out)  # writable, before the model loads


def _check_data_layout(manifest: dict, grid) -> None:
    made = manifest["grid"]
    if (made["height"], made["width"]) != (grid.height, grid.width) or tuple(made["image_token_range"]) != \
            grid.image_token_range or made["row_end_token"] != grid.row_end_token:
        raise UsageError(f"--data: layout {made['height']}x{made['width']} (codes {made['image_token_range']}) does "
                         f"not match the model's {grid.height}x{grid.width} (codes {list(grid.image_token_range)})")


def _save(heads, out_dir: Path) -> None:
    from ..training.head_trainer import save_heads

    stale = save_heads(heads, out_dir)
    if stale is not None:
        print(f"removed {stale} (measured with the replaced heads; re-run python/calibrate_tree.py)")
    print(f"saved heads to {out_dir}")
