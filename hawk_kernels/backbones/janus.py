"""The Janus / Janus-Pro adapter (`JanusForConditionalGeneration`): image codes have a path of their own.

Facts from transformers' modeling_janus.py (docs/method.md §2):
  * an image code enters the language model as `generation_aligner(generation_embeddings(code))`
    (`model.prepare_embeddings_for_image_generation`), passed as `inputs_embeds`;
  * its law comes from `model.model.generation_head(h)` over the VQ codebook (an MLP, not a linear head), so
    there are no lm_head rows for draft heads to share: `head_rows()` is None;
  * the layout is num_patches x num_patches codes (24x24 for Janus-Pro at 384 px) with no row-end token;
    the prompt ends with the begin-of-image token.

Id spaces: prompt ids are text ids, so `vocab_size` is the text vocabulary. The body is VQ codes, which are
not text ids: the local vocabulary is the codebook itself (local id == code), `token_ids` returns the codes,
and `output_vocab_size` (the codebook size) is the id space of the grid's `image_token_range` and of draft
heads' `vocab_size`.
"""
from __future__ import annotations

import torch

from ..grid import ImageGrid
from .causal_lm import TransformerStack


def janus_grid(model) -> ImageGrid:
    """The one layout a Janus checkpoint generates: num_patches^2 codes, raster order, no layout tokens."""
    side = int(model.config.vq_config.num_patches)
    tokens = int(model.model.vision_model.config.num_image_tokens)
    if side * side != tokens:
        raise ValueError(f"model: vision_config.num_image_tokens={tokens} is not vq_config.num_patches^2 "
                         f"({side}^2); transformers' generate and the VQ decoder would disagree")
    return ImageGrid(height=side, width=side, image_token_range=(0, int(model.config.vq_config.num_embeddings)))


class JanusBackbone(TransformerStack):
    """The step's calls on a Janus model. The cache, prefill, tree forward and commit are the shared stack's
    (the language model is a plain Llama stack); only the image path differs."""

    def __init__(self, model, grid: ImageGrid):
        codes = int(model.config.vq_config.num_embeddings)
        if grid.image_token_range != (0, codes) or grid.row_end_token is not None:
            raise ValueError(f"grid: Janus bodies are codes (0, {codes}) with no row-end token, got "
                             f"image_token_range={grid.image_token_range}, row_end_token={grid.row_end_token}")
        text = model.config.text_config
        super().__init__(model, grid, model.model.language_model, text, model.get_input_embeddings())
        self.output_vocab_size = codes  # ids of token_ids() and of draft heads: the codebook (vocab_size: text)
        self.hidden_size = int(text.hidden_size)
        self.generation_head = model.model.generation_head

    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., d] -> generation-head logits over the codebook [..., V_codes]."""
        return self.generation_head(hidden)

    def embed_image_tokens(self, local_ids: torch.Tensor) -> torch.Tensor:
        return self.model.prepare_embeddings_for_image_generation(local_ids)

    def head_rows(self) -> None:
        return None  # the generation head is an MLP: draft heads bring their own projection

    def token_ids(self, local_ids: torch.Tensor) -> torch.Tensor:
        return local_ids  # the codes themselves (they are not text ids)
