"""The target distribution at every position, in the documented order (docs/method.md §2):

  logits -> CFG combine -> layout mask -> top-k -> top-p -> temperature -> (softmax in the verifier)

Works on local-vocabulary logits (see grid.py). At a forced layout offset the law is one-hot on the row-end
local id; at an image offset the row-end id is masked. temperature == 0 means greedy: one-hot on the argmax
(first index among ties, as torch.argmax). The output is *processed logits* (-inf = excluded): what the
verifier turns into target_probs.

NaN / inf: a row of image logits with a NaN or a +inf, or with no finite entry, defines no law. Sampled
decoding hands it to the verifier as it is; greedy decoding turns it into a NaN row instead of an argmax (which
would silently pick the NaN's index). Either way the verifier rejects the row (bonus -1) and the decoder raises
FloatingPointError, in every mode and on every backend. Forced layout positions ignore the logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import as_float, as_int
from .grid import ImageGrid

NEG_INF = float("-inf")
# Bounds that keep logits * cfg_scale and logits / temperature finite in float32 for any model's logits (a
# temperature of 1e-45 or a cfg_scale of 1e38 overflows them to inf, and the target law to NaN): far past what
# any sampling recipe uses (CFG 1-20, temperatures 0.1-2; 0 is greedy).
MIN_TEMPERATURE, MAX_CFG_SCALE = 1e-4, 1e4


@dataclass(frozen=True)
class SamplingConfig:
    cfg_scale: float = 1.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "cfg_scale", as_float("cfg_scale", self.cfg_scale, 0.0, MAX_CFG_SCALE))
        object.__setattr__(self, "temperature", as_float("temperature", self.temperature, 0.0))
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise ValueError(f"temperature: expected 0 (greedy) or a finite number >= {MIN_TEMPERATURE}, got "
                             f"{self.temperature}")
        if self.top_k is not None:
            object.__setattr__(self, "top_k", as_int("top_k", self.top_k, 1))
        if self.top_p is not None:
            object.__setattr__(self, "top_p", as_float("top_p", self.top_p, 0.0, 1.0, low_open=True))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def uses_cfg(self) -> bool:
        return self.cfg_scale != 1.0

    @property
    def branches(self) -> int:
        """Model rows per image: 2 with CFG (all conditional rows, then all unconditional ones), else 1."""
        return 2 if self.uses_cfg else 1


@dataclass(frozen=True)
class StepSampling:
    """A SamplingConfig as the decode step reads it: what changes the step's code as Python values, decided once
    per generation (greedy, CFG branches, top-k's k, top-p on or off, tempered drafts), the numbers as float64
    device tensors of one element, cast to the logits' dtype where they are used (as a Python scalar would be). A
    compiled step guards on every Python float it reads while tracing, so reading `temperature` made each new
    temperature recompile, and the ninth distinct one failed (torch's recompile limit, fullgraph=True); tensors
    are inputs. Shape [1], not 0-d: dynamo gives a 0-d float64 CPU tensor a symbolic float for its value, then
    restarts its whole analysis to specialise it (~half the trace time of every CPU compile, twice)."""

    greedy: bool
    branches: int  # model rows per image: 2 with CFG
    top_k: int | None
    uses_top_p: bool
    retempers_drafts: bool  # sampled at a temperature other than 1: the draft laws are re-tempered (step.py)
    cfg_scale: torch.Tensor  # [1] float64
    temperature: torch.Tensor  # [1] float64; 1 when greedy (unused)
    top_p: torch.Tensor  # [1] float64; 1 when off

    @classmethod
    def of(cls, config: SamplingConfig, device: torch.device | str = "cpu") -> "StepSampling":
        number = lambda value: torch.tensor([float(value)], dtype=torch.float64, device=device)
        uses_top_p = config.top_p is not None and config.top_p < 1
        return cls(greedy=config.greedy, branches=config.branches, top_k=config.top_k, uses_top_p=uses_top_p,
                   retempers_drafts=not config.greedy and config.temperature != 1.0,
                   cfg_scale=number(config.cfg_scale), temperature=number(1.0 if config.greedy else config.temperature),
                   top_p=number(config.top_p if uses_top_p else 1.0))


def combine_cfg(logits: torch.Tensor, cfg_scale: float | torch.Tensor) -> torch.Tensor:
    """[2B, ...] (conditional rows first, then unconditional) -> [B, ...]: uncond + cfg * (cond - uncond)."""
    cond, uncond = logits.chunk(2, dim=0)
    return uncond + cfg_scale * (cond - uncond)


def defines_a_law(logits: torch.Tensor) -> torch.Tensor:
    """[..., V] -> [...] bool: the row has no NaN, no +inf and at least one finite entry (the verifier's rule
    for a valid law, ops/reference/accept_reject.py), in one reduction: the row's max is NaN with a NaN (max
    propagates it), +inf with a +inf, -inf with no finite entry, and finite exactly otherwise."""
    return torch.isfinite(logits.amax(-1))


def filter_logits(logits: torch.Tensor, config: SamplingConfig | StepSampling) -> torch.Tensor:
    """top-k, then top-p, then temperature (or greedy one-hot) on [..., V] logits with -inf exclusions."""
    knobs = config if isinstance(config, StepSampling) else StepSampling.of(config, logits.device)
    if knobs.greedy:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.argmax(-1, keepdim=True), True)
        one_hot = torch.where(keep, torch.zeros_like(logits), torch.full_like(logits, NEG_INF))
        return one_hot.masked_fill(~defines_a_law(logits)[..., None], float("nan"))  # stays invalid
    if knobs.top_k is not None and knobs.top_k < logits.shape[-1]:
        kth = torch.topk(logits, knobs.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if knobs.uses_top_p:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        mass_before = torch.softmax(sorted_logits, -1).cumsum(-1) - torch.softmax(sorted_logits, -1)
        drop_sorted = mass_before >= knobs.top_p.to(mass_before.dtype)  # the smallest prefix reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, NEG_INF)
    return logits / knobs.temperature.to(logits.dtype)


class TargetProcessor:
    """Turns backbone logits on the local vocabulary into the processed target logits."""

    def __init__(self, grid: ImageGrid, config: SamplingConfig | StepSampling, device: torch.device | str = "cpu"):
        """config: the StepSampling a decode state holds, or a SamplingConfig, whose numbers become tensors on
        `device`, the logits' device (one-element tensors do not mix devices the way 0-d ones do)."""
        self.grid = grid
        self.knobs = config if isinstance(config, StepSampling) else StepSampling.of(config, device)

    def __call__(self, local_logits: torch.Tensor, next_offsets: torch.Tensor) -> torch.Tensor:
        """local_logits [B or 2B (CFG), N, V_local]; next_offsets [B, N] body offset of the token each row
        predicts -> processed logits [B, N, V_local] in float32 (float64 if given float64)."""
        dtype = torch.float64 if local_logits.dtype == torch.float64 else torch.float32
        logits = local_logits.to(dtype)
        if self.knobs.branches == 2:
            logits = combine_cfg(logits, self.knobs.cfg_scale.to(dtype))
        return self.apply_layout_and_filters(logits, next_offsets)

    def apply_layout_and_filters(self, logits: torch.Tensor, next_offsets: torch.Tensor) -> torch.Tensor:
        row_end = self.grid.row_end_local
        if row_end is None:
            return filter_logits(logits, self.knobs)
        forced = self.grid.is_forced(next_offsets)
        image = logits.clone()
        image[..., row_end] = NEG_INF
        image = filter_logits(image, self.knobs)
        one_hot = torch.full_like(logits, NEG_INF)
        one_hot[..., row_end] = 0.0
        return torch.where(forced[..., None], one_hot, image)
