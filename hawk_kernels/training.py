"""Training draft heads on a frozen backbone (teacher forcing on image-token sequences).

Head k with offset o (heads.offsets(S): 1..n horizontal, S*d vertical) is fed the hidden state at sequence
position i and learns the token at i + 1 + o, only where that token is an image code of the same image.
The backbone never receives gradients; its hidden states are computed once and kept in fp16.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .grid import ImageGrid
from .heads import DraftHeads


@dataclass
class HeadMetrics:
    offsets: list[int]
    loss: list[float] = field(default_factory=list)  # per head, on the evaluation sequences
    top1: list[float] = field(default_factory=list)

    def table(self, num_horizontal: int) -> str:
        lines = ["head        distance  loss    top-1"]
        for k, (off, loss, acc) in enumerate(zip(self.offsets, self.loss, self.top1)):
            kind = f"horizontal{k + 1}" if k < num_horizontal else f"vertical{k - num_horizontal + 1}"
            lines.append(f"{kind:<12}{off:>8}  {loss:6.3f}  {acc:6.3f}")
        return "\n".join(lines)


@torch.no_grad()
def backbone_hidden(model, sequences: torch.Tensor, batch_size: int = 64, device="cpu",
                    pad_id: int | None = None, progress: bool = False, body_start: int | None = None) -> torch.Tensor:
    """[N, L] token ids -> [N, L, d] fp16 last hidden states of the frozen backbone. With pad_id, leading
    pads are masked and positions start at the first real token, exactly as the decoder's prefill does.
    `model` may be a backbone adapter (backbones/): the image body sequences[:, body_start:] then enters
    through the adapter's image path (`embed_image_tokens`), as it does while decoding (Janus: the generation
    embedding; its codes are not text ids)."""
    from tqdm.auto import tqdm

    adapter = _is_adapter(model)
    language_model = model.language_model if adapter else model.get_decoder()  # the stack under the LM head
    out = []
    starts = range(0, sequences.shape[0], batch_size)
    for start in tqdm(starts, desc="hidden states", unit="batch", disable=not progress):
        chunk = sequences[start: start + batch_size].to(device)
        kwargs = {}
        if pad_id is not None:
            valid = (chunk != pad_id).long().cumsum(-1) > 0  # left padding only
            kwargs = dict(attention_mask=valid.long(), position_ids=(valid.long().cumsum(-1) - 1).clamp(min=0))
        inputs = dict(inputs_embeds=_adapter_embeds(model, chunk, body_start)) if adapter else dict(input_ids=chunk)
        out.append(language_model(**inputs, **kwargs).last_hidden_state.to(torch.float16).cpu())
    return torch.cat(out)


def _is_adapter(model) -> bool:
    return hasattr(model, "forward_tree") and hasattr(model, "embed_image_tokens")


def _adapter_embeds(backbone, ids: torch.Tensor, body_start: int | None) -> torch.Tensor:
    """[b, L] ids -> [b, L, d]: text embeddings before body_start, the adapter's image path over the body."""
    if body_start is None:
        raise ValueError("body_start: a backbone adapter needs where the image body starts")
    grid = backbone.grid
    end = min(ids.shape[1], body_start + grid.num_body_tokens)
    body = ids[:, body_start:end]
    local = body - grid.image_token_range[0]
    if grid.row_end_token is not None:
        local = torch.where(body == grid.row_end_token, grid.row_end_local, local)
    text = ids.clamp(max=backbone.vocab_size - 1)  # body ids need not be text ids; their rows are replaced
    embeds = backbone.input_embeddings(text)
    embeds[:, body_start:end] = backbone.embed_image_tokens(local.clamp(0, grid.local_vocab_size - 1)).to(embeds.dtype)
    return embeds


def head_targets(sequences: torch.Tensor, body_start: int, grid: ImageGrid, offsets: list[int]):
    """-> (targets [N, L, H] local image ids, valid [N, L, H]): the token each head must predict."""
    num, length = sequences.shape
    lo, hi = grid.image_token_range
    pos = torch.arange(length)
    targets = torch.zeros(num, length, len(offsets), dtype=torch.int64)
    valid = torch.zeros(num, length, len(offsets), dtype=torch.bool)
    body_end = body_start + grid.num_body_tokens
    for k, off in enumerate(offsets):
        where = pos + 1 + off
        ok = (where >= body_start) & (where < min(body_end, length))
        tok = torch.zeros(num, length, dtype=torch.int64)
        tok[:, ok] = sequences[:, where[ok]]
        image = ok[None] & (tok >= lo) & (tok < hi)
        targets[..., k] = torch.where(image, tok - lo, 0)
        valid[..., k] = image
    return targets, valid


def _shared_rows(model, heads, grid):
    """The frozen lm_head rows of the image codes (head_rows), when the heads share the backbone's lm_head."""
    if heads.proj_weight is not None:
        return None
    if _is_adapter(model):
        rows = model.head_rows()
        if rows is None:
            raise ValueError("heads: shared_lm_head=True, but this model has no linear image head to share")
        return rows.detach().float()
    lo, hi = grid.image_token_range
    return model.get_output_embeddings().weight.detach()[lo:hi].float()


def head_losses(heads, hidden, rows, targets, valid):
    """-> per head: summed token cross-entropy, correct top-1 count and token count, over the valid targets."""
    logits = heads(hidden.float(), rows).float()  # [b, L, H, V_img]
    loss = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none").view(valid.shape)
    correct = ((logits.argmax(-1) == targets) & valid).sum((0, 1))
    return (loss * valid).sum((0, 1)), correct, valid.sum((0, 1))


def _loss(heads, hidden, rows, targets, valid):
    """-> per head: mean token loss, correct top-1 count and token count."""
    loss_sum, correct, count = head_losses(heads, hidden, rows, targets, valid)
    return loss_sum / count.clamp(min=1), correct, count


def train_heads(model, heads: DraftHeads, sequences: torch.Tensor, body_start: int, grid: ImageGrid, *,
                epochs: int = 4, lr: float = 1e-3, batch_size: int = 32, eval_sequences: torch.Tensor | None = None,
                device="cpu", progress: bool = True, seed: int = 0, pad_id: int | None = None) -> HeadMetrics:
    """Train `heads` in place on full sequences [N, L] (prompt + image body starting at `body_start`).
    model: a transformers causal LM, or a backbone adapter (e.g. `pipe.backbone(grid)`), which families whose
    image path differs need (Janus). Returns per-head loss and top-1 accuracy on eval_sequences (or the
    training set)."""
    from tqdm.auto import tqdm

    if sequences.dim() != 2 or sequences.dtype != torch.int64:
        raise ValueError(f"sequences: expected int64 [N, L], got {sequences.dtype} {tuple(sequences.shape)}")
    if sequences.shape[1] < body_start + grid.num_body_tokens:
        raise ValueError(f"sequences: length {sequences.shape[1]} < body_start + image body "
                         f"({body_start} + {grid.num_body_tokens})")
    (model.model if _is_adapter(model) else model).requires_grad_(False)
    rows = _shared_rows(model, heads, grid)
    offsets = heads.offsets(grid.row_stride)
    hidden = backbone_hidden(model, sequences, device=device, pad_id=pad_id, progress=progress, body_start=body_start)
    targets, valid = head_targets(sequences, body_start, grid, offsets)
    heads.to(device).float().train()
    opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * ((sequences.shape[0] + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc="train heads", disable=not progress)
    for _ in range(epochs):
        for idx in torch.randperm(sequences.shape[0], generator=gen).split(batch_size):
            per_head, _, _ = _loss(heads, hidden[idx].to(device), rows, targets[idx].to(device), valid[idx].to(device))
            opt.zero_grad()
            per_head.sum().backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{float(per_head.detach().mean()):.3f}")
    bar.close()
    heads.eval()
    return evaluate_heads(model, heads, eval_sequences if eval_sequences is not None else sequences, body_start,
                          grid, device=device, pad_id=pad_id)


@torch.no_grad()
def evaluate_heads(model, heads: DraftHeads, sequences, body_start: int, grid: ImageGrid, device="cpu",
                   pad_id: int | None = None) -> HeadMetrics:
    rows = _shared_rows(model, heads, grid)
    offsets = heads.offsets(grid.row_stride)
    hidden = backbone_hidden(model, sequences, device=device, pad_id=pad_id, body_start=body_start)
    targets, valid = head_targets(sequences, body_start, grid, offsets)
    loss_sum = torch.zeros(len(offsets))
    correct = torch.zeros(len(offsets))
    count = torch.zeros(len(offsets))
    for idx in torch.arange(sequences.shape[0]).split(64):
        per_head, ok, n = _loss(heads, hidden[idx].to(device), rows, targets[idx].to(device), valid[idx].to(device))
        loss_sum += per_head.cpu() * n.cpu()
        correct += ok.cpu()
        count += n.cpu()
    return HeadMetrics(offsets, (loss_sum / count.clamp(min=1)).tolist(), (correct / count.clamp(min=1)).tolist())
