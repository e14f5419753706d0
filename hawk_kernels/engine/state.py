"""DecodeState: every per-generation tensor, allocated up front with fixed shapes and updated in place (so a
captured step replays on the same memory). Two states of one plan share nothing: sessions interleave.

Invariant between steps: body[:, :committed] is committed (local ids), the KV cache holds the prompt and
body[:, :committed - 1], and body[:, committed - 1] is the root of the next tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..backbones import SlotKVCache
from ..drafts import SourceSetup
from ..ops.philox import DeviceRNG
from ..target import SamplingConfig, StepSampling, TargetProcessor
from .plan import StepPlan


@dataclass
class StepStats:
    """Statistics accumulated on the device, read once at the end."""

    history: torch.Tensor  # [body + 1, B] tokens committed per step and row; the last row is a sink for
    #                        steps run after every row finished (a step commits >= 1 token per live row)
    step_index: torch.Tensor  # () steps taken
    source_counts: torch.Tensor  # [len(pool.source_names)] accepted tree tokens per source
    rank_tried: torch.Tensor  # [(depth, rank) cells] node tried: its parent was on the accepted path
    rank_accepted: torch.Tensor  # [(depth, rank) cells] node accepted


@dataclass
class DecodeState:
    sampling: StepSampling  # the generation's SamplingConfig as the step reads it (no Python float)
    target: TargetProcessor
    cache: SlotKVCache  # both CFG branches: rows [0, B) conditional, [B, 2B) unconditional
    rng: DeviceRNG
    body: torch.Tensor  # [B, body + 1] local ids; the last column is a write sink
    committed: torch.Tensor  # [B] committed body tokens per row
    bad_rows: torch.Tensor  # [B] bool: a target law was NaN / had no finite entry (raised between steps)
    source_states: dict[int, Any]  # id(source) -> the memory that source keeps (DraftSource.new_state)
    stats: StepStats
    prompt: torch.Tensor  # [B, L] the conditional prompts as given, for the output sequences


def new_state(plan: StepPlan, sampling: SamplingConfig, batch: int, capacity: int, seed: int | list[int],
              prompt: torch.Tensor) -> DecodeState:
    grid, dev = plan.grid, plan.backbone.device
    body = grid.num_body_tokens
    rank_cells = plan.tree.num_rank_cells
    stats = StepStats(history=torch.zeros(body + 1, batch, dtype=torch.int64, device=dev),
                      step_index=torch.zeros((), dtype=torch.int64, device=dev),
                      source_counts=torch.zeros(len(plan.pool.source_names), dtype=torch.int64, device=dev),
                      rank_tried=torch.zeros(rank_cells, dtype=torch.int64, device=dev),
                      rank_accepted=torch.zeros(rank_cells, dtype=torch.int64, device=dev))
    rng = DeviceRNG(seed, dev, backend=plan.kernels.philox_uniforms.backend)
    knobs = StepSampling.of(sampling, dev)
    return DecodeState(sampling=knobs, target=TargetProcessor(grid, knobs),
                       cache=plan.backbone.new_cache(batch * sampling.branches, capacity), rng=rng,
                       body=torch.zeros(batch, body + 1, dtype=torch.int64, device=dev),
                       committed=torch.zeros(batch, dtype=torch.int64, device=dev),
                       bad_rows=torch.zeros(batch, dtype=torch.bool, device=dev),
                       source_states=_new_source_states(plan, batch, rng), stats=stats, prompt=prompt)


def _new_source_states(plan: StepPlan, batch: int, rng: DeviceRNG) -> dict[int, Any]:
    """Every source allocates its own per-generation memory, up front."""
    logits_dtype = torch.float64 if plan.backbone.dtype == torch.float64 else torch.float32
    setup = SourceSetup(batch, plan.grid, plan.tree.continuation, logits_dtype, rng, plan.backbone.device)
    return {id(source): source.new_state(setup) for source in plan.pool.sources}
