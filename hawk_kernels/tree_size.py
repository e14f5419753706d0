"""num_nodes="auto": the tree size that maximises images per second for a batch.

A bigger tree commits more tokens per pass but costs more per step, and the cost grows with the batch (at batch
16 on the CPU a 32-node hawk step costs several AR steps). Images per second, for a fixed image length, is
proportional to tokens per pass / seconds per step:
  * tokens per pass of a tree, for the batch: under the calibrated acceptance rates (rate(depth, rank) = P(that
    node is accepted | its parent was), the model TreeTemplate.from_budget shapes the tree by) a row commits
    1 + its expected accepted length per pass (expected_tokens_per_pass); a fixed batch (`generate`) steps until
    its slowest row is done, so the batch's passes are the expected maximum over its rows (expected_batch_passes,
    Monte Carlo); with continuous batching (`hawk generate`: pipelines/continuous.py) a finished row takes the next
    image at once, so an image costs a mean row's passes;
  * seconds per step: measured once per (device, model shape, mode, batch, size) by timing decode steps, and
    cached on disk (StepCostTable: a JSON file keyed by all of these, so a new device or model shape measures
    anew), and by the step's form (compiled or eager, graphed, the attention kernel). Size 1 is a plain AR step,
    always a candidate: a drafting mode is never chosen slower than AR as far as these estimates go. A size that
    cannot win even at the cost of the smaller trees already measured is not measured (choose_num_nodes).
The chosen size is recorded in the output; passing it back as num_nodes reproduces the same images.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .acceptance import ProbeBatch, acceptance_key, measured_rates
from .checks import as_int
from .disk_table import CACHE_ENV, DiskTable, cache_path  # noqa: F401 (CACHE_ENV: where the tables live)
from .drafts import needs_heads
from .engine.graphs import captures
from .target import SamplingConfig, StepSampling
from .tree import MAX_NUM_NODES, TreeTemplate, rate_function

CANDIDATE_SIZES = (1, 4, 8, 16, 32, 64)


def expected_tokens_per_pass(template: TreeTemplate, accept_rate=None) -> float:
    """1 (the bonus) + the expected number of accepted nodes of `template` under accept_rate (a table
    rates[depth - 1][rank], a callable, or None for the generic prior)."""
    rate = rate_function(accept_rate)
    reach = [1.0] * template.num_nodes  # P(node accepted); the root is given
    for node in range(1, template.num_nodes):  # parents come before their children
        reach[node] = reach[template.parents[node]] * rate(template.depth[node], template.rank[node])
    return 1.0 + sum(reach[1:])


def expected_batch_passes(template: TreeTemplate, accept_rate, body_tokens: int, batch: int, sims: int = 64,
                          seed: int = 0) -> float:
    """Expected target passes of a batch of `batch` images of `body_tokens` tokens: the slowest row's, since a
    batch steps until its last row is done (at batch 64 that is well above the mean row's). Monte Carlo over the
    rate model of TreeTemplate.from_budget: at each accepted node, child of rank r is the accepted one with
    probability rate(depth, r) (siblings exclusive), else the walk stops; a step commits the accepted nodes + 1."""
    rate = rate_function(accept_rate)
    children = [[c for c in range(template.num_nodes) if template.parents[c] == n] for n in range(template.num_nodes)]
    width = max(len(kids) for kids in children) + 1  # + a column "no child accepted"
    child = np.full((template.num_nodes, width), -1)
    cumulative = np.full((template.num_nodes, width), 2.0)  # P(the accepted child's column <= j)
    for node, kids in enumerate(children):
        kids = sorted(kids, key=lambda c: template.rank[c])
        probs = np.array([rate(template.depth[c], template.rank[c]) for c in kids])
        probs = probs / max(1.0, probs.sum())  # exclusive siblings: at most all of the mass
        child[node, : len(kids)] = kids
        cumulative[node, : len(kids)] = np.cumsum(probs)
    rng = np.random.default_rng(seed)
    committed = np.zeros((sims, batch))
    passes = np.zeros((sims, batch))
    while (committed < body_tokens).any():
        live = committed < body_tokens
        node = np.zeros((sims, batch), dtype=np.int64)
        walking = np.ones((sims, batch), dtype=bool)
        gained = np.ones((sims, batch))  # the bonus
        for _ in range(template.max_depth):
            pick = (rng.random((sims, batch))[..., None] < cumulative[node]).argmax(-1)
            nxt = child[node, pick]
            walking &= nxt >= 0
            if not walking.any():
                break
            gained += walking
            node = np.where(walking, nxt, node)
        committed += np.where(live, gained, 0)
        passes += live
    return float(passes.max(axis=1).mean())


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
                         prompt_length: int = 4) -> float:
    """Seconds of one decode step of `decoder` at `batch` images (CFG rows included when sampling uses CFG): the median
    of CUDA-event timings on a GPU; on the CPU the fastest of perf_counter timings, since a step's work is fixed (static
    shapes) and other processes on a shared CPU only ever add to it (on a loaded 2-core box the median of the same step
    read up to 40% apart between two timings, and the cost is kept on disk). The prompt's content does not change a
    step's cost: prompts of token 0, `prompt_length` long. The call's own sampling and prompt length, so that the step
    timed here is the one the real call runs (its top-k, greedy or not: they change the step's code) with the real
    call's cache size: a compiled step is then compiled here once, not again for the real call. Steps past the image end
    cost the same."""
    device = decoder.backbone.device
    prompts = torch.zeros(batch, prompt_length, dtype=torch.int64, device=device)
    session = decoder.start(prompts, cfg_scale=sampling.cfg_scale, temperature=sampling.temperature,
                            top_k=sampling.top_k, top_p=sampling.top_p, seed=0,
                            attention_mask=torch.ones_like(prompts))
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


@dataclass
class SizeChoice:
    num_nodes: int  # the chosen size (1: a plain AR step)
    estimates: dict  # size -> {"tokens_per_pass", "seconds_per_step", "relative_speed"} (AR = 1)
    rates_from: str | None = None  # where the acceptance behind an "auto" choice came from (None: not "auto")
    acceptance_key: str | None = None  # where the call's acceptance counts go (acceptance.py; None: not kept)
    probe_only: bool = False  # the acceptance behind it is a probe's (or the prior): no whole image counted yet


def step_form(decoder) -> str:
    """How `decoder` runs a step, as far as it changes the step's cost: compiled (whole or regional) or eager,
    CUDA graphs asked for or not, and the attention kernel (dense over every slot, or FlexAttention bounded to the
    filled ones). A cost measured in one form is never reused for another (an eager step costs ~2x a compiled one
    at the 7B shape, and the tree's share of it differs)."""
    compiled = decoder.compiled_step
    compile_form = "eager" if compiled is None else ("regional" if compiled.layers is not None else "compiled")
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


COST_NOISE = 0.9  # a measured step cost may read up to ~10% high (timing noise): bounds allow for it
# a tree is chosen over plain AR steps only when predicted this much faster: within the timing noise a tree may
# be slower (bundled model, CPU, batch 16, continuous: vertical predicted 1.03x AR at 4 and 8 nodes, both within
# noise; one run chose 8 nodes against an AR cost read 8% high and measured 0.82x AR, another chose 4: 1.24x)
TREE_MARGIN = 1 / COST_NOISE


def choose_num_nodes(decoder_for: Callable[[int], object], mode: str, accept_rate, batch: int,
                     sampling: SamplingConfig, model_key: str, table: StepCostTable | None = None,
                     sizes: tuple[int, ...] = CANDIDATE_SIZES, prompt_length: int = 4,
                     drafts: str = "", continuous: bool = False) -> SizeChoice:
    """decoder_for(n): the HawkDecoder of `mode` with n nodes (n = 1: the AR decoder); accept_rate: the mode's
    calibrated rates (None: generic priors); sampling: the call's (SamplingConfig); model_key: names the model shape
    (with the device, batch, sampling, the step's form and the step it keys the cost table); prompt_length: the real
    call's prompt tokens per row (the longer CFG branch), so that a step timed here has the real call's cache size (a
    compiled step compiles once per cache size: timed at another, the real call would compile again); drafts: the tree
    steps' draft heads (step_key), not part of model_key, so that AR is timed once per batch whatever the mode.
    continuous: the rows are refilled as they finish (pipelines/continuous.py), so an image takes a mean row's
    passes, not the batch's slowest row's.

    Sizes are tried smallest first. A size whose cost is not in the table yet is measured only if it could still
    win: a bigger tree does at least the work of a smaller one, so its step costs at least the largest cost
    measured so far (less COST_NOISE), and its best possible speed is its tokens per pass over that cost. A size
    that cannot beat the best so far is not measured (on a GPU, measuring means compiling a decoder: a minute or
    more at the 7B shape); its estimate says so."""
    table = table or StepCostTable()
    estimates, best_speed, cost_floor = {}, 0.0, 0.0  # cost_floor: the largest cost so far, which
    #                                                     bounds every bigger tree's cost from below
    said = False  # a compiled step's timing says what is going on (each size compiles first: minutes at 7B)
    timed_trees, ar_key, ar_decoder = False, None, None
    for size in sorted(sizes):
        decoder = decoder_for(size)
        body = decoder.grid.num_body_tokens
        rows_waited_for = 1 if continuous else batch  # a fixed batch steps until its slowest row is done
        passes = body if size == 1 else expected_batch_passes(decoder.tree, accept_rate, body, rows_waited_for)
        tokens = body / passes
        form = step_form(decoder)
        key = step_key(decoder.backbone.device, model_key, mode, size, batch, sampling, form, drafts)
        timed = not table.has(key)
        if timed and cost_floor > 0 and tokens / (COST_NOISE * cost_floor) <= best_speed:
            estimates[size] = dict(tokens_per_pass=tokens, seconds_per_step=None,
                                   not_measured="cannot beat a smaller tree: it costs at least as much per step")
            continue
        announce = timed and decoder.compiled_step is not None  # eager timing takes a second or so: no word
        if announce and not said:
            said = True
            print(f"hawk_kernels: num_nodes='auto' is timing {mode} steps at batch {batch} ({form}): "
                  f"each size compiles first; done once per device, model shape and batch, kept in {table.path}",
                  file=sys.stderr, flush=True)
        seconds = table.seconds(key, lambda: measure_step_seconds(decoder, batch, sampling,
                                                                  prompt_length=prompt_length))
        if announce:
            print(f"hawk_kernels:   {size} node{'s' * (size > 1)}: {seconds * 1e3:.2f} ms per step", file=sys.stderr,
                  flush=True)
        cost_floor = max(cost_floor, seconds)
        best_speed = max(best_speed, tokens / seconds)
        estimates[size] = dict(tokens_per_pass=tokens, seconds_per_step=seconds)
        timed_trees = timed_trees or (timed and size > 1)
        if size == 1:
            ar_key, ar_decoder = key, decoder
    if timed_trees and ar_key is not None:
        # AR again, after the trees: a slow spell of the machine while AR alone was timed (a shared or virtual CPU
        # runs 1.5x slower for seconds at a time) would make every tree look faster than it is; the cost is the
        # lower of the two timings (a slow spell during a tree's timing only errs towards AR)
        estimates[1]["seconds_per_step"] = table.lower(ar_key, measure_step_seconds(
            ar_decoder, batch, sampling, prompt_length=prompt_length))
    return SizeChoice(_fastest(estimates), estimates)


def _fastest(estimates: dict) -> int:
    """The measured size with the most tokens per second, or 1 (AR) unless that size is predicted more than
    TREE_MARGIN faster than AR; each measured estimate gets its `relative_speed` (the smallest size, AR, = 1)."""
    measured = {size: e for size, e in estimates.items() if e["seconds_per_step"] is not None}
    ar = measured[min(measured)]
    for value in measured.values():
        value["relative_speed"] = (value["tokens_per_pass"] / value["seconds_per_step"]) / (
            ar["tokens_per_pass"] / ar["seconds_per_step"])
    best = max(measured, key=lambda size: measured[size]["relative_speed"])
    if min(measured) == 1 and measured[best]["relative_speed"] < TREE_MARGIN:
        return 1  # within the noise of the timings and the rates: AR steps, never slower than AR
    return best


def checked_num_nodes(num_nodes):
    """The pipelines' num_nodes: None, "auto" or an int in [1, MAX_NUM_NODES] (1: a plain AR step)."""
    return num_nodes if num_nodes in (None, "auto") else as_int("num_nodes", num_nodes, 1, MAX_NUM_NODES)


def pipeline_num_nodes(pipe, mode: str, grid, num_nodes, batch: int, sampling: SamplingConfig, default: int,
                       prompt_length: int = 4, continuous: bool = False,
                       probe: Callable[[], ProbeBatch] | None = None) -> SizeChoice:
    """An ImagePipeline's tree size for one decoder batch. num_nodes: an int >= 1 (1: a plain AR step), None
    (`default`) or "auto" (choose_num_nodes over the pipeline's decoders of `mode`, a cost table keyed by the
    model's shape, and the batch's prompt length; continuous: rows refilled as they finish). "auto" weighs sizes
    with the pipeline's calibrated rates for the mode, else with the acceptance measured on this model
    (acceptance.py: a probe of the rows probe() builds, the first time), else the generic prior; the choice says which."""
    num_nodes = checked_num_nodes(num_nodes)
    if mode == "ar":
        return SizeChoice(1, {})
    key = acceptance_key(pipe, mode, grid, sampling)
    if num_nodes != "auto":
        return SizeChoice(default if num_nodes is None else num_nodes, {}, acceptance_key=key)
    rates, rates_from, probe_only = pipe.accept_rates.get(mode), "calibrated with the heads", False
    if key is not None:
        rates, rates_from, probe_only = measured_rates(pipe, key, mode, grid, sampling, probe)
    heads = pipe.heads.config.num_heads if pipe.heads is not None and needs_heads(mode) else 0
    choice = choose_num_nodes(lambda n: pipe._decoder_of_size(mode, grid, n), mode, rates, batch, sampling,
                              _shape_key(pipe, grid), prompt_length=prompt_length,
                              drafts=f", heads {heads}" if heads else "", continuous=continuous)
    return SizeChoice(choice.num_nodes, choice.estimates, rates_from, key, probe_only)


def _shape_key(pipe, grid) -> str:
    """What a step's cost depends on besides device, batch, tree and heads: the model's shape, dtype, layout."""
    config = pipe.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    shape = [getattr(config, name, None) for name in ("hidden_size", "num_hidden_layers", "intermediate_size",
                                                      "num_attention_heads", "num_key_value_heads", "vocab_size")]
    return f"{pipe.family}|{type(pipe.model).__name__}|{shape}|{pipe.dtype}|{grid.height}x{grid.width}"
