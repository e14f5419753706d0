"""Command line: `hawk demo` (also `python -m hawk_kernels`) and `hawk train-heads`."""
from __future__ import annotations

import argparse
import sys

import torch

from .drafts import MODES


def _grid_png(rows: dict, prompts, path: str, scale: int = 3) -> None:
    from PIL import Image, ImageDraw

    cell, label = 28 * scale, 70
    sheet = Image.new("L", (label + cell * len(prompts), cell * len(rows)), 255)
    draw = ImageDraw.Draw(sheet)
    for r, (mode, images) in enumerate(rows.items()):
        draw.text((4, r * cell + cell // 2 - 6), mode, fill=0)
        for c, img in enumerate(images):
            sheet.paste(img.resize((cell, cell), Image.NEAREST), (label + c * cell, r * cell))
    sheet.save(path)


def demo(args) -> int:
    from .pipelines.demo.pipeline import DEFAULT_PROMPTS, load_demo_pipeline

    torch.set_num_threads(args.threads)  # tiny model: more threads only add contention on small CPUs
    pipe = load_demo_pipeline(device=args.device)
    if pipe.heads is None:
        print("no trained heads bundled: only --modes ar can run", file=sys.stderr)
        return 2
    prompts = args.prompts or list(DEFAULT_PROMPTS)
    print(f"device {pipe.device}; {len(prompts)} prompts; cfg {args.cfg}, temperature {args.temperature}, "
          f"tree of {args.nodes} nodes")
    rows, results = {}, {}
    pipe.generate(prompts[:1], mode="ar", seed=args.seed, cfg_scale=args.cfg)  # warm-up (first-call overheads)
    for mode in args.modes:
        out = pipe.generate(prompts, mode=mode, seed=args.seed, cfg_scale=args.cfg, temperature=args.temperature,
                            top_k=args.top_k, num_nodes=args.nodes, progress=True)
        rows[mode], results[mode] = out.images, out
    base = results.get("ar")
    print(f"\n{'mode':<10}{'passes/img':>11}{'tokens/pass':>13}{'wall s':>9}{'step ratio':>12}{'speedup':>9}")
    for mode, out in results.items():
        passes = sum(out.num_forward_passes) / len(prompts)
        per_pass = out.output.mean_accepted_length
        step = (sum(base.num_forward_passes) / sum(out.num_forward_passes)) if base else float("nan")
        speed = (base.seconds / out.seconds) if base else float("nan")
        print(f"{mode:<10}{passes:>11.1f}{per_pass:>13.2f}{out.seconds:>9.2f}{step:>11.2f}x{speed:>8.2f}x")
    _grid_png(rows, prompts, args.out)
    print(f"\nimages: {args.out} (rows: {', '.join(rows)}; columns: {' | '.join(prompts)})")
    return 0


def train_heads_cmd(args) -> int:
    from .heads import DraftHeads
    from .training import train_heads

    if args.demo:
        from .pipelines.demo.pipeline import HEADS_DIR
        from .pipelines.demo.model import demo_image_grid, load_demo_backbone, load_demo_tokenizer
        from .pipelines.demo.training_data import demo_sequences

        model = load_demo_backbone()
        vq, vocab = load_demo_tokenizer()
        grid = demo_image_grid(vocab)
        train, body_start = demo_sequences(vq, vocab, "train", seed=args.seed)
        held, _ = demo_sequences(vq, vocab, "heldout", seed=args.seed)
        out_dir, pad_id = args.out or str(HEADS_DIR), vocab.pad_id
    else:
        if not (args.model and args.data and args.image_range and args.height and args.width):
            print("train-heads: give --demo, or --model, --data, --height, --width and --image-range", file=sys.stderr)
            return 2
        from transformers import AutoModelForCausalLM

        from .grid import ImageGrid

        model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True).eval()
        data = torch.load(args.data)
        train, body_start = data["sequences"].long(), int(data["body_start"])
        split = max(1, train.shape[0] // 10)
        train, held = train[split:], train[:split]
        grid = ImageGrid(height=args.height, width=args.width, row_end_token=args.row_end,
                         image_token_range=tuple(args.image_range))
        out_dir, pad_id = args.out or "draft_heads", data.get("pad_id")
    config = model.config.get_text_config()
    heads = DraftHeads(config.hidden_size, config.vocab_size, args.horizontal, args.vertical, num_layers=args.layers)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    metrics = train_heads(model, heads, train, body_start, grid, epochs=args.epochs, lr=args.lr,
                          batch_size=args.batch_size, eval_sequences=held, device=device, seed=args.seed,
                          pad_id=pad_id)
    print(metrics.table(heads.num_horizontal))
    heads.cpu().save_pretrained(out_dir)
    print(f"saved heads to {out_dir}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hawk", description="Hawk speculative decoding for AR image models")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="generate digits with AR, Medusa, vertical-only and Hawk; compare")
    d.add_argument("--prompts", nargs="*", default=None)
    d.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    d.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--cfg", type=float, default=3.0)
    d.add_argument("--temperature", type=float, default=1.0)
    d.add_argument("--top-k", type=int, default=None)
    d.add_argument("--nodes", type=int, default=16, help="tree nodes per step (16 suits a CPU)")
    d.add_argument("--out", default="hawk_demo.png")
    d.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    t = sub.add_parser("train-heads", help="train horizontal + vertical heads on a frozen backbone")
    t.add_argument("--demo", action="store_true", help="the bundled model and its MNIST data")
    t.add_argument("--model", help="a transformers causal-LM directory (loaded offline)")
    t.add_argument("--data", help="torch file {'sequences': LongTensor [N, L], 'body_start': int, 'pad_id': int|None}")
    t.add_argument("--height", type=int)
    t.add_argument("--width", type=int)
    t.add_argument("--row-end", type=int, default=None)
    t.add_argument("--image-range", type=int, nargs=2, metavar=("LO", "HI"))
    t.add_argument("--horizontal", type=int, default=4)
    t.add_argument("--vertical", type=int, default=2)
    t.add_argument("--layers", type=int, default=1)
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None)
    t.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    return demo(args) if args.command == "demo" else train_heads_cmd(args)


if __name__ == "__main__":
    sys.exit(main())
