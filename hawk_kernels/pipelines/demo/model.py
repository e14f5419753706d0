"""The bundled demo backbone: a small LlamaForCausalLM trained from scratch on tokenized MNIST digits.

Assets (hawk_kernels/assets/demo/): config.json + model.safetensors (fp16), vq_codebook.npz, vocab.json,
train_log.json. Everything loads offline. Recipe: python/train_demo_model.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .vocab import DemoVocab
from .vq import PatchVQ

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo"
VQ_FILE = "vq_codebook.npz"
VOCAB_FILE = "vocab.json"

# Backbone shape used for the bundled weights (see python/train_demo_model.py).
DEFAULT_ARCH = dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False)


def demo_config(vocab: DemoVocab, **overrides):
    """LlamaConfig for a demo backbone over `vocab` (untied lm_head by default)."""
    from transformers import LlamaConfig

    arch = {**DEFAULT_ARCH, **overrides}
    return LlamaConfig(vocab_size=vocab.vocab_size, pad_token_id=vocab.pad_id, bos_token_id=vocab.bos_id,
                       eos_token_id=vocab.image_end_id, rms_norm_eps=1e-5, attention_dropout=0.0,
                       hidden_act="silu", initializer_range=0.02, **arch)


def load_demo_tokenizer(asset_dir: str | os.PathLike | None = None) -> tuple[PatchVQ, DemoVocab]:
    """(PatchVQ, DemoVocab) of the bundled model."""
    d = Path(asset_dir) if asset_dir is not None else ASSET_DIR
    return PatchVQ.load(d / VQ_FILE), DemoVocab.load(d / VOCAB_FILE)


def load_demo_backbone(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                       asset_dir: str | os.PathLike | None = None, attn_implementation: str = "sdpa"):
    """The bundled LlamaForCausalLM (eval mode), loaded offline from the package assets."""
    from transformers import LlamaForCausalLM

    d = Path(asset_dir) if asset_dir is not None else ASSET_DIR
    if not (d / "model.safetensors").exists():
        raise FileNotFoundError(f"demo weights not found in {d}; run python/train_demo_model.py")
    model = LlamaForCausalLM.from_pretrained(str(d), dtype=dtype, local_files_only=True,
                                             attn_implementation=attn_implementation)
    return model.to(device).eval()


def demo_image_grid(vocab: DemoVocab | None = None):
    """The hawk_kernels.grid.ImageGrid of the demo layout (14x14, row_end after each row, image_end)."""
    from hawk_kernels.grid import ImageGrid

    vocab = vocab if vocab is not None else load_demo_tokenizer()[1]
    return ImageGrid(height=vocab.height, width=vocab.width, row_end_token=vocab.row_end_id,
                     image_token_range=vocab.image_token_range,
                     image_end_token=vocab.image_end_id)
