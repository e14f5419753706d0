"""The Emu3 adapter (`Emu3ForConditionalGeneration`) and its layout.

Facts from transformers' modeling_emu3.py / processing_emu3.py (docs/method.md §2): visual tokens are ordinary
ids of the shared vocabulary (`<|visual token NNNNNN|>`), embedded by `embed_tokens` and scored by the
`lm_head`, so the causal-LM adapter serves unchanged. The body is H rows of W visual tokens each followed by
the end-of-line token `<|extra_200|>` (row stride W + 1); after it come end-of-frame `<|extra_201|>`, end of
image and EOS. The grid's `image_end_token` is the end-of-frame token (the first token after the body).
"""
from __future__ import annotations

from ..grid import ImageGrid
from .vocab_map import contiguous_range, vocab_id

EOL_TOKEN = "<|extra_200|>"
EOF_TOKEN = "<|extra_201|>"


def emu3_grid(model, height: int, width: int) -> ImageGrid:
    """height x width visual tokens (the processor's `H*W` size prompt), EOL after every row, then EOF."""
    mapping = model.model.vocabulary_mapping
    vocabulary_map = model.config.vocabulary_map
    return ImageGrid(height=height, width=width, row_end_token=vocab_id(vocabulary_map, EOL_TOKEN),
                     image_token_range=contiguous_range(mapping.image_tokens, "visual token"),
                     image_end_token=vocab_id(vocabulary_map, EOF_TOKEN))
