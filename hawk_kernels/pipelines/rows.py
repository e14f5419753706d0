"""What one generate() call holds on the way through a pipeline: the prompts as token rows (both CFG branches),
those rows stacked into a decoder batch (left-padded, with their masks), and the call's output."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..acceptance import PROBE_ROWS, ProbeBatch
from ..decoder import HawkOutput

DEFAULT_NUM_NODES = 32


@dataclass
class PromptRows:
    """Token rows of one generate() call, one per image, each ending where the image body starts."""

    conditional: list[list[int]]
    unconditional: list[list[int]]  # the CFG branch of each image (read only when cfg_scale != 1)
    argument: str  # "prompts" or "input_ids": the argument errors name


@dataclass
class PipelineOutput:
    """What `generate` returns, for every pipeline (the families and the bundled demo)."""

    images: list | None  # PIL.Image per prompt; None when the model has no pixel decoder here
    image_tokens: torch.Tensor  # [B, H, W] the family's own ids of the image (Janus: VQ codes; else vocabulary ids)
    codes: torch.Tensor  # [B, H, W] VQ codebook indices: what the pixel decoder reads
    pixels: torch.Tensor | None  # [B, C, h, w] float pixel decoder output (about [-1, 1])
    sequences: list[torch.Tensor]  # per image: its conditional prompt, the generated body, then the grid's
    #                                image-end token (Emu3: end-of-frame; Lumina-mGPT: <eoss>; Janus: none)
    num_tokens: list[int]  # per image: tokens generated (layout tokens and the image end included)
    num_forward_passes: list[int]  # per image: target passes after prefill that committed its tokens
    total_forward_passes: int  # target passes after prefill of the whole call (with batch_size: the session's passes)
    tokens_per_pass: float  # body tokens committed per target pass, per image
    seconds: float  # wall time of token generation (prefill + steps, compiling included: compile_seconds; pixel
    #                 decoding excluded)
    outputs: list[HawkOutput]  # the decoder's outputs: one per call (with batch_size, one per set of images
    #                             a session finished together)
    num_nodes: list[int] | None = None  # per image: the tree size it was decoded with (num_nodes="auto" chooses
    #                                     per call; passing it back as num_nodes reproduces the image)
    committed: list[int] | None = None  # per image: tokens its passes committed (num_tokens less the prefill's
    #                                     token and the forced end; over its passes: tokens_per_pass's count)
    mode: str | None = None  # the decoding mode (the call's, or drafts.default_mode when it named none)
    tree_rates: str | None = None  # num_nodes="auto": the acceptance it weighed sizes with ("calibrated with the
    #                                heads", "measured on this model (n images)" or the generic prior); else None

    @property
    def step_engine(self) -> str:
        """How the steps ran ("CUDA graph", "eager", or eager with the reason a capture fell back)."""
        return "; ".join(dict.fromkeys(out.step_engine for out in self.outputs))

    @property
    def compile_seconds(self) -> float:
        """Of `seconds`, the steps that compiled the decode step (the first use of a mode, shape or sampling)."""
        return sum(out.compile_seconds for out in self.outputs)

    @property
    def output(self) -> HawkOutput:
        """Deprecated (the demo's old single output): `outputs`, one HawkOutput per decoder batch."""
        warnings.warn("PipelineOutput.output is deprecated: use .outputs (one HawkOutput per decoder batch), or "
                      ".tokens_per_pass and .step_engine", DeprecationWarning, stacklevel=2)
        if len(self.outputs) != 1:
            raise ValueError(f"output: this call ran {len(self.outputs)} decoder batches; read .outputs")
        return self.outputs[0]


def prompt_width(rows: PromptRows, members: Sequence[int], uses_cfg: bool) -> int:
    """Prompt tokens per row of a decoder batch as the decoder holds them (stack_rows' width, CFG rows included)."""
    lengths = [len(rows.conditional[i]) for i in members]
    return max(lengths + ([len(rows.unconditional[i]) for i in members] if uses_cfg else []))


def probe_batch(rows: PromptRows, members: Sequence[int], seeds: list[int], uses_cfg: bool, device) -> ProbeBatch:
    """The rows a first "auto" call probes acceptance with (acceptance.py): its first PROBE_ROWS images."""
    first = list(members)[:PROBE_ROWS]
    return ProbeBatch(*stack_rows(rows, first, uses_cfg, device), [seeds[i] for i in first])


def stack_rows(rows: PromptRows, members: list[int], uses_cfg: bool, device):
    """-> (ids [b, L] left-padded, attention mask [b, L], unconditional ids [b, L'] left-padded or None, their
    attention mask or None). Rows of any lengths share a batch: the decoder masks each branch's padding."""
    ids, mask = _left_padded([rows.conditional[i] for i in members], device)
    if not uses_cfg:
        return ids, mask, None, None
    return (ids, mask, *_left_padded([rows.unconditional[i] for i in members], device))


def _left_padded(prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows -> (ids [b, L] left-padded with 0, attention mask [b, L]) on `device`."""
    length = max(len(row) for row in prompts)
    ids, mask = (torch.zeros(len(prompts), length, dtype=torch.int64) for _ in range(2))
    for k, row in enumerate(prompts):
        ids[k, length - len(row):], mask[k, length - len(row):] = torch.tensor(row), 1
    return ids.to(device), mask.to(device)
