"""Two analyses of the bundled model, as PNG plots (the paper's Figures 1 and 5):

1. attention_neighbours.png: mean attention weight from an image token to the tokens at each relative
   2-D offset (rows above / columns left-right), over layers, heads and real held-out digits. Offsets are
   relative to the query's INPUT token (r, c), whose hidden state predicts (r, c+1): the token directly
   above the predicted one sits at (dr = -1, dc = +1). Mass there is why vertical drafts help.
2. draft_kl.png: per image position, KL(target || horizontal draft), KL(target || vertical draft) and
   KL(horizontal || vertical): where the two draft sources disagree (complementary) and which is closer.

    python python/analysis_spatial.py --images 200 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import hawk_kernels as hk  # noqa: E402
from hawk_kernels.pipelines.demo.data import load_split  # noqa: E402
from hawk_kernels.pipelines.demo.training_data import demo_sequences  # noqa: E402


@torch.no_grad()
def attention_by_offset(model, seqs, body_start, grid, window=3):
    """-> [window + 1, 2 * window + 1] mean attention from image queries to relative (dr, dc) keys."""
    model.config._attn_implementation = "eager"  # attention weights need the eager path
    out = model(input_ids=seqs, output_attentions=True)
    att = torch.stack(out.attentions).mean((0, 2))  # [N, L, L] over layers and heads
    stride = grid.row_stride
    acc = torch.zeros(window + 1, 2 * window + 1)
    count = torch.zeros_like(acc)
    for r in range(grid.height):
        for c in range(grid.width):
            q = body_start + r * stride + c
            for dr in range(-window, 1):
                for dc in range(-window, window + 1):
                    rr, cc = r + dr, c + dc
                    if rr < 0 or not 0 <= cc < grid.width or (dr == 0 and dc >= 0):
                        continue
                    k = body_start + rr * stride + cc
                    acc[dr + window, dc + window] += att[:, q, k].mean()
                    count[dr + window, dc + window] += 1
    return acc / count.clamp(min=1)


@torch.no_grad()
def draft_kl_maps(model, heads, seqs, body_start, grid):
    """-> three [H, W] maps: KL(target||horiz), KL(target||vert), KL(horiz||vert) at each image position."""
    lo, hi = grid.image_token_range
    rows = model.get_output_embeddings().weight[lo:hi]
    pad = (seqs != 0).long().cumsum(-1) > 0
    hidden = model.get_decoder()(input_ids=seqs, attention_mask=pad.long(),
                                 position_ids=(pad.long().cumsum(-1) - 1).clamp(min=0)).last_hidden_state
    target = torch.log_softmax(hidden @ rows.T, -1)  # law of position i+1 from hidden i
    drafts = torch.log_softmax(heads(hidden, rows), -1)  # [N, L, heads, V]
    stride, maps = grid.row_stride, torch.zeros(3, grid.height, grid.width)

    def kl(a, b):
        return (a.exp() * (a - b)).sum(-1).mean()

    for r in range(1, grid.height):
        for c in range(grid.width):
            p = body_start + r * stride + c  # sequence index of the image token
            tgt = target[:, p - 1]
            horiz = drafts[:, p - 2, 0]  # horizontal head 1 at hidden p-2 predicts p
            vert = drafts[:, p - 1 - stride, heads.num_horizontal]  # vertical head d=1 at hidden p-1-S
            maps[:, r, c] = torch.stack([kl(tgt, horiz), kl(tgt, vert), kl(horiz, vert)])
    return maps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    pipe = hk.load_demo_pipeline(device="cpu")
    seqs, body_start = demo_sequences(pipe.vq, pipe.vocab, "heldout", phrasings=1)
    seqs = seqs[: args.images]
    os.makedirs(args.out, exist_ok=True)

    att = attention_by_offset(pipe.model, seqs, body_start, pipe.grid)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    im = ax.imshow(att, cmap="viridis")
    ax.set_xticks(range(att.shape[1]), [str(d) for d in range(-3, 4)])
    ax.set_yticks(range(att.shape[0]), [str(d) for d in range(-3, 1)])
    ax.set_xlabel("column offset dc")
    ax.set_ylabel("row offset dr")
    ax.set_title("mean attention from an image token to its spatial neighbours")
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "attention_neighbours.png"), dpi=120)

    maps = draft_kl_maps(pipe.model, pipe.heads, seqs, body_start, pipe.grid)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    titles = ("KL(target || horizontal h1)", "KL(target || vertical v1)", "KL(horizontal || vertical)")
    for ax, m, title in zip(axes, maps, titles):
        im = ax.imshow(m, cmap="magma")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "draft_kl.png"), dpi=120)
    print("attention by offset (rows dr=-3..0, cols dc=-3..3):\n", att.numpy().round(4))
    print("mean KL target||horizontal %.3f, target||vertical %.3f, horizontal||vertical %.3f"
          % tuple(maps[:, 1:].mean((1, 2)).tolist()))


if __name__ == "__main__":
    main()
