"""The bundled default pipeline: plain-English prompt -> digit image, with AR, Medusa, vertical or Hawk decoding.

    pipe = hawk_kernels.load_demo_pipeline()
    out = pipe.generate(["a handwritten digit seven"], mode="hawk", seed=0)
    out.images[0].save("seven.png"); out.num_forward_passes
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ...checks import as_device, text_prompts
from ...decoder import HawkDecoder, HawkOutput
from ...heads import DraftHeads
from .model import ASSET_DIR, demo_image_grid, load_demo_backbone, load_demo_tokenizer

HEADS_DIR = ASSET_DIR / "heads"
TREE_RATES_FILE = "tree_rates.json"  # beside the heads they were measured with
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
    def __init__(self, model, heads: DraftHeads | None, vq, vocab, device, accept_rates: dict | None = None):
        self.model, self.heads, self.vq, self.vocab, self.device = model, heads, vq, vocab, torch.device(device)
        # measured acceptance per (depth, rank) for each mode (python/calibrate_tree.py): shapes the trees
        self.accept_rates = accept_rates or {}
        self.grid = demo_image_grid(vocab)
        self._decoders: dict = {}

    def decoder(self, mode: str, num_nodes: int = 32) -> HawkDecoder:
        key = (mode, num_nodes)
        if key not in self._decoders:
            self._decoders[key] = HawkDecoder(self.model, self.heads, self.grid, mode=mode, num_nodes=num_nodes,
                                              accept_rates=self.accept_rates.get(mode))
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


def load_demo_pipeline(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                       heads_dir: str | Path | None = None) -> DemoPipeline:
    """Bundled backbone + trained heads, offline; the GPU when present, else the CPU. heads_dir: heads to use
    instead of the bundled ones (with their tree_rates.json, if any)."""
    device = as_device("device", device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype such as torch.float32, got {dtype!r}")
    if heads_dir is not None and not Path(heads_dir).is_dir():
        raise FileNotFoundError(f"heads_dir: no such directory {str(heads_dir)!r}")
    model = load_demo_backbone(dtype=dtype, device=device)
    vq, vocab = load_demo_tokenizer()
    heads_dir = Path(heads_dir) if heads_dir is not None else HEADS_DIR
    heads = DraftHeads.from_pretrained(str(heads_dir), dtype=dtype, device=device) if heads_dir.exists() else None
    rates_path = Path(heads_dir) / TREE_RATES_FILE
    rates = json.loads(rates_path.read_text())["rates"] if heads is not None and rates_path.exists() else None
    return DemoPipeline(model, heads, vq, vocab, device, rates)
