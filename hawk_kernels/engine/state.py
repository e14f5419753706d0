"""DecodeState: every per-generation tensor, allocated up front with fixed shapes and updated in place (so a
captured step replays on the same memory). Two states of one plan share nothing: sessions interleave.

Invariant between steps: body[:, :committed] is committed (local ids), the KV cache holds the prompt and
body[:, :committed - 1], and body[:, committed - 1] is the root of the next tree.

Rows are independent images (their own seed, offsets, cache rows, source memory, statistics), so a finished row
can be replaced by a new image between steps (`replace_rows`, continuous batching: engine/session.py) and then
decodes exactly as that image would alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..backbones import SlotKVCache
from ..checks import image_seeds
from ..drafts import CoupledNoise, SourceSetup
from ..ops.philox import DeviceRNG
from ..target import SamplingConfig, StepSampling, TargetProcessor
from .plan import StepPlan


@dataclass
class StepStats:
    """Statistics accumulated on the device, read once at the end."""

    history: torch.Tensor  # [body + 1, B] tokens committed per row at each of the row's own steps; the last
    #                        row is a sink for steps run after the row finished (a step commits >= 1 token per live row)
    row_steps: torch.Tensor  # [B] steps each row took since its image started (its history index)
    step_index: torch.Tensor  # () steps taken by the session
    source_counts: torch.Tensor  # [B, len(pool.source_names)] accepted tree tokens per row and source
    rank_tried: torch.Tensor  # [B, (depth, rank) cells] node tried: its parent was on the accepted path
    rank_accepted: torch.Tensor  # [B, (depth, rank) cells] node accepted

    def replace_rows(self, rows: torch.Tensor, fresh: "StepStats") -> None:
        """Rows start their statistics anew (a refilled image: `fresh` is its own, after prefill)."""
        self.history.index_fill_(1, rows, 0)
        for mine, theirs in ((self.row_steps, fresh.row_steps), (self.source_counts, fresh.source_counts),
                             (self.rank_tried, fresh.rank_tried), (self.rank_accepted, fresh.rank_accepted)):
            mine.index_copy_(0, rows, theirs)


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
    prompt: torch.Tensor  # [B, L] the conditional prompts as given (left-padded with 0), for the output sequences
    config: SamplingConfig  # the sampling as given (a refill prepares its new images with it)
    # the coupled rule's Gumbel noise, keyed by (image seed, body offset): the target samples with it and the drafts
    # draw with it (None under the rejection rule); its keys are a view of rng.seed, so a refilled row follows
    noise: CoupledNoise | None = None

    @property
    def batch(self) -> int:
        return self.committed.shape[0]

    def replace_rows(self, plan: StepPlan, rows: torch.Tensor, fresh: "DecodeState") -> None:
        """Rows `rows` [k] become the images of `fresh` (a state of k rows of the same plan and sampling, after
        its prefill, its cache no larger than this one's: HawkDecoder.refill sizes it to the new prompts): every
        per-row tensor is written in place, so a captured step replays on the new images, and each new row then
        decodes as it would alone (its own seed and Philox offsets)."""
        if self.rng.seed.dim() == 0:
            raise ValueError("rows: this state draws with one seed for the whole batch (new_state(seed=int)); "
                             "rows can be given to new images only with a seed per image")
        unable = [type(s).__name__ for s in plan.pool.sources if not callable(getattr(s, "replace_rows", None))]
        if unable:  # checked before any row is written
            raise TypeError(f"rows: the draft sources {unable} have no replace_rows(state, rows, fresh), so their "
                            "rows cannot be given to new images (drafts/source.py)")
        for mine, theirs in ((self.body, fresh.body), (self.committed, fresh.committed),
                             (self.bad_rows, fresh.bad_rows), (self.rng.seed, fresh.rng.seed.expand(len(rows))),
                             (self.rng.offset, fresh.rng.offset.expand(len(rows)))):
            mine.index_copy_(0, rows, theirs)
        branches = self.sampling.branches
        self.cache.replace_rows(torch.cat([rows + b * self.batch for b in range(branches)]), fresh.cache)
        for source in plan.pool.sources:
            source.replace_rows(self.source_states[id(source)], rows, fresh.source_states[id(source)])
        self.stats.replace_rows(rows, fresh.stats)
        width = max(self.prompt.shape[1], fresh.prompt.shape[1])
        pad = lambda p: torch.nn.functional.pad(p, (width - p.shape[1], 0))  # left padding, as given
        self.prompt = pad(self.prompt).index_copy(0, rows.to(self.prompt.device), pad(fresh.prompt.to(self.prompt)))


def new_state(plan: StepPlan, sampling: SamplingConfig, batch: int, capacity: int, seed: int | list[int],
              prompt: torch.Tensor) -> DecodeState:
    grid, dev = plan.grid, plan.backbone.device
    body = grid.num_body_tokens
    rank_cells = plan.tree.num_rank_cells
    counts = lambda *shape: torch.zeros(*shape, dtype=torch.int64, device=dev)
    stats = StepStats(history=counts(body + 1, batch), row_steps=counts(batch), step_index=counts(()),
                      source_counts=counts(batch, len(plan.pool.source_names)),
                      rank_tried=counts(batch, rank_cells), rank_accepted=counts(batch, rank_cells))
    backend = plan.kernels.philox_uniforms.backend
    if isinstance(seed, int):  # one key for the whole draw (the engine's own tests): its rows cannot be refilled
        rng = DeviceRNG(seed, dev, backend=backend)
    else:  # HawkDecoder's per-image seeds, and a Philox offset per row: replace_rows restarts a row's step count
        seed = image_seeds("seed", seed, batch)
        rng = DeviceRNG(seed, dev, offset=[0] * batch, backend=backend)
    knobs = StepSampling.of(sampling, dev)
    return DecodeState(sampling=knobs, target=TargetProcessor(grid, knobs),
                       cache=plan.backbone.new_cache(batch * sampling.branches, capacity), rng=rng,
                       body=torch.zeros(batch, body + 1, dtype=torch.int64, device=dev),
                       committed=torch.zeros(batch, dtype=torch.int64, device=dev),
                       bad_rows=torch.zeros(batch, dtype=torch.bool, device=dev),
                       source_states=_new_source_states(plan, batch, rng), stats=stats, prompt=prompt,
                       config=sampling,
                       noise=CoupledNoise(batch, grid.local_vocab_size, rng, dev) if plan.verify == "coupled" else None)


def _new_source_states(plan: StepPlan, batch: int, rng: DeviceRNG) -> dict[int, Any]:
    """Every source allocates its own per-generation memory, up front."""
    logits_dtype = torch.float64 if plan.backbone.dtype == torch.float64 else torch.float32
    setup = SourceSetup(batch, plan.grid, plan.tree.continuation, logits_dtype, rng, plan.backbone.device)
    return {id(source): source.new_state(setup) for source in plan.pool.sources}
