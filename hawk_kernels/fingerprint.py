"""A short digest identifying a model's weights, so data sets and heads made for one model are not silently
used with another (`hawk distill` manifests, DraftHeadsConfig.model_fingerprint)."""
from __future__ import annotations

import hashlib

import torch

from .backbones.protocol import is_backbone


def model_fingerprint(model) -> str:
    """sha256 (16 hex digits) over every parameter's name, shape and 64 strided values rounded to bfloat16, so
    the same checkpoint loaded in float32, float16 or bfloat16 gives the same fingerprint."""
    model = model.model if is_backbone(model) else model  # an adapter: the model it adapts
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        flat = param.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64]
        if sample.dtype.is_floating_point:
            sample = sample.to(torch.bfloat16).float()
        digest.update(name.encode())
        digest.update(str(tuple(param.shape)).encode())
        digest.update(sample.cpu().double().numpy().tobytes())
    return digest.hexdigest()[:16]
