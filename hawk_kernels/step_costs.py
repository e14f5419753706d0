"""Seconds per decode step, as num_nodes="auto" weighs them (tree_size.py): timed on the user's machine, in the form
the step runs (compiled or eager, CUDA graphs, the attention kernel), and kept on disk per (device, model shape,
batch, sampling kind, form, step), so that each is timed once per machine.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from .disk_table import DiskTable, cache_path
from .engine.graphs import captures
from .engine.session import DecodeSession
from .target import SamplingConfig, StepSampling


def default_cache_path() -> Path:
    return cache_path("step_costs.json")


def device_key(device: torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}|torch {torch.__version__}"
    return f"cpu:{os.cpu_count()} cores, {torch.get_num_threads()} threads|torch {torch.__version__}"


class StepCostTable(DiskTable):
    """Seconds per decode step, measured on demand and kept in a JSON file {key: seconds}. A key is measured once
    per machine: the measurement runs under the table's lock, and a process that waited for the lock reads the
    value the first one wrote, so concurrent processes (torchrun ranks, a resumed run) choose the same tree sizes."""

    def __init__(self, path: str | Path | None = None):
        super().__init__(path if path is not None else default_cache_path())

    @property
    def costs(self) -> dict:
        return self.entries

    def has(self, key: str) -> bool:
        """Whether `key` holds a cost (a hand-edited value that is not a positive number reads as none: measured
        again, as an unreadable file is)."""
        return _a_cost(self.entries.get(key))

    def seconds(self, key: str, measure: Callable[[], float]) -> float:
        def measure_if_missing(costs: dict) -> None:
            if not _a_cost(costs.get(key)):  # another process may have measured it meanwhile
                costs[key] = float(measure())

        if not self.has(key):
            self.change(measure_if_missing)
        return self.entries[key]

    def lower(self, key: str, seconds: float) -> float:
        """Keep the lower of `key`'s cost and `seconds` (a second timing of the same step), on disk too."""
        def keep_lower(costs: dict) -> None:
            old = costs.get(key) if _a_cost(costs.get(key)) else float("inf")
            costs[key] = min(float(seconds), old)

        self.change(keep_lower)
        return self.entries[key]


def _a_cost(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def measure_step_seconds(decoder, batch: int, sampling: SamplingConfig, warmup: int = 3, steps: int = 8,
                         prompt_length: int = 4, compiled: bool = True) -> float:
    """Seconds of one decode step of `decoder` at `batch` images (CFG rows included when sampling uses CFG): the median
    of CUDA-event timings on a GPU; on the CPU the fastest of perf_counter timings, since a step's work is fixed (static
    shapes) and other processes on a shared CPU only ever add to it (on a loaded 2-core box the median of the same step
    read up to 40% apart between two timings, and the cost is kept on disk). The prompt's content does not change a
    step's cost: prompts of token 0, `prompt_length` long. The call's own sampling and prompt length, so that the step
    timed here is the one the real call runs (its top-k, greedy or not: they change the step's code) with the real
    call's cache size: a compiled step is then compiled here once, not again for the real call. Steps past the image end
    cost the same. compiled=False: a compiled decoder's step timed uncompiled (its eager form, graphed where it
    would be), seconds instead of the minutes a compile takes at the 7B shape: tree_size's screen."""
    device = decoder.backbone.device
    prompts = torch.zeros(batch, prompt_length, dtype=torch.int64, device=device)
    session = decoder.start(prompts, cfg_scale=sampling.cfg_scale, temperature=sampling.temperature,
                            top_k=sampling.top_k, top_p=sampling.top_p, seed=0,
                            attention_mask=torch.ones_like(prompts))
    if not compiled:  # the same state, stepped by the eager step
        session = DecodeSession(session.plan, session.state, decoder.cuda_graphs, None)
    session.run(warmup)  # compiles, captures, warms caches
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            session.run(1)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e-3)
        else:
            begin = time.perf_counter()
            session.run(1)
            times.append(time.perf_counter() - begin)
    return statistics.median(times) if device.type == "cuda" else min(times)


def step_form(decoder, compiled: bool = True) -> str:
    """How `decoder` runs a step, as far as it changes the step's cost: compiled (whole or regional) or eager,
    CUDA graphs asked for or not, and the attention kernel (dense over every slot, or FlexAttention bounded to the
    filled ones). A cost measured in one form is never reused for another (an eager step costs ~2x a compiled one
    at the 7B shape, and the tree's share of it differs). compiled=False: the form of its step run uncompiled (an
    eager decoder's, so the two share their costs)."""
    step = decoder.compiled_step if compiled else None
    compile_form = "eager" if step is None else ("regional" if step.layers is not None else "compiled")
    graphs = "graphs" if captures(decoder.cuda_graphs, decoder.backbone.device) else "no graphs"
    attention = "flex" if getattr(decoder.backbone, "block_sparse_attention", False) else "dense"
    return f"{compile_form}, {graphs}, {attention} attention, {decoder.plan.verify} verify"


def sampling_key(sampling: SamplingConfig) -> str:
    """What of the sampling changes a step's code and cost: CFG on or off, greedy or sampled, re-tempered drafts
    (temperature != 1), top-k's k (a top-k over the image codes), top-p on or off (top_p < 1), as StepSampling
    decides them. Not the values of CFG, temperature or top-p: they are tensors the same step reads."""
    knobs = StepSampling.of(sampling)  # the step's own reading of it: what it decides once, as Python values
    law = "greedy" if knobs.greedy else f"sampled{', tempered' if knobs.retempers_drafts else ''}"
    return f"cfg {knobs.branches == 2}|{law}, top-k {knobs.top_k}, top-p {knobs.uses_top_p}"


def step_key(device, model_key: str, mode: str, size: int, batch: int, sampling: SamplingConfig,
             form: str = "", drafts: str = "") -> str:
    """The cost table's key: device, model shape, batch, sampling (sampling_key), the step's form (step_form) and
    the step (AR, or mode + tree size + `drafts`, what of the draft heads changes a tree step's cost). AR's key is
    the same for every mode: one AR cost per batch, the one baseline every mode's sizes are weighed against."""
    step = "ar" if size == 1 else f"{mode} nodes {size}{drafts}"
    return f"{device_key(device)}|{model_key}|batch {batch}|{sampling_key(sampling)}|{form}|{step}"


def machine_of(key: str) -> str:
    """The device and torch a step_key was timed on (its first two fields: device_key's)."""
    return " | ".join(key.split("|")[:2])
