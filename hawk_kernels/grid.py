"""ImageGrid: where image tokens and forced layout tokens sit in the generated sequence.

The generated body is `height` rows of `width` image tokens, each row followed by `row_end_token` when the
layout has one (Lumina-mGPT, Emu3): the row stride S is width (+1). `image_end_token`, when set, is appended
after the body without a forward pass. Body offsets k with k % S == width hold the row-end token.

Inside the decoder every distribution lives on a *local vocabulary*: the image codes [lo, hi) as local ids
0..hi-lo-1, then the row-end token (if any) as local id hi-lo. Non-image tokens get probability 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import as_int


@dataclass(frozen=True)
class ImageGrid:
    height: int
    width: int
    row_end_token: int | None = None
    image_token_range: tuple[int, int] = (0, 0)  # [lo, hi), hi exclusive
    image_end_token: int | None = None

    def __post_init__(self):
        for name in ("height", "width"):
            object.__setattr__(self, name, as_int(name, getattr(self, name), 1))
        if not (isinstance(self.image_token_range, (tuple, list)) and len(self.image_token_range) == 2):
            raise ValueError(f"image_token_range: expected (lo, hi), got {self.image_token_range!r}")
        lo, hi = (as_int("image_token_range", v, 0) for v in self.image_token_range)
        object.__setattr__(self, "image_token_range", (lo, hi))
        if hi <= lo:
            raise ValueError(f"image_token_range: expected 0 <= lo < hi (hi exclusive), got ({lo}, {hi})")
        for name in ("row_end_token", "image_end_token"):
            token = getattr(self, name)
            if token is None:
                continue
            token = as_int(name, token, 0)
            object.__setattr__(self, name, token)
            if lo <= token < hi:
                raise ValueError(f"{name}: {token} lies inside image_token_range ({lo}, {hi})")
        if self.row_end_token is not None and self.row_end_token == self.image_end_token:
            raise ValueError(f"image_end_token: {self.image_end_token} is also the row_end_token (the image's end "
                             "must be a token of its own)")

    # --- geometry -------------------------------------------------------------------------------------
    @property
    def row_stride(self) -> int:
        return self.width + (self.row_end_token is not None)

    @property
    def num_body_tokens(self) -> int:
        return self.height * self.row_stride

    @property
    def num_image_codes(self) -> int:
        return self.image_token_range[1] - self.image_token_range[0]

    @property
    def local_vocab_size(self) -> int:
        return self.num_image_codes + (self.row_end_token is not None)

    @property
    def row_end_local(self) -> int | None:
        return self.num_image_codes if self.row_end_token is not None else None

    def is_forced(self, offsets: torch.Tensor) -> torch.Tensor:
        """bool, same shape: body offsets that hold a forced row-end token."""
        if self.row_end_token is None:
            return torch.zeros_like(offsets, dtype=torch.bool)
        return offsets.remainder(self.row_stride) == self.width

    def local_vocab_ids(self) -> torch.Tensor:
        """[local_vocab_size] the global token id of every local id (a host tensor: backbones move it to the
        device once, at construction)."""
        lo, hi = self.image_token_range
        ids = list(range(lo, hi)) + ([self.row_end_token] if self.row_end_token is not None else [])
        return torch.tensor(ids, dtype=torch.int64)

    def image_tokens(self, body: torch.Tensor) -> torch.Tensor:
        """[B, num_body_tokens] global ids -> [B, height, width] image code ids (layout tokens dropped)."""
        return body.view(body.shape[0], self.height, self.row_stride)[:, :, : self.width]

    def generated_tokens(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """[B, height, width] image code ids -> [B, num_body_tokens (+1)]: what the decoder generates for that
        image (row-end tokens in place, then the image-end token when the layout has one). Inverse of
        image_tokens()."""
        lo, hi = self.image_token_range
        if image_tokens.dim() != 3 or tuple(image_tokens.shape[1:]) != (self.height, self.width):
            raise ValueError(f"image_tokens: expected [B, {self.height}, {self.width}], got {tuple(image_tokens.shape)}")
        if image_tokens.numel() and not bool(((image_tokens >= lo) & (image_tokens < hi)).all()):
            raise ValueError(f"image_tokens: expected ids in the image range [{lo}, {hi})")
        rows = image_tokens.long()
        if self.row_end_token is not None:
            rows = torch.cat([rows, rows.new_full((*rows.shape[:2], 1), self.row_end_token)], dim=2)
        body = rows.flatten(1)
        if self.image_end_token is not None:
            body = torch.cat([body, body.new_full((body.shape[0], 1), self.image_end_token)], dim=1)
        return body

    def check_vocab(self, vocab_size: int, name: str = "model vocab_size") -> None:
        lo, hi = self.image_token_range
        if hi > vocab_size:  # hi is exclusive: the codes are ids lo..hi-1
            raise ValueError(f"grid: image_token_range=({lo}, {hi}) (hi exclusive: ids {lo}..{hi - 1}) does not fit "
                             f"the {name} {vocab_size} (ids 0..{vocab_size - 1})")
        for label, token in (("row_end_token", self.row_end_token), ("image_end_token", self.image_end_token)):
            if token is not None and token >= vocab_size:
                raise ValueError(f"grid: {label}={token} does not fit the {name} {vocab_size} "
                                 f"(ids 0..{vocab_size - 1})")

    # --- presets --------------------------------------------------------------------------------------
    @classmethod
    def lumina_mgpt(cls, resolution: int = 768) -> "ImageGrid":
        """Lumina-mGPT (Chameleon tokenizer): 16 px per token, row-end 8803, codes 4..8195, end 8196 (prompts
        end with the image-start token 8197)."""
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution not in (512, 768, 1024):
            raise ValueError(f"resolution: expected the int 512, 768 or 1024, got {type(resolution).__name__} "
                             f"{resolution!r}")
        side = resolution // 16
        return cls(height=side, width=side, row_end_token=8803, image_token_range=(4, 8196),
                   image_end_token=8196)
