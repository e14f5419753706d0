"""The bundled default pipeline: plain-English prompt -> digit image, with any decoding mode (drafts.MODES: AR,
Medusa, vertical, Hawk, Jacobi without heads, Hawk + Jacobi).

    pipe = hawk_kernels.load_demo_pipeline()
    out = pipe.generate(["a handwritten digit seven"], mode="hawk", seed=0)
    out.images[0].save("seven.png"); out.num_forward_passes
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...checks import as_device, text_prompts
from ...decoder import HawkDecoder, HawkOutput
from ...drafts import jacobi_template
from ...heads import TREE_RATES_FILE, DraftHeads, load_accept_rates  # noqa: F401  (TREE_RATES_FILE: for recipes)
from ..base import fit_images
from .model import ASSET_DIR, demo_image_grid, load_demo_backbone, load_demo_tokenizer

HEADS_DIR = ASSET_DIR / "heads"
DEFAULT_PROMPTS = ("a handwritten digit zero", "the number 3", "a picture of a five", "handwritten 7",
                   "digit eight", "a handwritten digit two")


@dataclass
class DemoOutput:
    images: list  # PIL.Image per prompt (28x28, grayscale)
    codes: torch.Tensor  # [B, 14, 14] VQ code ids
    num_tokens: list[int]  # tokens generated per image, layout tokens included
    num_forward_passes: list[int]  # target passes after prefill, per image
    seconds: float  # wall time of the whole batch
    output: HawkOutput


class DemoPipeline:
    family = "demo"  # what data sets and heads made with this model record (distill.model_identity)
    defaults = dict(cfg_scale=3.0, temperature=1.0, top_k=None)  # generate()'s, named as the families name theirs

    def __init__(self, model, heads: DraftHeads | None, vq, vocab, device, accept_rates: dict | None = None):
        self.model, self.heads, self.vq, self.vocab, self.device = model, heads, vq, vocab, torch.device(device)
        # measured acceptance per (depth, rank) for each mode (python/calibrate_tree.py): shapes the trees
        self.accept_rates = accept_rates or {}
        self.grid = demo_image_grid(vocab)
        self._decoders: dict = {}

    def decoder(self, mode: str, num_nodes: int = 32) -> HawkDecoder:
        """The pipeline's decoder for (mode, num_nodes); Jacobi modes ("jacobi" needs no heads) get their tree
        with its reserved chain (drafts.jacobi_template)."""
        key = (mode, num_nodes)
        if key not in self._decoders:
            rates = self.accept_rates.get(mode)
            self._decoders[key] = HawkDecoder(self.model, self.heads, self.grid, mode=mode, num_nodes=num_nodes,
                                              accept_rates=rates,
                                              tree=jacobi_template(mode, self.heads, num_nodes, rates))
        return self._decoders[key]

    def encode(self, prompts):
        ids = [self.vocab.encode_prompt(p) for p in prompts]
        width = max(map(len, ids))
        tokens = torch.tensor([[self.vocab.pad_id] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        return tokens, mask

    @torch.no_grad()
    def generate(self, prompts, mode: str = "hawk", seed: int = 0, cfg_scale: float = 3.0,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 num_nodes: int = 32, progress: bool = False, decoder: HawkDecoder | None = None) -> DemoOutput:
        """decoder: decode with this HawkDecoder (e.g. an exploratory tree for calibration) instead of the
        pipeline's own for (mode, num_nodes)."""
        prompts = text_prompts("prompts", prompts)
        tokens, mask = self.encode(prompts)
        negative = torch.tensor([self.vocab.unconditional_prompt()], device=self.device)
        start = time.perf_counter()
        decoder = decoder or self.decoder(mode, num_nodes)
        out = decoder.generate(
            tokens, attention_mask=mask, negative_input_ids=negative if cfg_scale != 1.0 else None,
            cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, progress=progress)
        seconds = time.perf_counter() - start
        codes = (out.image_tokens - self.vocab.image_lo).cpu()
        from PIL import Image

        images = [Image.fromarray(img) for img in self.vq.decode(codes)]
        passes = [sum(1 for step in out.accepted_lengths if step[row] > 0) for row in range(len(prompts))]
        return DemoOutput(images, codes, [out.generated.shape[1]] * len(prompts), passes, seconds, out)

    def layout(self, size=None):
        """The one layout (size None, 28 or (28, 28)), as family pipelines' layout(size) answers."""
        side = self.vq.image_size
        if size not in (None, side, (side, side)):
            raise ValueError(f"size: the demo model generates {side}x{side} px images only, got {size!r}")
        return self.grid

    def encode_images(self, images, size=None) -> torch.Tensor:
        """Real images -> the image tokens this model generates: [B, 14, 14] int64 on the CPU, vocabulary ids
        (PatchVQ code + vocab.image_lo, what `output.image_tokens` holds). `images`: a non-empty list or tuple of
        PIL images; each is converted to grayscale, center-cropped to a square and resized to 28 x 28
        (`fit_images`), then PatchVQ-encoded. size: None or 28 (the one layout)."""
        self.layout(size)
        side = self.vq.image_size
        pixels = np.stack([np.asarray(image) for image in fit_images(images, side, side, mode="L")])
        return self.vq.encode(pixels) + self.vocab.image_lo


def load_demo_pipeline(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                       heads: str | Path | DraftHeads | None = None) -> DemoPipeline:
    """Bundled backbone + trained heads, offline; the GPU when present, else the CPU. heads: a directory of
    heads to use instead of the bundled ones (with the tree_rates.json measured with them, if any), or a
    DraftHeads (generic tree priors)."""
    device = as_device("device", device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype such as torch.float32, got {dtype!r}")
    if heads is not None and not isinstance(heads, (str, Path, DraftHeads)):
        raise TypeError(f"heads: expected a directory or DraftHeads, got {type(heads).__name__}")
    if isinstance(heads, (str, Path)) and not Path(heads).is_dir():
        raise FileNotFoundError(f"heads: no such directory {str(heads)!r}")
    model = load_demo_backbone(dtype=dtype, device=device)
    vq, vocab = load_demo_tokenizer()
    if isinstance(heads, DraftHeads):
        return DemoPipeline(model, heads.to(device), vq, vocab, device, None)
    heads_dir = Path(heads) if heads is not None else HEADS_DIR
    loaded = DraftHeads.from_pretrained(str(heads_dir), dtype=dtype, device=device) if heads_dir.exists() else None
    return DemoPipeline(model, loaded, vq, vocab, device, load_accept_rates(heads_dir) if loaded else None)
