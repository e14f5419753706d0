"""Janus / Janus-Pro (`JanusForConditionalGeneration`): prompt -> 24x24 VQ codes -> 384 px image.

Prompts are built as transformers' docs do: the processor's chat template (when it has one) around the text,
then `processor(text, generation_mode="image")`, which appends the begin-of-image token. The unconditional
row is what `JanusForConditionalGeneration.generate` builds: the conditional row with every token except BOS
and begin-of-image replaced by the pad token (same length, so rows are grouped by prompt length when CFG is
on). Outputs: `image_tokens` and `codes` are both the VQ codes (Janus image tokens are not text ids), and
pixels come from the model's own VQ decoder (`decode_image_tokens`); `encode_images` turns real images into
codes with its VQ encoder. Defaults: CFG 5, temperature 1, no top-k.
"""
from __future__ import annotations

import torch

from ..backbones.janus import janus_grid
from ..grid import ImageGrid
from ..checks import check_ids_in, exactly_one, id_rows, text_prompts
from .base import ImagePipeline, PromptRows
from .images import check_code_grid, one_layout

# what JanusProcessor.save_pretrained writes (transformers 4.x: preprocessor_config.json); its chat template is
# chat_template.jinja (or an entry of those files) and is checked when a text prompt needs it
PROCESSOR_FILES = (("processor_config.json", "preprocessor_config.json"), ("tokenizer_config.json",),
                   ("tokenizer.json", "tokenizer.model"))


class JanusPipeline(ImagePipeline):
    family = "janus"
    cfg_branch = "the prompt with its text replaced by pad tokens (as Janus generates)"
    model_class = "JanusForConditionalGeneration"
    defaults = dict(cfg_scale=5.0, temperature=1.0, top_k=None)
    required_config = ("text_config", "vision_config", "vq_config")
    processor_files = PROCESSOR_FILES
    # images per VQ decoder call: the decoder's peak grows with its batch (measured on the CPU, float32, the released
    # VQ configuration: 0.48 GB of peak RSS for one 384 px image, 0.72 GB for two; benchmarks/results/)
    decode_batch = 16

    def check_model(self) -> None:
        self.grid = janus_grid(self.model)
        self.bos_id, self.pad_id, self.boi_id = _special_ids(self.model, self.processor)

    @property
    def image_size(self) -> int:
        """Pixels per side of the decoded image: codes per side x the VQ decoder's upsampling."""
        levels = len(self.model.config.vq_config.channel_multiplier)
        return self.grid.width * 2 ** (levels - 1)

    def layout(self, size) -> ImageGrid:
        return one_layout(size, self.grid, self.image_size, "this Janus model")

    def prompt_rows(self, prompts, input_ids, grid: ImageGrid) -> PromptRows:
        exactly_one(prompts, input_ids)
        if prompts is not None:
            rows, argument = [self._encode(text) for text in text_prompts("prompts", prompts)], "prompts"
        else:
            rows, argument = id_rows(input_ids, self.backbone(grid).vocab_size), "input_ids"
        for i, row in enumerate(rows):
            if row[-1] != self.boi_id:
                raise ValueError(f"{argument}: row {i} must end with the begin-of-image token {self.boi_id} "
                                 f"(the image starts there), got {row[-1]}")
        return PromptRows(rows, [self._unconditional(row) for row in rows], argument)

    def _encode(self, text: str) -> list[int]:
        """The processor's chat template (required: Janus prompts are `<|User|>: {text}...<|Assistant|>:`, and
        transformers' JanusProcessor has no default one), then `processor(text, generation_mode="image")`; a
        bare tokenizer gets the begin-of-image token appended the same way."""
        tokenizer, processor = self.tokenizer("prompts"), self.processor
        if not getattr(processor, "chat_template", None):
            raise ValueError(f"prompts: the Janus processor saved in {str(self.model_dir)!r} has no chat template "
                             f"(chat_template.jinja is missing), and Janus prompts are wrapped in it "
                             f"('<|User|>: ...<|Assistant|>:'); save the processor with its template, or pass "
                             f"input_ids")
        conversation = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        if processor is tokenizer:
            return tokenizer(text).input_ids + [self.boi_id]
        return processor(text=[text], generation_mode="image", return_tensors="pt").input_ids[0].tolist()

    def _unconditional(self, row: list[int]) -> list[int]:
        return [t if t in (self.bos_id, self.boi_id) else self.pad_id for t in row]

    def codes(self, image_tokens: torch.Tensor) -> torch.Tensor:
        return check_ids_in("image_tokens", image_tokens, *self.grid.image_token_range, "Janus VQ codes")

    @torch.no_grad()
    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, H, W] codes -> [B, 3, h, w], `decode_batch` images per VQ decoder call."""
        codes = check_ids_in("codes", codes, *self.grid.image_token_range, "Janus VQ codes")
        check_code_grid(codes, (self.grid.height, self.grid.width), f"this Janus model decodes {self.grid.height} x "
                        f"{self.grid.width} codes per image")
        return self.in_vq_batches(lambda chunk: self.model.decode_image_tokens(chunk.flatten(1).to(self.device))
                                  .permute(0, 3, 1, 2).float().cpu(), codes)  # the decoder gives [b, h, w, 3]

    @torch.no_grad()
    def encode_images(self, images, size=None) -> torch.Tensor:
        """Images -> VQ codes [B, H, W] (Janus image tokens are the codes): `image_pixels` at image_size px
        square, then the model's own VQ encoder (`model.model.vqmodel.encode`)."""
        grid = self.layout(size)
        pixels = self.image_pixels(images, grid, self.image_size, self.image_size)
        vqmodel = self.model.model.vqmodel
        encode = lambda chunk: vqmodel.encode(chunk.to(self.device, vqmodel.dtype)).image_tokens.cpu()
        codes = self.in_vq_batches(encode, pixels)  # [B * H * W]
        return codes.reshape(len(pixels), grid.height, grid.width).long()

    def default_image_processor(self):
        """Without a saved processor: pixels / 255 normalised with mean = std = 0.5, i.e. to [-1, 1], the range
        of the VQ decoder's output (the statistics `to_pil` inverts without a processor; transformers' class
        defaults, CLIP's statistics, are not used)."""
        from transformers import JanusImageProcessorPil

        return JanusImageProcessorPil(image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _special_ids(model, processor) -> tuple[int, int, int]:
    """(BOS, pad, begin-of-image) as Janus's generate reads them: the generation config, which released
    checkpoints ship (`generation_kwargs["boi_token_id"]`); the tokenizer's ids fill what it lacks."""
    config = model.generation_config
    tokenizer = getattr(processor, "tokenizer", processor)
    boi = (getattr(config, "generation_kwargs", None) or {}).get("boi_token_id")
    boi = boi if boi is not None else getattr(tokenizer, "boi_token_id", None)
    bos = config.bos_token_id if config.bos_token_id is not None else getattr(tokenizer, "bos_token_id", None)
    pad = config.pad_token_id if config.pad_token_id is not None else getattr(tokenizer, "pad_token_id", None)
    missing = [name for name, value in (("bos_token_id", bos), ("pad_token_id", pad), ("boi_token_id", boi))
               if value is None]
    if missing:
        raise ValueError(f"model_dir: the Janus generation_config.json lacks {missing} (and no tokenizer supplies "
                         f"them); they build the unconditional CFG rows")
    return int(bos), int(pad), int(boi)
