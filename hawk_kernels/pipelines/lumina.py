"""Lumina-mGPT (`ChameleonForConditionalGeneration` weights, model_type "chameleon"): prompt -> codes -> image.

Prompt (Lumina-mGPT's FlexAR inference): BOS + "Generate an image of {W}x{H} according to the following
prompt:\\n{text}" + the turn separator `<reserved08706>`; the model would then write the image start and two
size tokens, which the pipeline appends itself for the requested `size` (so the size is what you ask for).
The unconditional branch starts at the image start: [image start, height token, width token] (Lumina-mGPT's
image-start-triggered CFG). Processing order CFG -> layout -> top-k -> temperature is the decoder's own
(target.py). `size`: pixels, an int or (height, width), multiples of 32 (512 / 768 / 1024 are the released
layouts, `ImageGrid.lumina_mgpt`); default: the size the checkpoint's name carries (Alpha-VLLM's
Lumina-mGPT-7B-512 / -768 / -1024, -34B-512, in any component of the directory's path, as a Hub snapshot's cache
path holds the repository's name: upstream asks for a target size "consistent with the checkpoint"), else 768.
Defaults: CFG 3, top-k 2000, temperature 1.

Pixels: transformers has no Chameleon VQGAN decoder; `chameleon_vqgan.ChameleonVQGANDecoder` loads Meta's
`vqgan.ckpt` from the model directory (VQGAN_FILES). Without it `images` and `pixels` are None.

Real images -> image tokens (`encode_images`): the encoder of that same `vqgan.ckpt` (loaded into transformers'
`ChameleonVQVAE` on first use), so encoding and decoding use one tokenizer; without the file, the VQ encoder
weights inside the model checkpoint (`model.model.vqmodel`, with a warning). Preprocessing without a saved image
processor is Lumina-mGPT's own (its data pipeline's `ChameleonImageProcessor(do_resize=False,
do_center_crop=False)` after a center crop): x * 0.0078 - 1.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ..backbones.chameleon import PIXELS_PER_CODE, PIXELS_PER_SIZE_STEP, image_prefix, lumina_grid
from ..checks import check_ids_in, exactly_one, id_rows, size_pair, text_prompts
from ..grid import ImageGrid
from .base import ImagePipeline, PromptRows
from .chameleon_vqgan import ChameleonVQGANDecoder, vq_encoder_from_checkpoint
from .images import check_code_grid

TEMPLATE = "Generate an image of {width}x{height} according to the following prompt:\n{prompt}"
TURN_SEPARATOR = "<reserved08706>"
STATED_SIZE = re.compile(r"Generate an image of (\d+)x(\d+) according to the following prompt:")  # TEMPLATE's size
VQGAN_FILES = ("vqgan.ckpt", "tokenizer/vqgan.ckpt", "chameleon/tokenizer/vqgan.ckpt")  # under model_dir
NAMED_SIZE = re.compile(r"lumina-mgpt-\d+b-(512|768|1024)(?!\d)", re.IGNORECASE)  # Alpha-VLLM's checkpoint names


def named_size(model_dir) -> int | None:
    """The size in pixels a Lumina-mGPT checkpoint's name carries, from the last component of `model_dir`'s path that
    names one (a Hub snapshot: .../models--Alpha-VLLM--Lumina-mGPT-7B-512/snapshots/<commit>), or None."""
    for part in reversed(Path(model_dir).parts):
        found = NAMED_SIZE.search(part)
        if found:
            return int(found.group(1))
    return None


class LuminaPipeline(ImagePipeline):
    family = "chameleon"
    cfg_branch = "the image start and size tokens alone (Lumina-mGPT's image-start-triggered CFG)"
    model_class = "ChameleonForConditionalGeneration"
    defaults = dict(cfg_scale=3.0, temperature=1.0, top_k=2000, size=768)
    required_config = ("vq_config", "vocabulary_map")
    # a tokenizer only; its data file is enough (Lumina-mGPT's tokenizer loads from tokenizer.json alone)
    processor_files = (("tokenizer.json", "tokenizer.model"),)
    no_processor_hint = ("; Lumina-mGPT-7B-512 and -1024 ship no tokenizer: upstream reads Alpha-VLLM/Lumina-mGPT-7B-768's "
                         "(load_pipeline(..., tokenizer='Alpha-VLLM/Lumina-mGPT-7B-768'), --tokenizer)")
    # images per VQGAN decoder call: its peak grows with the batch (measured on the CPU: 1.65 GB of peak RSS for one
    # 768 px image, 3.16 GB for two; the decoder runs in float32, as the checkpoint stores it, on every device)
    decode_batch = 4

    def __init__(self, *args, vqgan=None, **kwargs):
        self._vqgan_file = vqgan  # Meta's vqgan.ckpt given by path (load_pipeline's vqgan=), else found in model_dir
        super().__init__(*args, **kwargs)

    def check_model(self) -> None:
        bpe2img = self.model.model.vocabulary_mapping.bpe2img  # {image token id: VQ code}
        self._first_image_id = min(bpe2img)
        self._code_of = torch.tensor([bpe2img[self._first_image_id + i] for i in range(len(bpe2img))])
        self.vqgan, self.vqgan_path, self._encoder = None, None, None
        size = None if self.model_dir is None else named_size(self.model_dir)
        if size is not None:
            self.defaults = {**self.defaults, "size": size}  # this checkpoint's own, not the class's 768
        if self._vqgan_file is not None:
            self.load_vqgan(self._vqgan_file)
        elif self.model_dir is not None:
            self.load_vqgan(next((self.model_dir / f for f in VQGAN_FILES if (self.model_dir / f).is_file()), None))

    @property
    def has_pixel_decoder(self) -> bool:
        return self.vqgan is not None

    def load_vqgan(self, path) -> None:
        """Use the public VQGAN checkpoint at `path` for pixels (None: warn that there will be no pixels)."""
        if path is None:
            warnings.warn(f"hawk_kernels: no Chameleon VQGAN checkpoint ({' or '.join(VQGAN_FILES)}) in "
                          f"{self.model_dir}: images will be None (image tokens only; load_pipeline(..., vqgan=PATH) or "
                          f"pipe.load_vqgan(PATH) takes it from elsewhere)", RuntimeWarning, stacklevel=5)
            return
        decoder = ChameleonVQGANDecoder.from_checkpoint(path, self.model.config.vq_config)
        self.vqgan, self.vqgan_path, self._encoder = decoder.to(self.device), path, None  # encoder: on first use

    def layout(self, size) -> ImageGrid:
        height, width = self.pixels(size)
        return lumina_grid(self.model, height, width)

    def pixels(self, size) -> tuple[int, int]:
        """size -> (height, width) px: multiples of 32 whose size tokens the vocabulary has."""
        size = self.defaults["size"] if size is None else size
        pair = size_pair(size, PIXELS_PER_SIZE_STEP, f"an int or (height, width) in pixels, multiples of "
                                                     f"{PIXELS_PER_SIZE_STEP} (Lumina-mGPT: 512, 768 or 1024)")
        try:
            image_prefix(self.model, *pair)
        except ValueError as exc:
            raise ValueError(f"size: {pair[0]}x{pair[1]} px has no size token in this model's vocabulary "
                             f"({exc})") from None
        return int(pair[0]), int(pair[1])

    def prompt_rows(self, prompts, input_ids, grid: ImageGrid) -> PromptRows:
        exactly_one(prompts, input_ids)
        prefix = image_prefix(self.model, grid.height * PIXELS_PER_CODE, grid.width * PIXELS_PER_CODE)
        if prompts is not None:
            rows = [self._encode(text, grid) + prefix for text in text_prompts("prompts", prompts)]
            return PromptRows(rows, [prefix] * len(rows), "prompts")
        rows = id_rows(input_ids, self.backbone(grid).vocab_size)
        for i, row in enumerate(rows):
            self._check_stated_size(row, grid, i)
        return PromptRows([self._with_prefix(row, prefix, i) for i, row in enumerate(rows)], [prefix] * len(rows),
                          "input_ids")

    def _check_stated_size(self, row: list[int], grid: ImageGrid, index: int) -> None:
        """An input_ids row whose text asks for another size (the template's "Generate an image of WxH", e.g. a
        previous output's prompt) than `size` -> ValueError naming `size`: the size tokens appended for `size`
        would contradict the text the model reads. Rows without the template (or without a tokenizer to read
        them) are taken as they are."""
        if self.processor is None:
            return
        stated = STATED_SIZE.findall(self.tokenizer("input_ids").decode(row))
        asked = (grid.width * PIXELS_PER_CODE, grid.height * PIXELS_PER_CODE)
        if stated and tuple(map(int, stated[-1])) != asked:
            width, height = stated[-1]
            raise ValueError(f"size: input_ids row {index} asks in its text for an image of {width}x{height} px "
                             f"(width x height), size gives {asked[0]}x{asked[1]}: pass size=({height}, {width}) "
                             f"(height, width) or a prompt for this size")

    def _with_prefix(self, row: list[int], prefix: list[int], index: int) -> list[int]:
        """An input_ids row ending with the text or with a leading part of this size's image prefix (image
        start, height token, width token: what the model itself writes one token at a time) -> ending with the
        whole prefix; a row whose last tokens start another prefix (another size, or not size tokens) is
        refused."""
        for given in (3, 2, 1):
            if row[-given:] == prefix[:given]:
                return row + prefix[given:]
        started = next((row[-n:] for n in (3, 2) if len(row) >= n and row[-n] == prefix[0]), None)
        if started is not None:
            raise ValueError(f"input_ids: row {index} ends with the image prefix {started}, but size asks for "
                             f"{prefix} (image start, height token, width token)")
        return row + prefix

    def _encode(self, text: str, grid: ImageGrid) -> list[int]:
        tokenizer = self.tokenizer("prompts")
        prompt = TEMPLATE.format(width=grid.width * PIXELS_PER_CODE, height=grid.height * PIXELS_PER_CODE,
                                 prompt=text) + TURN_SEPARATOR
        ids = tokenizer(prompt).input_ids
        bos = tokenizer.bos_token_id
        return ids if bos is None or ids[:1] == [bos] else [bos] + ids

    def codes(self, image_tokens: torch.Tensor) -> torch.Tensor:
        low, high = self._first_image_id, self._first_image_id + len(self._code_of)
        return self._code_of[check_ids_in("image_tokens", image_tokens, low, high, "IMGIMG image-token ids") - low]

    @torch.no_grad()
    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor | None:
        if self.vqgan is None:
            return None
        codes = check_code_grid(check_ids_in("codes", codes, 0, self.vqgan.codebook.num_embeddings, "VQGAN codes"))
        return self.in_vq_batches(lambda chunk: self.vqgan(chunk.to(self.device)).float().cpu(), codes)

    @torch.no_grad()
    def encode_images(self, images, size=None) -> torch.Tensor:
        """Images -> `IMGIMG*` token ids [B, H, W] (no row-end tokens): `image_pixels` at the layout's size in
        px, the VQ encoder (`vq_encoder`), then codes -> ids through `model.model.vocabulary_mapping`."""
        grid, (height, width) = self.layout(size), self.pixels(size)
        pixels = self.image_pixels(images, grid, height, width)
        encoder = self.vq_encoder()
        encode = lambda chunk: encoder.encode(chunk.to(self.device, encoder.dtype)).image_tokens.cpu()
        codes = self.in_vq_batches(encode, pixels)  # [B * H * W]
        tokens = self.model.model.vocabulary_mapping.convert_img2bpe(codes)
        return tokens.reshape(len(pixels), grid.height, grid.width).long()

    def vq_encoder(self):
        """The VQ encoder of `encode_images`: the one in the VQGAN checkpoint the pixel decoder comes from
        (Meta's public tokenizer), else the model's own `model.model.vqmodel` (with a warning)."""
        if self._encoder is None and self.vqgan_path is not None:
            self._encoder = vq_encoder_from_checkpoint(self.vqgan_path, self.model.model.vqmodel).to(self.device)
        elif self._encoder is None:
            warnings.warn(f"hawk_kernels: no Chameleon VQGAN checkpoint ({' or '.join(VQGAN_FILES)}) in "
                          f"{self.model_dir}: encoding images with the VQ encoder weights inside the model "
                          f"checkpoint (model.model.vqmodel), not Meta's vqgan.ckpt", RuntimeWarning, stacklevel=3)
            self._encoder = self.model.model.vqmodel
        return self._encoder

    def default_image_processor(self):
        """Without a saved processor: Lumina-mGPT's own (ChameleonImageProcessor's defaults: x * 0.0078 - 1)."""
        from transformers import ChameleonImageProcessorPil

        return ChameleonImageProcessorPil()
