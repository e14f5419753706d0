"""The LlamaGen adapter (`llamagen_gpt.LlamaGenModel`, class- or text-conditional).

Id spaces, as for Janus: the body is VQ codes, which are the local ids themselves (no row-end token), so
`token_ids` returns them and `output_vocab_size` is the codebook; the image head is linear (`output`), so draft
heads share its rows. Prompt ids, `vocab_size`:
  * c2i: class labels, 0..num_classes (num_classes: the CFG null class), one per row;
  * t2i: T5 token ids, each row exactly cls_token_num (120) long, left-padded with T5's pad id (which marks the
    padding), and NULL_CAPTION = the T5 vocabulary size for the CFG branch: a row [pad..., NULL_CAPTION...] reads
    the learned null caption (uncond_embedding) masked like its conditional row, as upstream's generate does.
    The captions go through the model's T5 encoder (`model.text_encoder`) right-padded, as upstream's T5Embedder
    encodes them, then back to the left.
The cache, prefill, tree forward and commit are the shared stack's. Positions are upstream's: the condition at
0..cls_token_num - 1 (their rotation is zero), image token k at cls_token_num + k whatever the caption's
padding, which is the cache length plus the node's depth (every prompt is cls_token_num slots wide).
"""
from __future__ import annotations

import torch

from ..grid import ImageGrid
from .causal_lm import TransformerStack


def llamagen_grid(model) -> ImageGrid:
    """The one layout a LlamaGen checkpoint generates: side x side codes (block_size), raster order."""
    side = model.config.grid_side
    return ImageGrid(height=side, width=side, image_token_range=(0, int(model.config.vocab_size)))


class LlamaGenBackbone(TransformerStack):
    positions_from_slots = True  # cls_token_num + image index (see the module docstring)

    def __init__(self, model, grid: ImageGrid):
        config = model.config
        codes = int(config.vocab_size)
        if grid.image_token_range != (0, codes) or grid.row_end_token is not None:
            raise ValueError(f"grid: LlamaGen bodies are codes (0, {codes}) with no row-end token, got "
                             f"image_token_range={grid.image_token_range}, row_end_token={grid.row_end_token}")
        self.captions = config.gpt_type == "t2i"
        # c2i prompt ids are class labels: they embed through the class table (head training's text path reads
        # input_embeddings); t2i captions come through prompt_inputs; codes through embed_image_tokens
        super().__init__(model, grid, model, config,
                         model.tok_embeddings if self.captions else model.cls_embedding.embedding_table)
        if self.captions:
            if model.text_encoder is None:
                raise ValueError("model: a t2i LlamaGen GPT needs its T5 text encoder (model.text_encoder)")
            text = model.text_encoder.config
            self.pad_id, self.null_caption_id = int(text.pad_token_id), int(text.vocab_size)
            self.vocab_size = self.null_caption_id + 1  # T5 ids and NULL_CAPTION
        else:
            self.vocab_size = int(config.num_classes) + 1  # class labels and the null class
        self.output_vocab_size = codes
        self.hidden_size = int(config.dim)
        self.output_rows = model.output.weight.detach()

    @property
    def block_sparse_attention(self) -> bool:
        return False  # the model runs sdpa over dense additive masks

    def prompt_inputs(self, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor) -> tuple[dict, torch.Tensor]:
        if not self.captions:
            return super().prompt_inputs(prompt_ids, prompt_valid)
        width = self.model.config.cls_token_num
        if prompt_ids.shape[1] != width:
            raise ValueError(f"input_ids: a t2i LlamaGen prompt is {width} caption positions (T5 ids left-padded "
                             f"with {self.pad_id}), got {prompt_ids.shape[1]}")
        valid = prompt_valid & (prompt_ids != self.pad_id)
        null_rows = prompt_ids[:, -1] == self.null_caption_id
        caption = self._encode(prompt_ids.masked_fill(prompt_ids == self.null_caption_id, self.pad_id), valid)
        embedder = self.model.cls_embedding
        caption = torch.where(null_rows[:, None, None], embedder.uncond_embedding.to(caption.dtype),
                              caption * valid[..., None])  # upstream zeroes the padding of real captions
        return {"inputs_embeds": embedder.cap_proj(caption.to(self.dtype))}, valid

    def _encode(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """T5's last hidden states of left-padded captions, computed right-padded (how upstream's tokenizer pads
        them before its T5 runs) and moved back to the left."""
        width = ids.shape[1]
        shift = width - valid.sum(-1, keepdim=True)  # padding slots on the left
        slots = torch.arange(width, device=ids.device)[None]
        right = (slots + shift) % width
        hidden = self.model.text_encoder(input_ids=ids.gather(1, right),
                                         attention_mask=valid.gather(1, right).long()).last_hidden_state
        back = (slots - shift) % width
        return hidden.gather(1, back[..., None].expand(-1, -1, hidden.shape[-1]))

    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.output_rows.T

    def embed_image_tokens(self, local_ids: torch.Tensor) -> torch.Tensor:
        return self.model.tok_embeddings(local_ids)

    def head_rows(self) -> torch.Tensor:
        return self.output_rows

    def token_ids(self, local_ids: torch.Tensor) -> torch.Tensor:
        return local_ids
