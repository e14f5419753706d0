"""LlamaGen (FoundationVision/LlamaGen): class label (c2i) or text (t2i) -> side x side VQ codes -> image (c2i:
256 px for the *_256 checkpoints, 384 px for the *_384 ones; t2i: 256 px stage 1, 512 px stage 2).

LlamaGen is not in transformers: its GPT is `backbones/llamagen_gpt.LlamaGenModel` and its VQ tokenizer
`llamagen_vq.LlamaGenVQModel`, both with upstream's parameter names. The directory `load_pipeline` reads is
written from the released files by `convert_llamagen` (`hawk convert-llamagen`, llamagen_convert.py):
  config.json            the GPT's ModelArgs (LlamaGenConfig), model_type "llamagen", and "vq_config";
  model.safetensors      the GPT;  vq_model.safetensors  the VQ tokenizer;
  text_encoder/          t2i only: the T5 encoder (flan-t5-xl's, as transformers' T5EncoderModel saves it) and
                         its tokenizer.

Prompts are class labels (ImageNet ids 0..999 for the released models): ints, or strings of digits as
`hawk generate --prompts` lines give them; `input_ids` rows are [[label]], and the label num_classes is the
null class (an unconditional image). The unconditional CFG row is [num_classes], as upstream `generate` builds
it. t2i prompts are text: lowercased and stripped (upstream's T5Embedder with use_text_preprocessing=False; its
default also cleans captions of URLs, HTML and some punctuation, which plain prompts do not have), tokenized to
at most 120 T5 ids (eos included, as upstream truncates), left-padded to 120; `input_ids` rows are T5 ids
(without padding). The CFG branch is the learned null caption masked like its prompt (backbones/llamagen.py).
Upstream applies guidance only when cfg_scale > 1 (below 1 it generates without it), so a cfg_scale below 1 is
refused here rather than computed differently; 1 is no guidance. Defaults: upstream's sample scripts' (c2i: CFG
4, temperature 1, top-k 2000; t2i: CFG 7.5, temperature 1, top-k 1000). Pixels are in [-1, 1] (upstream saves
them with value_range=(-1, 1)).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..backbones.llamagen import llamagen_grid
from ..backbones.llamagen_gpt import LlamaGenConfig, LlamaGenModel, rotary_table, state_mismatch
from ..checks import as_int, check_ids_in, exactly_one, id_rows, text_prompts
from ..grid import ImageGrid
from .base import ImagePipeline, PromptRows
from .images import check_code_grid, one_layout
from .llamagen_vq import LlamaGenVQConfig, LlamaGenVQModel

WEIGHTS, VQ_WEIGHTS, TEXT_ENCODER = "model.safetensors", "vq_model.safetensors", "text_encoder"
T2I_DEFAULTS = dict(cfg_scale=7.5, temperature=1.0, top_k=1000)  # upstream sample_t2i.py


def read_config(model_dir: Path) -> tuple[LlamaGenConfig, LlamaGenVQConfig]:
    """config.json -> (the GPT's config, the VQ tokenizer's); ValueError naming the file when it is not one."""
    path = Path(model_dir) / "config.json"
    values = json.loads(path.read_text())
    try:
        vq = LlamaGenVQConfig.from_dict(values.pop("vq_config"))
        return LlamaGenConfig.from_dict(values), vq
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"model_dir: {str(path)!r} is not a LlamaGen config ({exc})") from None


class LlamaGenPipeline(ImagePipeline):
    family = "llamagen"
    cfg_branch = "the null class (c2i) or the null caption (t2i), as upstream samples"
    model_class = "LlamaGenModel"  # hawk_kernels' own (load_model), not a transformers class
    defaults = dict(cfg_scale=4.0, temperature=1.0, top_k=2000)
    required_config = ("vq_config",)
    processor_files = ()  # c2i: class labels, no tokenizer; t2i: check_model loads text_encoder/'s
    decode_batch = 8  # images per VQ decoder call (its activations grow with the batch)

    @classmethod
    def load_model(cls, model_dir: Path, device: torch.device, dtype, attn_implementation=None) -> LlamaGenModel:
        """The GPT from model.safetensors (built on the meta device, so no random weights are made first), in
        `dtype` (None: the checkpoint's own), eval mode, on `device`."""
        from safetensors.torch import load_file

        if attn_implementation not in (None, "sdpa"):
            raise ValueError(f"attn_implementation: LlamaGen's GPT runs torch's scaled_dot_product_attention; "
                             f"expected None or 'sdpa', got {attn_implementation!r}")
        config, _ = read_config(model_dir)
        path = Path(model_dir) / WEIGHTS
        state = load_file(str(path))
        mismatch = state_mismatch(state, config)
        if mismatch is not None:
            raise ValueError(f"model_dir: {str(path)!r} does not hold this config's LlamaGen GPT ({mismatch})")
        with torch.device("meta"):
            model = LlamaGenModel(config)
        model.load_state_dict(state, assign=True)
        model.rotary = rotary_table(config)  # a computed table, not a weight: still on the meta device
        model = model.to(device=device, dtype=dtype or next(iter(state.values())).dtype).eval()
        if config.gpt_type == "t2i":  # loaded in the GPT's dtype after the cast, as upstream's T5Embedder loads it
            model.text_encoder = _text_encoder(Path(model_dir), model.dtype).to(device)
        return model

    def check_model(self) -> None:
        if not isinstance(self.model, LlamaGenModel):
            raise TypeError(f"model: expected a LlamaGenModel, got {type(self.model).__name__}")
        self.grid = llamagen_grid(self.model)
        self.num_classes = int(self.model.config.num_classes)
        self.captions = self.model.config.gpt_type == "t2i"
        if self.captions:
            self.defaults = T2I_DEFAULTS
            if self.processor is None and self.model_dir is not None:
                from transformers import AutoTokenizer

                self.processor = AutoTokenizer.from_pretrained(str(self.model_dir / TEXT_ENCODER), local_files_only=True)
        self.vq_model = None
        if self.model_dir is not None and (self.model_dir / VQ_WEIGHTS).is_file():
            _, vq_config = read_config(self.model_dir)
            self.vq_model = LlamaGenVQModel.from_checkpoint(self.model_dir / VQ_WEIGHTS, vq_config).to(self.device)

    @property
    def has_pixel_decoder(self) -> bool:
        return self.vq_model is not None

    @property
    def image_size(self) -> int:
        """Pixels per side: codes per side x the VQ tokenizer's downsampling (16 for the released VQ-16)."""
        ppc = self.vq_model.config.pixels_per_code if self.vq_model is not None else 16
        return self.grid.width * ppc

    def layout(self, size) -> ImageGrid:
        return one_layout(size, self.grid, self.image_size, "this LlamaGen model")

    def _prepare(self, mode, size, cfg_scale, temperature, top_k, top_p):
        grid, sampling = super()._prepare(mode, size, cfg_scale, temperature, top_k, top_p)
        if sampling.cfg_scale < 1:
            raise ValueError(f"cfg_scale: LlamaGen applies guidance only above 1 (its own generate ignores "
                             f"{sampling.cfg_scale}); expected 1 (no guidance) or more")
        return grid, sampling

    def prompt_rows(self, prompts, input_ids, grid: ImageGrid) -> PromptRows:
        exactly_one(prompts, input_ids)
        if self.captions:
            return self._caption_rows(prompts, input_ids)
        if prompts is not None:
            rows, argument = [[self._label(p, i)] for i, p in enumerate(_listed(prompts))], "prompts"
        else:
            rows, argument = id_rows(input_ids, self.num_classes + 1), "input_ids"
            for i, row in enumerate(rows):
                if len(row) != 1:
                    raise ValueError(f"input_ids: row {i} has {len(row)} ids; a LlamaGen c2i prompt is one class "
                                     f"label (0..{self.num_classes - 1}, or {self.num_classes}: unconditional)")
        return PromptRows(rows, [[self.num_classes] for _ in rows], argument)

    def _caption_rows(self, prompts, input_ids) -> PromptRows:
        """t2i: T5 ids left-padded to cls_token_num, and the null-caption row masked alike (backbones/llamagen)."""
        width, backbone = self.model.config.cls_token_num, self.backbone(self.grid)
        if prompts is not None:
            tokenizer = self.tokenizer("prompts")
            texts = [text.lower().strip() for text in text_prompts("prompts", prompts)]
            rows, argument = [tokenizer(t, max_length=width, truncation=True).input_ids for t in texts], "prompts"
        else:  # an output's prompt (sequences[i][:width]) starts with the caption's left padding: dropped here
            rows, argument = id_rows(input_ids, backbone.null_caption_id), "input_ids"
            rows = [row[next((k for k, t in enumerate(row) if t != backbone.pad_id), len(row)):] for row in rows]
        for i, row in enumerate(rows):
            if not row or len(row) > width or backbone.pad_id in row:
                raise ValueError(f"{argument}: row {i} has {len(row)} T5 ids{' with the pad id' * (backbone.pad_id in row)}"
                                 f"; a LlamaGen t2i caption is 1 to {width} ids, none of them the pad id "
                                 f"{backbone.pad_id} but its left padding")
        pad = lambda row, fill: [backbone.pad_id] * (width - len(row)) + list(fill)  # noqa: E731
        return PromptRows([pad(r, r) for r in rows], [pad(r, [backbone.null_caption_id] * len(r)) for r in rows],
                          argument)

    def _label(self, prompt, index: int) -> int:
        """A class label: an int, or a string of decimal digits (a --prompts line; isdigit() would pass '³', which
        int() refuses)."""
        text = prompt.strip() if isinstance(prompt, str) else None
        if text is not None and not text.isdecimal():
            raise ValueError(f"prompts: prompt {index} is {prompt!r}; LlamaGen c2i prompts are class labels "
                             f"(0..{self.num_classes - 1}, ImageNet ids for the released models), not text")
        return as_int(f"prompts: prompt {index}", int(text) if text is not None else prompt, 0, self.num_classes - 1)

    def codes(self, image_tokens: torch.Tensor) -> torch.Tensor:
        return check_ids_in("image_tokens", image_tokens, *self.grid.image_token_range, "LlamaGen VQ codes")

    @torch.no_grad()
    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor | None:
        """[B, H, W] codes -> [B, 3, h, w] in about [-1, 1]; None without the VQ tokenizer."""
        if self.vq_model is None:
            return None
        codes = check_ids_in("codes", codes, *self.grid.image_token_range, "LlamaGen VQ codes")
        check_code_grid(codes, (self.grid.height, self.grid.width), f"this LlamaGen model decodes "
                        f"{self.grid.height} x {self.grid.width} codes per image")
        return self.in_vq_batches(lambda chunk: self.vq_model.decode_codes(chunk.to(self.device)).float().cpu(),
                                  codes)

    def to_images(self, pixels: torch.Tensor) -> list:
        """[B, 3, h, w] pixels in [-1, 1] -> RGB PIL images as upstream makes its PNGs: clamp(127.5 x + 128, 0, 255)
        truncated (sample_c2i_ddp.py, sample_t2i_ddp.py; save_image's value_range=(-1, 1) rounds alike), i.e. rounded
        to the nearest level, not to_pil's truncation of 255 (x + 1) / 2 (half a level darker on average)."""
        from PIL import Image

        levels = torch.clamp(127.5 * pixels.detach().float().cpu() + 128.0, 0, 255).to(torch.uint8)
        return [Image.fromarray(image) for image in levels.permute(0, 2, 3, 1).numpy()]

    @torch.no_grad()
    def encode_images(self, images, size=None) -> torch.Tensor:
        """Images -> VQ codes [B, H, W] (LlamaGen image tokens are the codes): `image_pixels` at image_size px
        square, normalised to [-1, 1] as upstream's training data, then the VQ tokenizer's encoder."""
        if self.vq_model is None:
            raise ValueError(f"images: encoding needs the VQ tokenizer ({VQ_WEIGHTS} in the model directory)")
        grid = self.layout(size)
        pixels = self.image_pixels(images, grid, self.image_size, self.image_size)
        codes = self.in_vq_batches(lambda chunk: self.vq_model.encode(chunk.to(self.device)).cpu(), pixels)
        return codes.reshape(len(pixels), grid.height, grid.width).long()

    def default_image_processor(self):
        """Pixels / 255 normalised with mean = std = 0.5, i.e. to [-1, 1] (upstream's Normalize(0.5, 0.5))."""
        from transformers import JanusImageProcessorPil

        return JanusImageProcessorPil(image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _text_encoder(model_dir: Path, dtype: torch.dtype | None = None):
    """The T5 encoder saved beside a t2i GPT (text_encoder/), loaded offline in `dtype` by from_pretrained, which
    keeps T5's _keep_in_fp32_modules (`wo`) in float32 under float16, as upstream's from_pretrained(torch_dtype=)
    does (FLAN-T5's feed-forward outputs overflow float16; a plain .to(float16) would cast them too)."""
    from transformers import T5EncoderModel

    if not (model_dir / TEXT_ENCODER / "config.json").is_file():
        raise FileNotFoundError(f"model_dir: a t2i LlamaGen directory holds its T5 encoder in "
                                f"{str(model_dir / TEXT_ENCODER)!r} (convert_llamagen writes it); it is missing")
    return T5EncoderModel.from_pretrained(str(model_dir / TEXT_ENCODER), local_files_only=True, dtype=dtype).eval()


def _listed(prompts) -> list:
    """One prompt (an int or a string) or a non-empty list / tuple of them -> a list."""
    listed = [prompts] if isinstance(prompts, (int, str)) else prompts
    if not isinstance(listed, (list, tuple)) or not listed:
        raise TypeError(f"prompts: expected a class label (int or digit string) or a non-empty list of them, got "
                        f"{type(prompts).__name__}")
    return list(listed)
