"""The Chameleon / Lumina-mGPT VQGAN *decoder*: codes -> pixels. transformers ships only the encoder
(`ChameleonVQVAE`), so this module mirrors the decoder of the public Chameleon VQGAN (taming-transformers'
architecture, as Meta's `vqgan.ckpt` and Lumina-mGPT use it) and loads that checkpoint through a key converter.

Architecture (sized by transformers' `ChameleonVQVAEConfig`, the encoder's own config): codebook lookup
(num_embeddings x embed_dim, no normalisation) -> post_quant_conv (embed_dim -> latent_channels) -> conv_in ->
mid (ResNet, attention, ResNet) -> one level per channel multiplier from the deepest up, each num_res_blocks + 1
ResNet blocks (attention where the level's resolution is in attn_resolutions) then nearest x2 + conv except at
the top -> GroupNorm(32), swish, conv_out to 3 channels. 2^(levels - 1) px per code (16 for Chameleon).

Checkpoint names -> ours (`convert_public_state_dict`): `decoder.X` -> `X`, except the upsampling levels,
which the public model stores top-first (`decoder.up.0` is the full-resolution level) and we store in the order
they run (`up.0` is the deepest); `quantize.embedding.weight` -> `codebook.weight`; `post_quant_conv.*` kept;
the encoder, `quant_conv` and training-only entries (`loss.*`) are dropped.

The same checkpoint's *encoder* (`vq_encoder_from_checkpoint`) loads into transformers' own `ChameleonVQVAE`: its
encoder, quantizer and quant convolutions already carry the public checkpoint's names.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2, self.conv2 = _norm(out_channels), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1 convolutions for q, k, v and the output."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, height, width = h.shape
        q, k, v = (proj(h).reshape(b, c, height * width) for proj in (self.q, self.k, self.v))
        weights = torch.softmax(q.transpose(1, 2) @ k * c**-0.5, dim=-1)  # [b, hw (query), hw (key)]
        out = (v @ weights.transpose(1, 2)).reshape(b, c, height, width)
        return x + self.proj_out(out)


class UpLevel(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, blocks: int, attention: bool, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels)
                                   for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(out_channels) for _ in range(blocks if attention else 0))
        self.upsample = nn.Module() if upsample else None
        if upsample:
            self.upsample.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if self.upsample is not None:
            x = self.upsample.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class ChameleonVQGANDecoder(nn.Module):
    """codes [B, H, W] -> pixels [B, 3, H * 2^(levels-1), W * 2^(levels-1)] in about [-1, 1]."""

    def __init__(self, config):
        """config: transformers' ChameleonVQVAEConfig (model.config.vq_config)."""
        super().__init__()
        mult, base = list(config.channel_multiplier), config.base_channels
        attn_resolutions = set(config.attn_resolutions or ())
        resolution = config.resolution // 2 ** (len(mult) - 1)  # at the deepest level
        channels = base * mult[-1]
        self.codebook = nn.Embedding(config.num_embeddings, config.embed_dim)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.latent_channels, 1)
        self.conv_in = nn.Conv2d(config.latent_channels, channels, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.block_2 = ResnetBlock(channels, channels), ResnetBlock(channels, channels)
        self.mid.attn_1 = AttnBlock(channels) if config.attn_type == "vanilla" else nn.Identity()
        self.up = nn.ModuleList()
        for level in reversed(range(len(mult))):  # deepest first: the order they run
            self.up.append(UpLevel(channels, base * mult[level], config.num_res_blocks + 1,
                                   resolution in attn_resolutions, upsample=level != 0))
            channels, resolution = base * mult[level], resolution * (2 if level != 0 else 1)
        self.norm_out, self.conv_out = _norm(channels), nn.Conv2d(channels, 3, 3, padding=1)

    @property
    def pixels_per_code(self) -> int:
        return 2 ** (len(self.up) - 1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        z = self.post_quant_conv(self.codebook(codes).permute(0, 3, 1, 2))  # [B, latent, H, W]
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in self.up:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @classmethod
    def from_checkpoint(cls, path: str | Path, config) -> "ChameleonVQGANDecoder":
        """Load the public VQGAN checkpoint (`vqgan.ckpt`: {"state_dict": ...}, or a bare state dict)."""
        decoder = cls(config)
        converted = convert_public_state_dict(read_checkpoint(path), len(config.channel_multiplier))
        return load_checked(decoder, converted, path, "decoder")


def read_checkpoint(path: str | Path) -> dict:
    """The state dict of a public VQGAN checkpoint (`{"state_dict": ...}` as Meta's vqgan.ckpt, or bare): a dict
    of names to tensors; ValueError naming the file when it is not one (unreadable, not a torch file, another
    object)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - empty, text, truncated, unpicklable, unreadable: all "not a checkpoint"
        detail = str(exc).strip().splitlines()[:1]
        raise ValueError(f"path: {str(path)!r} is not a readable torch checkpoint of the VQGAN "
                         f"({': '.join([type(exc).__name__] + detail)})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"path: {str(path)!r} holds a {type(state).__name__}, expected a VQGAN state dict (names to "
                         f"tensors, or {{'state_dict': ...}} as Meta's vqgan.ckpt)")
    return state


def vq_encoder_from_checkpoint(path: str | Path, vqmodel: nn.Module) -> nn.Module:
    """A new transformers `ChameleonVQVAE` shaped like `vqmodel` (the model's own, `model.model.vqmodel`) with
    the encoder, quantizer and quant convolutions of the public checkpoint at `path` (float32, eval mode)."""
    return load_checked(type(vqmodel)(vqmodel.config).float(), read_checkpoint(path), path, "encoder")


def load_checked(module: nn.Module, state: dict, path, part: str) -> nn.Module:
    """Load the entries of `state` that `module` has (others are ignored), in eval mode; ValueError naming the
    checkpoint when one is missing, mis-shaped, not floating point or not finite (NaN weights decode to black)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or wrong:
        raise ValueError(f"path: {str(path)!r} does not hold a VQGAN {part} of this model's vq_config "
                         f"(missing {missing[:4]}{'...' if len(missing) > 4 else ''}, wrong shapes {wrong[:4]})")
    for key in sorted(k for k, v in expected.items() if v.is_floating_point()):
        if not state[key].is_floating_point():
            raise ValueError(f"path: {str(path)!r}: the VQGAN {part} weight {key} is {state[key].dtype}, "
                             f"expected floating-point weights")
        if not bool(torch.isfinite(state[key]).all()):
            raise ValueError(f"path: {str(path)!r}: the VQGAN {part} weight {key} holds NaN or infinite values")
    module.load_state_dict({k: state[k] for k in expected})
    return module.eval()


_UP = re.compile(r"^up\.(\d+)\.")


def convert_public_state_dict(state: dict, levels: int) -> dict:
    """Public VQGAN checkpoint names -> this module's names (see the module docstring)."""
    out = {}
    for key, value in state.items():
        if key.startswith("quantize.embedding."):
            out["codebook." + key[len("quantize.embedding."):]] = value
        elif key.startswith("post_quant_conv."):
            out[key] = value
        elif key.startswith("decoder."):
            name = key[len("decoder."):]
            out[_UP.sub(lambda m: f"up.{levels - 1 - int(m.group(1))}.", name)] = value
    return out
