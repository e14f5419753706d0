"""The bundled default pipeline: plain-English prompt -> 28x28 digit image, with any decoding mode (drafts.MODES:
AR, Medusa, vertical, Hawk, Jacobi without heads, Hawk + Jacobi). It is an ImagePipeline like the model families
(pipelines/base.py): the same `generate`, `decoder`, `layout` and `PipelineOutput`.

    pipe = hawk_kernels.load_demo_pipeline()
    out = pipe.generate(["a handwritten digit seven"], mode="hawk", seed=0)
    out.images[0].save("seven.png"); out.num_forward_passes
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ...checks import (as_device, as_dtype, check_attn_implementation, check_compile, exactly_one, id_rows,
                       text_prompts)
from ...grid import ImageGrid
from ...heads import CONFIG_NAME, TREE_RATES_FILE, DraftHeads, load_accept_rates  # noqa: F401  (TREE_RATES_FILE:
#   for recipes)
from ...hub import is_repo_id, local_dir
from ..base import ImagePipeline, PromptRows
from ..images import fit_images
from .model import ASSET_DIR, demo_image_grid, load_demo_backbone, load_demo_tokenizer

HEADS_DIR = ASSET_DIR / "heads"
DEFAULT_PROMPTS = ("a handwritten digit zero", "the number 3", "a picture of a five", "handwritten 7",
                   "digit eight", "a handwritten digit two")


class DemoPipeline(ImagePipeline):
    """The bundled MNIST model: prompts in the demo's words (`vocab`), one 14x14-code layout, PatchVQ pixels."""

    family = "demo"  # what data sets and heads made with this model record (training.distillation.model_identity)
    cfg_branch = "the image start alone"
    model_class = "LlamaForCausalLM"
    defaults = dict(cfg_scale=3.0, temperature=1.0, top_k=None)

    def __init__(self, model, vq, vocab, heads: DraftHeads | None = None, accept_rates: dict | None = None):
        self.vq, self.vocab = vq, vocab
        self.grid = demo_image_grid(vocab)  # the one layout
        super().__init__(model, None, heads, accept_rates, model_dir=ASSET_DIR)

    def layout(self, size=None) -> ImageGrid:
        """The one layout (size None, 28 or (28, 28))."""
        return demo_layout(self.vq, self.vocab, size)

    def prompt_rows(self, prompts, input_ids, grid: ImageGrid) -> PromptRows:
        """Prompts in the demo's words (unknown words raise), or token-id rows; CFG's branch is the
        unconditional prompt (image start alone)."""
        exactly_one(prompts, input_ids)
        if prompts is not None:
            rows, argument = [self.vocab.encode_prompt(p) for p in text_prompts("prompts", prompts)], "prompts"
        else:
            rows, argument = id_rows(input_ids, self.vocab.vocab_size), "input_ids"
        return PromptRows(rows, [self.vocab.unconditional_prompt()] * len(rows), argument)

    def encode(self, prompts):
        """Text prompts -> (ids [B, L] left-padded with the pad token, attention mask [B, L]) on the device, for
        driving a decoder directly (`pipe.decoder(mode).start(ids, attention_mask=mask, ...)`)."""
        ids = self.prompt_rows(prompts, None, self.grid).conditional
        width = max(map(len, ids))
        tokens = torch.tensor([[self.vocab.pad_id] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        return tokens, mask

    def codes(self, image_tokens: torch.Tensor) -> torch.Tensor:
        return (image_tokens - self.vocab.image_lo).cpu()

    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, 14, 14] codes -> [B, 1, 28, 28] grayscale pixels in [-1, 1] (PatchVQ's uint8 / 127.5 - 1)."""
        return torch.from_numpy(self.vq.decode(codes)).float()[:, None] / 127.5 - 1

    def to_images(self, pixels: torch.Tensor) -> list:
        """[B, 1, 28, 28] pixels -> grayscale ("L") PIL images, exactly PatchVQ's uint8 pixels."""
        from PIL import Image

        values = ((pixels[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        return [Image.fromarray(image) for image in values]

    def encode_images(self, images, size=None) -> torch.Tensor:
        """Real images -> the image tokens this model generates: [B, 14, 14] int64 on the CPU, vocabulary ids
        (PatchVQ code + vocab.image_lo, what `PipelineOutput.image_tokens` holds). `images`: a non-empty list or
        tuple of PIL images; each is converted to grayscale, center-cropped to a square and resized to 28 x 28
        (`fit_images`), then PatchVQ-encoded. size: None or 28 (the one layout)."""
        self.layout(size)
        side = self.vq.image_size
        pixels = np.stack([np.asarray(image) for image in fit_images(images, side, side, mode="L")])
        return self.vq.encode(pixels) + self.vocab.image_lo


def demo_layout(vq, vocab, size=None) -> ImageGrid:
    """The demo's one layout, for size None, 28 or (28, 28) px (the VQ's image size); ValueError otherwise."""
    side = vq.image_size
    if size not in (None, side, (side, side)):
        raise ValueError(f"size: the demo model has one layout ({side}x{side} px), got {size!r}")
    return demo_image_grid(vocab)


def load_demo_pipeline(device: str | torch.device | None = None, dtype: torch.dtype | str | None = torch.float32,
                       heads: str | Path | DraftHeads | None = None, compile: bool | str = "auto",
                       attn_implementation: str = "sdpa") -> DemoPipeline:
    """Bundled backbone + trained heads, offline; the GPU when present, else the CPU. heads: a directory of
    heads to use instead of the bundled ones (`hawk train-heads --out DIR`; with the tree_rates.json measured
    with them, if any), or a DraftHeads (generic tree priors). compile: HawkDecoder's word for the compiled step
    ("auto": on CUDA; True; False). dtype: a floating torch.dtype or its name ("bfloat16"; None: float32).
    attn_implementation: as in load_pipeline."""
    compile = check_compile(compile)
    device = as_device("device", device or ("cuda" if torch.cuda.is_available() else "cpu"))
    check_attn_implementation(attn_implementation, device)
    dtype = as_dtype("dtype", dtype) or torch.float32  # a torch.dtype or its name, as load_pipeline takes it
    if heads is not None and not isinstance(heads, (str, Path, DraftHeads)):
        raise TypeError(f"heads: expected a directory or DraftHeads, got {type(heads).__name__}")
    if isinstance(heads, (str, Path)) and not Path(heads).is_dir():
        if not is_repo_id(str(heads)):
            raise FileNotFoundError(f"heads: no such directory {str(heads)!r}")
        heads = local_dir("heads", heads, CONFIG_NAME)  # a Hub repository of heads for the demo model
    model = load_demo_backbone(dtype=dtype, device=device, attn_implementation=attn_implementation or "sdpa")
    vq, vocab = load_demo_tokenizer()
    if isinstance(heads, DraftHeads):
        pipe = DemoPipeline(model, vq, vocab, heads.to(device))
    else:
        heads_dir = Path(heads) if heads is not None else HEADS_DIR
        loaded = DraftHeads.from_pretrained(str(heads_dir), dtype=dtype, device=device) if heads_dir.exists() else None
        pipe = DemoPipeline(model, vq, vocab, loaded, load_accept_rates(heads_dir) if loaded else None)
    pipe.compile = compile
    return pipe


def __getattr__(name: str):
    if name == "DemoOutput":  # the demo's old output type: the demo now returns what every pipeline returns
        from ..rows import PipelineOutput

        warnings.warn("DemoOutput is deprecated: the demo returns PipelineOutput (hawk_kernels.pipelines)",
                      DeprecationWarning, stacklevel=2)
        return PipelineOutput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
