"""Tiny LlamaGen releases for tests: upstream's own modules (the transcriptions in llamagen_reference*.py) with
random weights, saved as upstream ships them ({"model": state_dict} torch files), and converted into the
directory load_pipeline reads, as a user would with `hawk convert-llamagen`."""
from __future__ import annotations

from pathlib import Path

import torch

from tests import llamagen_reference as gpt_reference
from tests import llamagen_reference_vq as vq_reference

GPT = dict(dim=64, n_layer=2, n_head=4, num_classes=10, vocab_size=64, block_size=16)  # 4 x 4 codes
VQ = dict(codebook_size=64, codebook_embed_dim=8, encoder_ch_mult=[1, 2], decoder_ch_mult=[1, 2], z_channels=32,
          ch=32, num_res_blocks=1)  # 2 px per code: 8 px images
IMAGE_SIZE = 8


def reference_gpt(seed: int = 0, std: float = 0.3, **overrides) -> gpt_reference.Transformer:
    """Upstream's Transformer with every weight random (upstream zeroes the output head at init: a sharp random
    one gives laws with clear winners, so greedy comparisons test something)."""
    torch.manual_seed(seed)
    model = gpt_reference.Transformer(gpt_reference.ModelArgs(**{**GPT, **overrides})).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, std)
        for layer in model.layers:
            layer.attention_norm.weight.fill_(1.0)
            layer.ffn_norm.weight.fill_(1.0)
    return model


def reference_vq(seed: int = 1) -> vq_reference.VQModel:
    torch.manual_seed(seed)
    model = vq_reference.VQModel(vq_reference.ModelArgs(**VQ)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


def build_llamagen_release(directory, seed: int = 0, **gpt_overrides) -> tuple[Path, Path]:
    """(c2i GPT file, VQ file) as upstream releases them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gpt_path, vq_path = directory / f"c2i_tiny_{IMAGE_SIZE}.pt", directory / "vq_tiny.pt"
    torch.save({"model": reference_gpt(seed, **gpt_overrides).state_dict()}, gpt_path)
    torch.save({"model": reference_vq(seed + 1).state_dict()}, vq_path)
    return gpt_path, vq_path


def build_llamagen(directory, seed: int = 0) -> Path:
    """A converted tiny LlamaGen directory (config.json, model.safetensors, vq_model.safetensors)."""
    from hawk_kernels.pipelines.llamagen_convert import convert_llamagen

    gpt_path, vq_path = build_llamagen_release(Path(directory) / "release", seed)
    return convert_llamagen(gpt_path, vq_path, Path(directory) / "model", IMAGE_SIZE, n_head=GPT["n_head"])
