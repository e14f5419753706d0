"""What head training computes on one batch: the frozen backbone's hidden states, each head's targets, and
their losses. The trainer loop (head_trainer.py) drives these batch by batch.

Head k with offset o (heads.offsets(S): 1..n horizontal, S*d vertical) is fed the hidden state at sequence
position i and learns the token at i + 1 + o, only where that token is an image code of the same image.
The backbone never receives gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..grid import ImageGrid


@torch.no_grad()
def backbone_hidden(backbone, sequences: torch.Tensor, body_start: int,
                    prompt_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """[b, L] token ids (on the backbone's device) -> [b, L, d] last hidden states of the frozen model, on that
    device in the model's dtype. prompt_lengths [b]: real prompt tokens before body_start (the rest of the
    prompt is left padding, masked, with positions starting at the first real token, exactly as the decoder's
    prefill does); None: every position is real. `backbone`: a backbone adapter (backbones/, e.g.
    `pipe.backbone(grid)` or `backbone_for(model, grid)`): the prompt enters as text embeddings, the image body
    sequences[:, body_start:] through the adapter's image path (`embed_image_tokens`), as it does while
    decoding (Janus: the generation embedding; its codes are not text ids)."""
    slots = torch.arange(sequences.shape[1], device=sequences.device)[None]
    first = 0 if prompt_lengths is None else body_start - prompt_lengths.to(sequences.device)[:, None]
    embeds, valid = _input_embeds(backbone, sequences, body_start, (slots >= first).expand_as(sequences))
    kwargs = {}
    if prompt_lengths is not None or not bool(valid.all()):  # padding (a LlamaGen caption's is inside its prompt)
        kwargs = dict(attention_mask=valid.long(), position_ids=backbone.prompt_positions(valid))
    return backbone.language_model(inputs_embeds=embeds, **kwargs).last_hidden_state


def check_token_ids(sequences: torch.Tensor, body_start: int, grid: ImageGrid, vocab_size: int | None = None,
                    pad_id: int | None = None, where: str = "data", index: torch.Tensor | None = None) -> None:
    """Training ids the model embeds as they are (the embedding below clamps them, so an id out of range would
    silently train on another token): the text positions (before body_start and after the image body) in
    [0, vocab_size) (vocab_size None: >= 0 only), the image body image codes or the row-end token, pad_id None
    or an id of the vocabulary. One vectorised pass; ValueError naming `where`, a sequence (row r, or index[r]:
    its number in the data set) and a position."""
    if pad_id is not None and (not isinstance(pad_id, int) or isinstance(pad_id, bool) or pad_id < 0
                               or (vocab_size is not None and pad_id >= vocab_size)):
        raise ValueError(f"{where}: pad_id must be None or a token id in [0, {vocab_size or 'vocab_size'}), "
                         f"got {pad_id!r}")
    end = min(sequences.shape[1], body_start + grid.num_body_tokens)
    text = torch.cat([sequences[:, :body_start], sequences[:, end:]], 1)
    high = 2**63 - 1 if vocab_size is None else vocab_size
    if text.numel() and (text.min() < 0 or text.max() >= high):
        row, col = ((text < 0) | (text >= high)).nonzero()[0].tolist()
        position = col if col < body_start else end + col - body_start
        raise ValueError(f"{where}: sequence {row if index is None else int(index[row])} holds token id "
                         f"{int(text[row, col])} at position {position}, outside the model's vocabulary "
                         f"[0, {vocab_size or 'vocab_size'})")
    body = sequences[:, body_start:end]
    lo, hi = grid.image_token_range
    bad = (body < lo) | (body >= hi)
    if grid.row_end_token is not None:
        bad &= body != grid.row_end_token
    if bad.any():
        row, col = bad.nonzero()[0].tolist()
        raise ValueError(f"{where}: sequence {row if index is None else int(index[row])} holds token id "
                         f"{int(body[row, col])} at position {body_start + col} of the image body, which takes image "
                         f"codes [{lo}, {hi})"
                         + ("" if grid.row_end_token is None else f" and the row-end token {grid.row_end_token}"))


def _input_embeds(backbone, ids: torch.Tensor, body_start: int, valid: torch.Tensor):
    """[b, L] ids, valid -> ([b, L, d], valid): the prompt as the decoder's prefill reads it (the adapter's
    `prompt_inputs`: text embeddings, or LlamaGen's T5 captions, whose padding it marks), the adapter's image path
    over the body, text embeddings after it."""
    grid = backbone.grid
    end = min(ids.shape[1], body_start + grid.num_body_tokens)
    body = ids[:, body_start:end]
    local = body - grid.image_token_range[0]
    if grid.row_end_token is not None:
        local = torch.where(body == grid.row_end_token, grid.row_end_local, local)
    inputs, prompt_valid = backbone.prompt_inputs(ids[:, :body_start], valid[:, :body_start])
    text = ids.clamp(max=backbone.vocab_size - 1)  # body ids need not be text ids; their rows are replaced
    embeds = inputs.get("inputs_embeds")
    if embeds is None:
        embeds = backbone.input_embeddings(text)
    else:  # the prompt's own embeddings; no text follows a LlamaGen body
        embeds = torch.cat([embeds, backbone.embed_image_tokens(torch.zeros_like(ids[:, body_start:]))], 1)
    embeds[:, body_start:end] = backbone.embed_image_tokens(local.clamp(0, grid.local_vocab_size - 1)).to(embeds.dtype)
    return embeds, torch.cat([prompt_valid, valid[:, body_start:]], 1)


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


def shared_rows(backbone, heads):
    """The frozen image-head rows (backbone.head_rows()) when the heads share them (shared_lm_head), else None."""
    if heads.proj_weight is not None:
        return None
    rows = backbone.head_rows()
    if rows is None:
        raise ValueError("heads: shared_lm_head=True, but this model has no linear image head to share")
    return rows.detach().float()


def head_losses(heads, hidden, rows, targets, valid):
    """-> per head: summed token cross-entropy, correct top-1 count and token count, over the valid targets."""
    logits = heads(hidden.float(), rows).float()  # [b, L, H, V_img]
    loss = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none").view(valid.shape)
    correct = ((logits.argmax(-1) == targets) & valid).sum((0, 1))
    return (loss * valid).sum((0, 1)), correct, valid.sum((0, 1))
