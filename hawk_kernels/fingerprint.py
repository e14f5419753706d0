"""A digest identifying a model's weights, so data sets and heads made for one model are not silently used with
another (`hawk distill` manifests, DraftHeadsConfig.model_fingerprint), whatever dtype it is loaded in.

Format "2.<names>.<values>": <names> is 16 hex digits of sha256 over every parameter's name and shape (compared
exactly); <values> holds, per parameter in name order, SAMPLES strided values rounded to bfloat16 (4 hex digits
each). `same_model` compares values with a tolerance: the same checkpoint loaded in float32, bfloat16 or float16
differs by rounding (within 2^-7 of a value, plus float16's coarse steps near zero), another checkpoint by far
more. A hash of the rounded values (the first format: 16 hex digits, still read) cannot be dtype-independent:
float32 -> float16 -> bfloat16 differs from float32 -> bfloat16 for a few values in a hundred, so heads trained on
a float32 model were refused on the same model in float16.
"""
from __future__ import annotations

import hashlib

import torch

from .backbones.protocol import is_backbone

SAMPLES = 8  # strided values per parameter in <values>
# |a - b| <= RELATIVE * max(|a|, |b|) + ABSOLUTE * (the parameter's mean |value|) + FLOOR (float16's smallest step,
# which its subnormals round to)
RELATIVE, ABSOLUTE, FLOOR = 2**-5, 2**-9, 2**-24


def model_fingerprint(model) -> str:
    """The fingerprint (format 2, see the module docstring) of `model`'s parameters and buffers."""
    names, values = _signature(model)
    bits = values.view(torch.int16).to(torch.int32) & 0xFFFF
    return f"2.{names}." + "".join(f"{int(v):04x}" for v in bits.reshape(-1).tolist())


def same_model(recorded: str, model) -> bool:
    """Whether the fingerprint `recorded` names `model` (its weights in any dtype). A first-format fingerprint is
    compared with the first format's digest, exactly."""
    if not recorded.startswith("2."):
        return recorded == exact_digest(model)
    names, values = _signature(model)
    parts = recorded.split(".")
    if len(parts) != 3 or parts[1] != names or len(parts[2]) != 4 * values.numel():
        return False
    a, b = _decode(parts[2]).view(-1, SAMPLES), values.float()
    scale = torch.maximum(a.abs().mean(1, keepdim=True), b.abs().mean(1, keepdim=True))
    return bool(((a - b).abs() <= RELATIVE * torch.maximum(a.abs(), b.abs()) + ABSOLUTE * scale + FLOOR).all())


def _signature(model) -> tuple[str, torch.Tensor]:
    """(16 hex digits of sha256 over the names and shapes, [parameters, SAMPLES] bfloat16 samples)."""
    names = hashlib.sha256()
    values = []
    for name, param in _state(model):
        names.update(name.encode())
        names.update(str(tuple(param.shape)).encode())
        values.append(_samples(param, SAMPLES).to(torch.bfloat16))
    return names.hexdigest()[:16], torch.stack(values) if values else torch.zeros(0, SAMPLES, dtype=torch.bfloat16)


def short(fingerprint) -> str:
    """What messages show of a fingerprint: its names digest and the first values (the whole is thousands of
    characters for a 7B model)."""
    text = str(fingerprint)
    return text if len(text) <= 40 else text[:40] + "..."


def exact_digest(model) -> str:
    """The first format: sha256 (16 hex digits) over every parameter's name, shape and 64 strided values rounded
    to bfloat16. What heads and data sets made before format 2 record, and an exact identity where one dtype is
    meant (the draft heads a batch run's manifest names)."""
    digest = hashlib.sha256()
    for name, param in _state(model):
        sample = _strided(param, 64)
        if sample.dtype.is_floating_point:
            sample = sample.to(torch.bfloat16).float()
        digest.update(name.encode())
        digest.update(str(tuple(param.shape)).encode())
        digest.update(sample.cpu().double().numpy().tobytes())
    return digest.hexdigest()[:16]


def _state(model):
    model = model.model if is_backbone(model) else model  # an adapter: the model it adapts
    return sorted(model.state_dict().items())


def _strided(param: torch.Tensor, count: int) -> torch.Tensor:
    """At most `count` of `param`'s values, evenly strided over it (both formats sample the same way)."""
    flat = param.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // count)][:count]


def _samples(param: torch.Tensor, count: int) -> torch.Tensor:
    sample = _strided(param, count)
    if not sample.dtype.is_floating_point:  # integer buffers: their values, as floats
        sample = sample.double()
    sample = torch.nn.functional.pad(sample.float().cpu(), (0, count - sample.numel()))  # short parameters: zeros
    return sample.clamp(-3e38, 3e38)


def _decode(hexes: str) -> torch.Tensor:
    bits = torch.tensor([int(hexes[i:i + 4], 16) for i in range(0, len(hexes), 4)], dtype=torch.int32)
    bits = torch.where(bits >= 0x8000, bits - 0x10000, bits).to(torch.int16)
    return bits.view(torch.bfloat16).float().nan_to_num(0.0)
