"""Draft heads: horizontal (Medusa-style) and vertical (Hawk) heads on a frozen backbone's hidden states.

The hidden state at body offset j is the one the backbone's lm_head turns into the law of offset j+1.
Horizontal head i (1..num_horizontal) predicts offset j+1+i; vertical head d (1..vertical_depth) predicts
offset j+1+S*d, the token d rows below (S = row stride). Each head is `num_layers` ResBlocks
(z + SiLU(W z + b), W zero-initialised so a fresh head starts as the lm_head) then a projection: the
backbone's frozen lm_head (shared, the paper's configuration) or a head-owned one.

Weights are stacked tensors ([heads, layers, d, d]) so that one fused op runs every head at once.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import ops
from .checks import as_bool, as_device, as_dtype, as_int
from .hub import is_repo_id, local_dir

CONFIG_NAME = "draft_heads_config.json"
WEIGHTS_NAME = "draft_heads.safetensors"
TREE_RATES_FILE = "tree_rates.json"  # acceptance per mode measured with these heads (python/calibrate_tree.py)
# Bounds on a head set. Weights grow as heads * layers * hidden_size**2 (64 heads of 1 layer at hidden 4096:
# 4.3 GB in float32); a tree drafts at most a few tokens per head, and the paper's heads have one layer, so
# larger counts are typos (and were allocated before: 10**6 heads took minutes and gigabytes).
MAX_HEADS = 64  # num_horizontal + vertical_depth
MAX_LAYERS = 16  # num_layers (ResBlocks per head)


@dataclass(frozen=True)
class DraftHeadsConfig:
    """What a head set is: sizes, head counts (num_horizontal + vertical_depth in [1, MAX_HEADS], num_layers in
    [1, MAX_LAYERS]), projection and what it was trained for."""

    hidden_size: int
    vocab_size: int
    num_horizontal: int = 3
    vertical_depth: int = 2
    num_layers: int = 1
    shared_lm_head: bool = True
    image_token_range: tuple[int, int] | None = None  # restrict head-owned projections to [lo, hi)
    family: str | None = None  # the model family trained for (config.model_type, e.g. "janus"); None: any
    model_fingerprint: str | None = None  # fingerprint.model_fingerprint of the model trained on; None: unknown

    def __post_init__(self):
        if self.family is not None and (not isinstance(self.family, str) or not self.family):
            raise ValueError(f"family: expected None or a model_type string, got {self.family!r}")
        for name in ("hidden_size", "vocab_size", "num_layers", "num_horizontal", "vertical_depth"):
            low = 0 if name in ("num_horizontal", "vertical_depth") else 1
            high = {"num_layers": MAX_LAYERS, "num_horizontal": MAX_HEADS, "vertical_depth": MAX_HEADS}.get(name)
            object.__setattr__(self, name, as_int(name, getattr(self, name), low, high))
        if self.num_horizontal + self.vertical_depth == 0:
            raise ValueError("num_horizontal + vertical_depth: expected at least one head")
        if self.num_horizontal + self.vertical_depth > MAX_HEADS:
            raise ValueError(f"num_horizontal + vertical_depth: expected at most {MAX_HEADS} heads (MAX_HEADS), got "
                             f"{self.num_horizontal} + {self.vertical_depth}")
        as_bool("shared_lm_head", self.shared_lm_head)
        if self.image_token_range is not None:
            if not isinstance(self.image_token_range, (tuple, list)) or len(self.image_token_range) != 2:
                raise TypeError(f"image_token_range: expected None or a pair (lo, hi), got {self.image_token_range!r}")
            lo, hi = (as_int("image_token_range", v) for v in self.image_token_range)
            object.__setattr__(self, "image_token_range", (lo, hi))
            if not 0 <= lo < hi <= self.vocab_size:
                raise ValueError(f"image_token_range: expected 0 <= lo < hi <= vocab_size={self.vocab_size}, "
                                 f"got ({lo}, {hi})")

    @property
    def num_heads(self) -> int:
        return self.num_horizontal + self.vertical_depth

    @property
    def projection_rows(self) -> int:
        if self.image_token_range is None:
            return self.vocab_size
        return self.image_token_range[1] - self.image_token_range[0]


@dataclass(frozen=True)
class HeadWeights:
    """Every head's weights, stacked and cast for inference: the arguments of one ops.draft_heads call."""

    res_weight: torch.Tensor  # [H, L, d, d]
    res_bias: torch.Tensor  # [H, L, d]
    projection: torch.Tensor  # [P, V_img, d], P = 1 (shared) or H
    num_horizontal: int
    vertical_depth: int

    @property
    def num_heads(self) -> int:
        return self.num_horizontal + self.vertical_depth

    def draft_logq(self, hidden: torch.Tensor, inv_temperature: float = 1.0, kernel=ops.draft_heads) -> torch.Tensor:
        """hidden [T, d] -> draft log-probs [T, H, V_img] float32 (float64 for float64 weights); kernel: the
        checked public op (default) or a kernel bound once (ops._backend.bind_kernels)."""
        return kernel(hidden, self.res_weight, self.res_bias, self.projection, inv_temperature)


class DraftHeads(nn.Module):
    """Heads 0..num_horizontal-1 are horizontal (distance 1..n); the rest vertical (rows 1..vertical_depth)."""

    def __init__(self, hidden_size: int, vocab_size: int, num_horizontal: int = 3, vertical_depth: int = 2,
                 num_layers: int = 1, shared_lm_head: bool = True,
                 image_token_range: tuple[int, int] | None = None, dtype: torch.dtype = torch.float32,
                 family: str | None = None, model_fingerprint: str | None = None):
        super().__init__()
        self.config = DraftHeadsConfig(hidden_size, vocab_size, num_horizontal, vertical_depth, num_layers,
                                       shared_lm_head, image_token_range, family, model_fingerprint)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype such as torch.float32, got {dtype!r}")
        heads, width, num_layers = self.config.num_heads, self.config.hidden_size, self.config.num_layers
        self.res_weight = nn.Parameter(torch.zeros(heads, num_layers, width, width, dtype=dtype))
        self.res_bias = nn.Parameter(torch.zeros(heads, num_layers, width, dtype=dtype))
        if shared_lm_head:
            self.proj_weight = None
        else:
            rows = self.config.projection_rows
            self.proj_weight = nn.Parameter(torch.randn(heads, rows, width, dtype=dtype) * width**-0.5)

    # --- geometry -------------------------------------------------------------------------------------
    @property
    def num_horizontal(self) -> int:
        return self.config.num_horizontal

    @property
    def vertical_depth(self) -> int:
        return self.config.vertical_depth

    def offsets(self, row_stride: int) -> list[int]:
        """Distance of each head's target beyond the lm_head's next token: [1..n] + [S*1..S*VSD]."""
        return list(range(1, self.num_horizontal + 1)) + [row_stride * d for d in range(1, self.vertical_depth + 1)]

    # --- projection -----------------------------------------------------------------------------------
    def projection(self, head_rows: torch.Tensor | None) -> torch.Tensor:
        """[P, V, d]: head-owned projections, or the given lm_head rows shared by every head."""
        if self.proj_weight is not None:
            return self.proj_weight
        if head_rows is None:
            raise ValueError("head_rows: heads with shared_lm_head=True need the backbone image head rows (backbone.head_rows())")
        return head_rows[None]

    def forward(self, hidden: torch.Tensor, head_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable logits for training: hidden [..., d] -> [..., heads, V]."""
        self._check_hidden(hidden)
        z = hidden.unsqueeze(-2).expand(*hidden.shape[:-1], self.config.num_heads, hidden.shape[-1])
        for layer in range(self.config.num_layers):
            pre = torch.einsum("...hd,hed->...he", z, self.res_weight[:, layer].to(z.dtype))
            z = z + nn.functional.silu(pre + self.res_bias[:, layer].to(z.dtype))
        proj = self.projection(head_rows).to(z.dtype)
        return torch.einsum("...hd,hvd->...hv", z, proj.expand(self.config.num_heads, *proj.shape[1:]))

    def inference_weights(self, dtype: torch.dtype, head_rows: torch.Tensor | None = None) -> "HeadWeights":
        """The weights one fused draft_heads call needs, in `dtype`, built once per decoder (a cast copies
        only when dtype differs from the parameters'). head_rows [V_img, d]: the backbone's shared image
        head (backbones/protocol.py), needed when shared_lm_head=True."""
        return HeadWeights(self.res_weight.detach().to(dtype), self.res_bias.detach().to(dtype),
                           self.projection(head_rows).detach().to(dtype), self.num_horizontal, self.vertical_depth)

    def _check_hidden(self, hidden: torch.Tensor) -> None:
        if hidden.shape[-1] != self.config.hidden_size:
            raise ValueError(f"hidden: expected last dimension hidden_size={self.config.hidden_size}, "
                             f"got shape {tuple(hidden.shape)}")

    # --- persistence ----------------------------------------------------------------------------------
    def check_for(self, backbone, grid, trained_for: bool = True) -> None:
        """ValueError naming `heads` unless these heads draft for `backbone`'s image path on `grid`: its hidden size
        and output ids, the grid's image codes (a projection of their own has one row per code), finite weights and
        (trained_for) the model they were trained for, where they record one."""
        from .fingerprint import model_fingerprint, same_model, short

        recorded = self.config.model_fingerprint
        if trained_for and recorded is not None and not same_model(recorded, backbone):
            raise ValueError(f"heads: trained for the model with fingerprint {short(recorded)}, not this one "
                             f"({short(model_fingerprint(backbone))}); train heads for this model (hawk train-heads)")
        for name, weight in self.named_parameters():
            if not bool(torch.isfinite(weight).all()):
                raise ValueError(f"heads: {name} has NaN or infinite weights; every draft would be silently invalid")
        if self.config.hidden_size != backbone.hidden_size:
            raise ValueError(f"heads: hidden_size={self.config.hidden_size} does not match the model's "
                             f"{backbone.hidden_size}")
        vocab_size = getattr(backbone, "output_vocab_size", backbone.vocab_size)  # the id space of the image codes
        if self.config.vocab_size != vocab_size:
            raise ValueError(f"heads: vocab_size={self.config.vocab_size} does not match the model's {vocab_size}")
        if self.config.image_token_range not in (None, grid.image_token_range):
            raise ValueError(f"heads: image_token_range={self.config.image_token_range} differs from the "
                             f"grid's {grid.image_token_range}")
        if self.proj_weight is not None and self.config.projection_rows != grid.num_image_codes:
            # drafts are laws over the grid's image codes: a projection of their own must have one row per code
            raise ValueError(f"heads: their own projection (shared_lm_head=False) has {self.config.projection_rows} "
                             f"rows (image_token_range=None: the whole vocabulary), the grid has "
                             f"{grid.num_image_codes} image codes; build them with "
                             f"image_token_range={grid.image_token_range}")

    def save_pretrained(self, directory: str) -> None:
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(asdict(self.config), f, indent=2)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, os.path.join(directory, WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str, dtype: torch.dtype | None = None,
                        device: str | torch.device = "cpu") -> "DraftHeads":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        dtype = as_dtype("dtype", dtype)  # None: the saved weights' dtype; a name as load_pipeline takes it
        device = as_device("device", device)  # before reading anything: a bad device is the caller's, not the file's
        directory = str(directory)
        if not os.path.isdir(directory) and is_repo_id(directory):  # a Hub repository of heads: its snapshot
            directory = str(local_dir("directory", directory, CONFIG_NAME))
        config_path, weights_path = os.path.join(directory, CONFIG_NAME), os.path.join(directory, WEIGHTS_NAME)
        for path in (config_path, weights_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"directory: no {os.path.basename(path)} in {directory!r}")
        try:
            with open(config_path) as f:
                config = json.load(f)
            tensors = load_file(weights_path)
        except (ValueError, OSError, SafetensorError) as exc:  # broken JSON or safetensors
            raise ValueError(f"directory: unreadable draft heads in {directory!r} ({exc})") from None
        fields = set(DraftHeadsConfig.__dataclass_fields__)
        if not isinstance(config, dict) or set(config) - fields:
            raise ValueError(f"{CONFIG_NAME}: unknown fields {sorted(set(config) - fields) if isinstance(config, dict) else config!r}"
                             f" in {directory!r}")
        missing = [name for name in ("hidden_size", "vocab_size") if name not in config]
        if missing:
            raise ValueError(f"{CONFIG_NAME}: missing field(s) {missing} in {directory!r}")
        dtype = dtype or tensors.get("res_weight", torch.zeros(0)).dtype
        try:
            heads = cls(**config, dtype=dtype)
        except (TypeError, ValueError) as exc:  # a field of the wrong type or range
            raise ValueError(f"{CONFIG_NAME} in {directory!r}: {exc}") from None
        expected = {k: tuple(v.shape) for k, v in heads.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != found:
            raise ValueError(f"{WEIGHTS_NAME}: tensors {found} do not match {CONFIG_NAME}, which needs {expected}")
        for name, tensor in tensors.items():
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{WEIGHTS_NAME}: {name} has NaN or infinite values in {directory!r}")
        heads.load_state_dict({k: v.to(dtype) for k, v in tensors.items()})
        return heads.to(device)


def load_accept_rates(directory) -> dict:
    """{mode: rates[depth - 1][rank]} measured with the heads saved in `directory` ({} when not calibrated)."""
    path = os.path.join(str(directory), TREE_RATES_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)["rates"]


def heads_for(backbone, num_horizontal: int = 4, vertical_depth: int = 2, num_layers: int = 1,
              family: str | None = None) -> DraftHeads:
    """Untrained heads sized for `backbone`'s image path: sharing its linear image head (head_rows), else a
    projection of their own over the image codes (Janus); float32 (float64 for a float64 model); bound to the
    model's fingerprint and, where given, its family."""
    from .fingerprint import model_fingerprint

    dtype = torch.float64 if backbone.dtype == torch.float64 else torch.float32
    return DraftHeads(backbone.hidden_size, getattr(backbone, "output_vocab_size", backbone.vocab_size),
                      num_horizontal, vertical_depth, num_layers, shared_lm_head=backbone.head_rows() is not None,
                      image_token_range=backbone.grid.image_token_range, dtype=dtype, family=family,
                      model_fingerprint=model_fingerprint(backbone))
