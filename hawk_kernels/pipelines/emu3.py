"""Emu3 (`Emu3ForConditionalGeneration`): prompt -> H x (W + 1) visual tokens -> image.

Prompts are what the model's processor builds for generation: `processor(text, return_for_image_generation=
True, ratio, image_area)` = BOS, the text, `<|image start|>`, the size `H*W` in tokens, `<|image token|>`.
The unconditional branch is Emu3's negative prompt processed the same way (as Emu3's own generation example
does), batched with the conditional rows in one forward (transformers runs it as a second, unbatched forward
per token). `size`: pixels, an int (square) or (height, width), multiples of the processor's 8 px per token;
None is the processor's default (1:1, 518,400 px area: 720 x 720). Pixels come from the model's own VQ
decoder; `encode_images` turns real images into visual tokens with its VQ encoder. Defaults: CFG 3, top-k 2048,
temperature 1.
"""
from __future__ import annotations

import torch

from ..backbones.emu3 import emu3_grid
from ..grid import ImageGrid
from ..checks import check_ids_in, exactly_one, id_rows, size_pair, text_prompts
from .base import ImagePipeline, PromptRows
from .images import check_code_grid

NEGATIVE_PROMPT = ("lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
                   "cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, "
                   "username, blurry.")  # Emu3's image generation example
PIXELS_PER_TOKEN = 8  # Emu3Processor.downsample_ratio
DEFAULT_AREA = 518400  # Emu3Processor.image_area (720 x 720 px)


class Emu3Pipeline(ImagePipeline):
    family = "emu3"
    model_class = "Emu3ForConditionalGeneration"
    defaults = dict(cfg_scale=3.0, temperature=1.0, top_k=2048)
    required_config = ("text_config", "vq_config", "vocabulary_map")
    # what Emu3Processor.save_pretrained writes (transformers 4.x: preprocessor_config.json)
    processor_files = (("processor_config.json", "preprocessor_config.json"), ("tokenizer_config.json",),
                       ("tokenizer.json", "vocab.json"))
    negative_prompt = NEGATIVE_PROMPT  # the CFG branch's text (set it on the pipeline to change it)
    # images per VQ decoder call: the released decoder (256 base channels, 4 frames) peaked at 20.9 GB of RSS
    # decoding ONE 720 px image on the CPU in float32 (twice, benchmarks/results/real_shapes_vq_decode_cpu_emu3.json),
    # and a VQ decoder's peak grows with its batch, so images are decoded one at a time
    decode_batch = 1

    def check_model(self) -> None:
        self._token_of = {int(i): token for token, i in self.model.config.vocabulary_map.items()}  # id -> text

    def layout(self, size) -> ImageGrid:
        height, width = _pixels(size)
        return emu3_grid(self.model, height // PIXELS_PER_TOKEN, width // PIXELS_PER_TOKEN)

    def prompt_rows(self, prompts, input_ids, grid: ImageGrid) -> PromptRows:
        exactly_one(prompts, input_ids)
        if prompts is not None:
            rows = [self._encode(text, grid, "prompts") for text in text_prompts("prompts", prompts)]
            argument = "prompts"
        else:
            rows, argument = id_rows(input_ids, self.backbone(grid).vocab_size), "input_ids"
            for i, row in enumerate(rows):
                self._check_image_prompt(row, grid, f"input_ids: row {i}")
        return PromptRows(rows, [self._unconditional(rows[0], grid)] * len(rows), argument)

    def _encode(self, text: str, grid: ImageGrid, argument: str) -> list[int]:
        """processor(text, return_for_image_generation=True) at the grid's size; the size it writes is checked."""
        processor = self.processor
        self.tokenizer(argument)  # raises without a processor
        if not hasattr(processor, "calculate_generate_size"):
            raise ValueError(f"{argument}: Emu3 text prompts need the Emu3Processor saved with the model, found "
                             f"{type(processor).__name__}: pass input_ids instead")
        ratio, area = f"{grid.width}:{grid.height}", grid.width * grid.height * PIXELS_PER_TOKEN ** 2
        size = processor.calculate_generate_size(ratio, area, PIXELS_PER_TOKEN)
        if tuple(size) != (grid.height, grid.width):
            raise ValueError(f"size: the processor turns {grid.height * 8}x{grid.width * 8} px into {size} tokens, "
                             f"expected ({grid.height}, {grid.width})")
        out = processor(text=[text], return_for_image_generation=True, ratio=ratio, image_area=area)
        return list(out["input_ids"][0])

    def _unconditional(self, row: list[int], grid: ImageGrid) -> list[int]:
        """The pipeline's negative prompt through the processor; without one, the image prompt alone (the row from
        its last `<|image start|>` on)."""
        if self.processor is not None and hasattr(self.processor, "calculate_generate_size"):
            if not isinstance(self.negative_prompt, str):
                raise TypeError(f"negative_prompt: expected a str (the CFG branch's text), got "
                                f"{type(self.negative_prompt).__name__} {self.negative_prompt!r:.40}")
            return self._negative_row(self.negative_prompt, grid, "set pipe.negative_prompt to a shorter text")
        start = self._image_start_id()
        return row[len(row) - 1 - row[::-1].index(start):] if start in row else row[-1:]

    def negative_rows(self, texts: list[str], grid: ImageGrid) -> list[list[int]]:
        """A call's negative prompts through the processor, as the pipeline's own (_unconditional)."""
        encoded = {text: self._negative_row(text, grid, "pass a shorter negative_prompt") for text in set(texts)}
        return [encoded[text] for text in texts]

    def _negative_row(self, text: str, grid: ImageGrid, advice: str) -> list[int]:
        row = self._encode(text, grid, "negative_prompt")
        room, limit = self.prompt_room(grid)
        if room is not None and 0 <= room < len(row):  # room < 0: the image alone is too big (size's error)
            raise ValueError(f"negative_prompt: the CFG branch's prompt has {len(row)} tokens; with the "
                             f"{grid.num_body_tokens}-token image they exceed the model's "
                             f"max_position_embeddings={limit}: {advice}")
        return row

    def _check_image_prompt(self, row: list[int], grid: ImageGrid, where: str) -> None:
        """input_ids must end with the image prompt `<|image start|>H*W<|image token|>` and its `H*W` must match
        `size`; read through config.vocabulary_map, so a model saved without its tokenizer is checked too."""
        vocabulary_map = self.model.config.vocabulary_map
        wrapper, start = vocabulary_map.get("<|image token|>"), self._image_start_id()
        if row[-1] != wrapper or start not in row:
            raise ValueError(f"{where} must end with the image prompt <|image start|>H*W<|image token|>")
        size_text = "".join(self._token_of.get(t, "?") for t in row[len(row) - row[::-1].index(start): -1])
        if size_text.replace(" ", "").replace("\u0120", "") != f"{grid.height}*{grid.width}":
            raise ValueError(f"size: the prompt asks for {size_text} tokens, size gives {grid.height}*{grid.width}")

    def _image_start_id(self) -> int:
        return int(self.model.config.vocabulary_map["<|image start|>"])

    def codes(self, image_tokens: torch.Tensor) -> torch.Tensor:
        table = self.model.model.vocabulary_mapping.bpe2img_mapping_tensor
        low, high = self.layout(None).image_token_range
        return table[check_ids_in("image_tokens", image_tokens, low, high, "Emu3 visual-token ids")].long()

    @torch.no_grad()
    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, H, W] codes -> [B, 3, h, w], `decode_batch` images per VQ decoder call."""
        vqmodel = self.model.model.vqmodel
        codes = check_code_grid(check_ids_in("codes", codes, 0, int(vqmodel.config.codebook_size), "Emu3 VQ codes"))
        return self.in_vq_batches(lambda chunk: vqmodel.decode(chunk.to(self.device)).float().cpu(), codes)

    @torch.no_grad()
    def encode_images(self, images, size=None) -> torch.Tensor:
        """Images -> visual-token ids [B, H, W] (no end-of-line tokens): `image_pixels` at the layout's size in
        px (Emu3's processor would instead pick a size near the image's own aspect ratio; here the layout fixes
        it), then the model's VQ encoder and its code -> visual-token map (`get_image_tokens` without the
        end-of-line column)."""
        grid = self.layout(size)
        pixels = self.image_pixels(images, grid, grid.height * PIXELS_PER_TOKEN, grid.width * PIXELS_PER_TOKEN)
        vqmodel = self.model.model.vqmodel

        def encode(chunk):
            sizes = torch.tensor([list(chunk.shape[-2:])] * len(chunk))
            return torch.stack(vqmodel.encode(chunk.to(self.device), sizes).image_tokens).cpu()

        codes = self.in_vq_batches(encode, pixels)
        return self.model.model.vocabulary_mapping.img2bpe_mapping_tensor[codes].long()

    def default_image_processor(self):
        """Without a saved processor: Emu3ImageProcessor normalising to [-1, 1] (mean = std = 0.5; the range of
        the VQ decoder's output, the statistics `to_pil` inverts without a processor)."""
        from transformers import Emu3ImageProcessor

        return Emu3ImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _pixels(size) -> tuple[int, int]:
    """size (None | int | (height, width)) -> (height, width) px, multiples of 8."""
    if size is None:
        side = int(round(DEFAULT_AREA ** 0.5))
        return side, side
    return size_pair(size, PIXELS_PER_TOKEN, f"None, an int or (height, width) in pixels, multiples of "
                                             f"{PIXELS_PER_TOKEN}")
