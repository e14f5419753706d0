"""What head training computes on one batch: the frozen backbone's hidden states, each head's targets, and
their losses. The trainer (trainer.py) drives these batch by batch.

Head k with offset o (heads.offsets(S): 1..n horizontal, S*d vertical) is fed the hidden state at sequence
position i and learns the token at i + 1 + o, only where that token is an image code of the same image.
The backbone never receives gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .grid import ImageGrid


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
def backbone_hidden(model, sequences: torch.Tensor, body_start: int,
                    prompt_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """[b, L] token ids (on the model's device) -> [b, L, d] last hidden states of the frozen backbone, on that
    device in the model's dtype. prompt_lengths [b]: real prompt tokens before body_start (the rest of the
    prompt is left padding, masked, with positions starting at the first real token, exactly as the decoder's
    prefill does); None: every position is real. `model` is a transformers causal LM or a backbone adapter
    (backbones/): the image body sequences[:, body_start:] then enters through the adapter's image path
    (`embed_image_tokens`), as it does while decoding (Janus: the generation embedding; its codes are not text ids)."""
    adapter = is_adapter(model)
    language_model = model.language_model if adapter else model.get_decoder()  # the stack under the LM head
    kwargs = {}
    if prompt_lengths is not None:
        first = body_start - prompt_lengths.to(sequences.device)
        valid = (torch.arange(sequences.shape[1], device=sequences.device)[None] >= first[:, None]).long()
        kwargs = dict(attention_mask=valid, position_ids=(valid.cumsum(-1) - 1).clamp(min=0))
    inputs = dict(inputs_embeds=_adapter_embeds(model, sequences, body_start)) if adapter else dict(input_ids=sequences)
    return language_model(**inputs, **kwargs).last_hidden_state


def is_adapter(model) -> bool:
    return hasattr(model, "forward_tree") and hasattr(model, "embed_image_tokens")


def _adapter_embeds(backbone, ids: torch.Tensor, body_start: int) -> torch.Tensor:
    """[b, L] ids -> [b, L, d]: text embeddings before body_start, the adapter's image path over the body."""
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
    """-> (targets [N, L, H] local image ids, valid [N, L, H]) on sequences' device: the token each head must
    predict."""
    num, length = sequences.shape
    lo, hi = grid.image_token_range
    pos = torch.arange(length, device=sequences.device)
    targets = torch.zeros(num, length, len(offsets), dtype=torch.int64, device=sequences.device)
    valid = torch.zeros(num, length, len(offsets), dtype=torch.bool, device=sequences.device)
    body_end = body_start + grid.num_body_tokens
    for k, off in enumerate(offsets):
        where = pos + 1 + off
        ok = (where >= body_start) & (where < min(body_end, length))
        tok = sequences.gather(1, where.clamp(max=length - 1)[None].expand(num, -1)) * ok
        image = ok[None] & (tok >= lo) & (tok < hi)
        targets[..., k] = torch.where(image, tok - lo, 0)
        valid[..., k] = image
    return targets, valid


def shared_rows(model, heads, grid):
    """The frozen lm_head rows of the image codes (head_rows), when the heads share the backbone's lm_head."""
    if heads.proj_weight is not None:
        return None
    if is_adapter(model):
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
