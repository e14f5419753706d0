"""The LlamaGen adapter (class-conditional c2i models, `llamagen_gpt.LlamaGenModel`).

Id spaces, as for Janus: prompt ids are class labels (0..num_classes-1, and num_classes: the CFG null class),
so `vocab_size` is num_classes + 1; the body is VQ codes, which are the local ids themselves (no row-end token),
`token_ids` returns them and `output_vocab_size` is the codebook. The image head is linear (`output`), so draft
heads share its rows. The cache, prefill, tree forward and commit are the shared stack's: the model takes the
stack's calling convention, and positions come out as upstream's (the class token at 0, image token k at 1 + k).
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
    def __init__(self, model, grid: ImageGrid):
        config = model.config
        codes = int(config.vocab_size)
        if grid.image_token_range != (0, codes) or grid.row_end_token is not None:
            raise ValueError(f"grid: LlamaGen bodies are codes (0, {codes}) with no row-end token, got "
                             f"image_token_range={grid.image_token_range}, row_end_token={grid.row_end_token}")
        # prompt ids are class labels: they embed through the class table (as the prefill's input_ids do), which
        # head training's text path reads as input_embeddings; codes take tok_embeddings (embed_image_tokens)
        super().__init__(model, grid, model, config, model.cls_embedding.embedding_table)
        self.vocab_size = int(config.num_classes) + 1  # prompt ids: class labels and the null class
        self.output_vocab_size = codes
        self.hidden_size = int(config.dim)
        self.output_rows = model.output.weight.detach()

    @property
    def block_sparse_attention(self) -> bool:
        return False  # the model runs sdpa over dense additive masks

    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.output_rows.T

    def embed_image_tokens(self, local_ids: torch.Tensor) -> torch.Tensor:
        return self.model.tok_embeddings(local_ids)

    def head_rows(self) -> torch.Tensor:
        return self.output_rows

    def token_ids(self, local_ids: torch.Tensor) -> torch.Tensor:
        return local_ids
