"""The LlamaGen VQ image tokenizer (FoundationVision/LlamaGen, MIT licence): codes <-> pixels.

Mirrors the inference paths of upstream `tokenizer/tokenizer_image/vq_model.py` (`VQModel.decode_code`,
`VQModel.encode`) with the same state-dict names, so the released `vq_ds16_c2i.pt` ({"model": state_dict})
loads as it is: `encoder.conv_blocks.{i}.res/attn/downsample`, `encoder.mid.{0,1,2}`, `decoder.conv_blocks...`
(stored deepest level first, the order they run), `quantize.embedding.weight`, `quant_conv`, `post_quant_conv`.
Upstream's `quantize.codebook_used` buffer (a training-time usage window) is accepted in a checkpoint and ignored.

Architecture: taming-transformers' encoder / decoder without resolution-dependent attention: attention follows
each ResNet block of the deepest level only, GroupNorm(32), swish; downsampling pads right and bottom only
(asymmetric, as upstream); the codebook is l2-normalised before lookup and before the nearest-code search when
`codebook_l2_norm` (as the released tokenizers are). 2^(levels - 1) px per code: 16 for VQ-16, 8 for VQ-8.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .chameleon_vqgan import AttnBlock, ResnetBlock, _norm, load_checked


@dataclass(frozen=True)
class LlamaGenVQConfig:
    """The VQ model's shape. Defaults are the released VQ-16 tokenizer (`vq_ds16_c2i.pt`, `vq_ds16_t2i.pt`):

    - codebook_size=16384, codebook_embed_dim=8, codebook_l2_norm=True, z_channels=256: upstream
      `tokenizer/tokenizer_image/vq_model.py`, `ModelArgs` defaults (commit ce98ec4);
    - encoder_ch_mult = decoder_ch_mult = (1, 1, 2, 2, 4): `ModelArgs` defaults and the `VQ_16` constructor
      (`VQ_8` uses (1, 2, 2, 4): 8 px per code);
    - ch=128, num_res_blocks=2: `Encoder` / `Decoder` keyword defaults, which `VQModel` never overrides
      (exposed here so tests can build tiny models). ch * each multiplier must divide by 32 (GroupNorm(32)).

    Training-only `ModelArgs` fields (commit_loss_beta, entropy_loss_ratio, codebook_show_usage, dropout_p) do
    not change inference and are not fields here.
    """

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    codebook_l2_norm: bool = True
    encoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 256
    ch: int = 128
    num_res_blocks: int = 2

    def __post_init__(self):
        for name in ("codebook_size", "codebook_embed_dim", "z_channels", "ch", "num_res_blocks"):
            value = getattr(self, name)
            if not _is_positive_int(value):
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if not isinstance(self.codebook_l2_norm, bool):
            raise ValueError(f"codebook_l2_norm: expected a bool, got {self.codebook_l2_norm!r}")
        for name in ("encoder_ch_mult", "decoder_ch_mult"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not value or not all(_is_positive_int(m) for m in value):
                raise ValueError(f"{name}: expected a non-empty sequence of positive ints, got {value!r}")
            if any(self.ch * m % 32 for m in value):
                raise ValueError(f"{name}: ch * multiplier must divide by 32 (GroupNorm(32)); ch={self.ch}, "
                                 f"{name}={tuple(value)}")
            object.__setattr__(self, name, tuple(value))  # from JSON lists; frozen, so hashable

    @property
    def pixels_per_code(self) -> int:
        """Pixels per code along each side: the decoder upsamples x2 at every level but the top."""
        return 2 ** (len(self.decoder_ch_mult) - 1)

    def to_dict(self) -> dict:
        """JSON-able fields (multipliers as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "LlamaGenVQConfig":
        """The inverse of to_dict; ValueError naming an unknown key or a bad value (missing keys take defaults)."""
        if not isinstance(d, dict):
            raise ValueError(f"d: expected a dict of LlamaGenVQConfig fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(f"d: unknown LlamaGenVQConfig key(s) {unknown} (known: {sorted(known)})")
        return cls(**d)


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch pads convolutions symmetrically; upstream (taming-transformers) pads right and bottom only
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class _Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level (upstream's `conv_block`): ResNet blocks, each followed by attention at the deepest
    level, then the level's downsample (encoder) or upsample (decoder), if any."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, attention: bool,
                 downsample: bool = False, upsample: bool = False):
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels)
                                 for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(out_channels) for _ in range(blocks if attention else 0))
        self.downsample = _Downsample(out_channels) if downsample else None
        self.upsample = _Upsample(out_channels) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        for resample in (self.downsample, self.upsample):
            if resample is not None:
                x = resample(x)
        return x


def _mid(channels: int) -> nn.ModuleList:
    """ResNet, attention, ResNet at the deepest resolution (upstream's `mid`, indexed 0..2)."""
    return nn.ModuleList([ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(channels, channels)])


class _Encoder(nn.Module):
    def __init__(self, config: LlamaGenVQConfig):
        super().__init__()
        ch, mult, last = config.ch, config.encoder_ch_mult, len(config.encoder_ch_mult) - 1
        in_mult = (1,) + mult  # level i takes level i-1's channels (conv_in's for the first)
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList(
            _Level(ch * in_mult[i], ch * mult[i], config.num_res_blocks, attention=i == last, downsample=i != last)
            for i in range(last + 1))
        channels = ch * mult[-1]
        self.mid = _mid(channels)
        self.norm_out, self.conv_out = _norm(channels), nn.Conv2d(channels, config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in (*self.conv_blocks, *self.mid):
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class _Decoder(nn.Module):
    def __init__(self, config: LlamaGenVQConfig):
        super().__init__()
        ch, mult = config.ch, config.decoder_ch_mult
        channels = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, channels, 3, padding=1)
        self.mid = _mid(channels)
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(len(mult))):  # deepest first: upstream's storage order and the order they run
            self.conv_blocks.append(_Level(channels, ch * mult[i], config.num_res_blocks + 1,
                                           attention=i == len(mult) - 1, upsample=i != 0))
            channels = ch * mult[i]
        self.norm_out, self.conv_out = _norm(channels), nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in (*self.mid, *self.conv_blocks):
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class _Quantizer(nn.Module):
    """The codebook (upstream `VectorQuantizer`'s `embedding`; its `codebook_used` buffer is training-only)."""

    def __init__(self, config: LlamaGenVQConfig):
        super().__init__()
        self.l2_norm = config.codebook_l2_norm
        self.embedding = nn.Embedding(config.codebook_size, config.codebook_embed_dim)

    def codebook(self) -> torch.Tensor:
        weight = self.embedding.weight
        return F.normalize(weight, p=2, dim=-1) if self.l2_norm else weight

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, C, H, W] -> index of the nearest code [B, H, W], by upstream's distance formula
        |z|^2 + |e|^2 - 2 z.e (on l2-normalised z and codebook when l2_norm)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        embedding = self.codebook()
        if self.l2_norm:
            flat = F.normalize(flat, p=2, dim=-1)
        distance = (flat**2).sum(dim=1, keepdim=True) + (embedding**2).sum(dim=1) - 2 * flat @ embedding.t()
        return distance.argmin(dim=1).reshape(b, h, w)


class LlamaGenVQModel(nn.Module):
    """LlamaGen's VQ tokenizer: `decode_codes` (codes -> pixels in about [-1, 1]) and `encode` (pixels -> codes),
    with upstream VQModel's state-dict names."""

    def __init__(self, config: LlamaGenVQConfig):
        super().__init__()
        if not isinstance(config, LlamaGenVQConfig):
            raise TypeError(f"config: expected a LlamaGenVQConfig, got {type(config).__name__}")
        self.config = config
        self.encoder, self.decoder = _Encoder(config), _Decoder(config)
        self.quantize = _Quantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_embed_dim, config.z_channels, 1)

    @property
    def pixels_per_code(self) -> int:
        return self.config.pixels_per_code

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, H, W] (integer, in [0, codebook_size)) -> pixels [B, 3, H * ppc, W * ppc], about [-1, 1]:
        upstream `decode_code(codes.flatten(1), [B, embed_dim, H, W])`."""
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.is_floating_point() \
                or codes.is_complex() or codes.dtype == torch.bool:
            raise ValueError(f"codes: expected an integer tensor [B, H, W], got "
                             f"{_describe(codes)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise ValueError(f"codes: values must lie in [0, {self.config.codebook_size}) (the codebook size), "
                             f"got [{int(codes.min())}, {int(codes.max())}]")
        quant = self.quantize.codebook()[codes.long()].permute(0, 3, 1, 2)  # [B, embed_dim, H, W]
        return self.decoder(self.post_quant_conv(quant))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, h, w] (floating, about [-1, 1]; h, w multiples of the encoder's px per code) -> codes
        [B, h / ppc, w / ppc] int64: upstream `encode(pixels)[2][2]`, reshaped to the grid."""
        step = 2 ** (len(self.config.encoder_ch_mult) - 1)
        if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or pixels.shape[1] != 3 \
                or not pixels.is_floating_point():
            raise ValueError(f"pixels: expected a floating tensor [B, 3, h, w], got {_describe(pixels)}")
        if pixels.shape[2] % step or pixels.shape[3] % step:
            # upstream's padded convolutions would crop silently: a grid that decodes to another size
            raise ValueError(f"pixels: height and width must be multiples of {step} (px per code), "
                             f"got {tuple(pixels.shape[2:])}")
        return self.quantize.nearest(self.quant_conv(self.encoder(pixels)))

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: LlamaGenVQConfig) -> "LlamaGenVQModel":
        """The model shaped by `config` with the weights of the LlamaGen VQ checkpoint at `path`, float32, eval
        mode; ValueError naming the file when a weight is missing, mis-shaped or not finite."""
        model = cls(config).float()
        return load_checked(model, read_vq_checkpoint(path), path, "tokenizer")


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__


def load_torch_file(path: str | Path, mmap: bool = False):
    """torch.load(weights_only=True) of an upstream file, allowing argparse.Namespace: upstream's training scripts
    save their `args` beside the weights (a Namespace of plain values, safe to load). mmap: memory-mapped where the
    file's format allows it (torch's legacy format does not)."""
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        if mmap:
            try:
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy format: read it whole (a corrupt file fails again below)
                pass
        return torch.load(str(path), map_location="cpu", weights_only=True)


def read_vq_checkpoint(path: str | Path) -> dict:
    """The state dict of a LlamaGen VQ checkpoint: `{"model": state_dict}` as released (`vq_ds16_c2i.pt`), a
    bare state dict, or a `.safetensors` file. ValueError naming `path` when it is unreadable or holds no state
    dict (a dict of names to tensors)."""
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file  # only safetensors files need it

            state = load_file(str(path), device="cpu")
        else:
            state = load_torch_file(path)
    except Exception as exc:  # noqa: BLE001 - missing, empty, text, truncated, unpicklable: all "not a checkpoint"
        detail = str(exc).strip().splitlines()[:1]
        raise ValueError(f"path: {str(path)!r} is not a readable LlamaGen VQ checkpoint "
                         f"({': '.join([type(exc).__name__] + detail)})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # upstream's training script saves {"model": ..., "optimizer": ..., ...}
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                           for k, v in state.items()):
        raise ValueError(f"path: {str(path)!r} holds a {type(state).__name__}, expected a LlamaGen VQ state dict "
                         f"(names to tensors, or {{'model': ...}} as the released vq_ds16_c2i.pt)")
    return state
