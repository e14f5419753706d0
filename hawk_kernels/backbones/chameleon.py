"""The Chameleon / Lumina-mGPT adapter (`ChameleonForConditionalGeneration` weights) and its layouts.

Facts (docs/method.md §2; Lumina-mGPT's public item processor): image codes are vocabulary ids (the `IMGIMG*`
tokens, ids 4..8195 of 65,536), embedded by `embed_tokens`. transformers' `forward` overwrites their logits
with the dtype minimum, so logits come from the lm_head rows directly, which the causal-LM adapter already
does. A Lumina-mGPT image is `<racm3:break>` (image start, 8197), two size tokens `<reserved{8800+n:05d}>`
(n = grid cells of 32 px: height, then width), then rows of codes each ending with `<reserved08799>` (8803),
then `<eoss>` (image end, 8196): 16 px per code, row stride W + 1.
"""
from __future__ import annotations

from ..grid import ImageGrid
from .vocab_map import contiguous_range, vocab_id

IMAGE_START_TOKEN = "<racm3:break>"
IMAGE_END_TOKEN = "<eoss>"
ROW_END_TOKEN = "<reserved08799>"
PIXELS_PER_SIZE_STEP = 32  # a size token counts 32 px cells: 2 x 2 codes
PIXELS_PER_CODE = 16  # the VQGAN's downsampling: one code per 16 x 16 px


def size_token(vocabulary_map: dict, pixels: int) -> int:
    """The id of the size token for `pixels` (a multiple of 32)."""
    return vocab_id(vocabulary_map, f"<reserved{8800 + pixels // PIXELS_PER_SIZE_STEP:05d}>")


def lumina_grid(model, height: int, width: int) -> ImageGrid:
    """The body of a height x width px Lumina-mGPT image (both multiples of 32): H/16 rows of W/16 codes +
    row-end, then image end. Ids come from the checkpoint's vocabulary map (ImageGrid.lumina_mgpt for the
    released ids)."""
    vocabulary_map = model.config.vocabulary_map
    codes = contiguous_range(model.model.vocabulary_mapping.image_tokens, "IMGIMG image token")
    return ImageGrid(height=height // PIXELS_PER_CODE, width=width // PIXELS_PER_CODE,
                     row_end_token=vocab_id(vocabulary_map, ROW_END_TOKEN), image_token_range=codes,
                     image_end_token=vocab_id(vocabulary_map, IMAGE_END_TOKEN))


def image_prefix(model, height: int, width: int) -> list[int]:
    """What starts a Lumina-mGPT image: image start, height size token, width size token."""
    vocabulary_map = model.config.vocabulary_map
    return [vocab_id(vocabulary_map, IMAGE_START_TOKEN), size_token(vocabulary_map, height),
            size_token(vocabulary_map, width)]
