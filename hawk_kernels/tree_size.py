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
    cannot win even at the cost of the smaller trees already measured is not measured (_swept); where the step
    compiles, every size is timed uncompiled and only the likeliest are compiled and timed (_screened).
The chosen size is recorded in the output; passing it back as num_nodes reproduces the same images.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .acceptance import ProbeBatch, acceptance_key, measured_rates
from .checks import as_int
from .disk_table import CACHE_ENV  # noqa: F401 (where the tables live)
from .drafts import needs_heads
from .step_costs import (StepCostTable, default_cache_path, device_key, measure_step_seconds,  # noqa: F401
                         sampling_key, step_form, step_key)
from .target import SamplingConfig
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


@dataclass
class SizeChoice:
    num_nodes: int  # the chosen size (1: a plain AR step)
    estimates: dict  # size -> {"tokens_per_pass", "seconds_per_step", "relative_speed"} (AR = 1)
    rates_from: str | None = None  # where the acceptance behind an "auto" choice came from (None: not "auto")
    acceptance_key: str | None = None  # where the call's acceptance counts go (acceptance.py; None: not kept)
    probe_only: bool = False  # the acceptance behind it is a probe's (or the prior): no whole image counted yet


COST_NOISE = 0.9  # a measured step cost may read up to ~10% high (timing noise): bounds allow for it
# a tree is chosen over plain AR steps only when predicted this much faster: within the timing noise a tree may
# be slower (bundled model, CPU, batch 16, continuous: vertical predicted 1.03x AR at 4 and 8 nodes, both within
# noise; one run chose 8 nodes against an AR cost read 8% high and measured 0.82x AR, another chose 4: 1.24x)
TREE_MARGIN = 1 / COST_NOISE


MAX_COMPILED = 4  # where the step compiles, the most sizes a choice compiles to time (AR and 3 trees: _screened)


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

    An eager step is timed size by size (_swept); a compiled one is screened first (_screened), since timing it
    means compiling it. Either way a size is chosen only from costs measured in the step's own form."""
    table = table or StepCostTable()
    timer = _StepTimer(table, model_key, mode, batch, sampling, prompt_length, drafts)
    candidates = []
    for size in sorted(sizes):
        decoder = decoder_for(size)
        body = decoder.grid.num_body_tokens
        rows_waited_for = 1 if continuous else batch  # a fixed batch steps until its slowest row is done
        passes = body if size == 1 else expected_batch_passes(decoder.tree, accept_rate, body, rows_waited_for)
        candidates.append(_Candidate(size, decoder, body / passes))
    compiles = candidates[0].decoder.compiled_step is not None
    estimates = _screened(candidates, timer) if compiles else _swept(candidates, timer)
    if timer.timed_trees and candidates[0].size == 1:
        # AR again, after the trees: a slow spell of the machine while AR alone was timed (a shared or virtual CPU
        # runs 1.5x slower for seconds at a time) would make every tree look faster than it is; the cost is the
        # lower of the two timings (a slow spell during a tree's timing only errs towards AR)
        ar = candidates[0]
        estimates[1]["seconds_per_step"] = table.lower(timer.key(ar), timer.measure(ar))
    return SizeChoice(_fastest(estimates), estimates)


@dataclass
class _Candidate:
    size: int
    decoder: object
    tokens: float  # expected tokens per pass of a row, for the batch (expected_batch_passes)


@dataclass
class _StepTimer:
    """Seconds per step of a candidate: from the cost table, or timed (and kept there); in the decoder's own form,
    or, with compiled=False, its step run uncompiled (a screen: no compile)."""

    table: StepCostTable
    model_key: str
    mode: str
    batch: int
    sampling: SamplingConfig
    prompt_length: int
    drafts: str
    said: bool = False  # a compiled step's timing says what is going on (each compile takes minutes at 7B)
    timed_trees: bool = False  # a tree size was timed (not read from the table) in the step's own form
    compiled_timings: int = 0  # sizes timed (not read from the table) in a compiled step's own form

    def key(self, candidate: _Candidate, compiled: bool = True) -> str:
        decoder = candidate.decoder
        return step_key(decoder.backbone.device, self.model_key, self.mode, candidate.size, self.batch,
                        self.sampling, step_form(decoder, compiled), self.drafts)

    def known(self, candidate: _Candidate) -> bool:
        return self.table.has(self.key(candidate))

    def measure(self, candidate: _Candidate, compiled: bool = True) -> float:
        return measure_step_seconds(candidate.decoder, self.batch, self.sampling, prompt_length=self.prompt_length,
                                    compiled=compiled)

    def seconds(self, candidate: _Candidate, compiled: bool = True) -> float:
        key = self.key(candidate, compiled)
        timed = not self.table.has(key)
        announce = timed and compiled and candidate.decoder.compiled_step is not None  # eager: a second, no word
        if announce and not self.said:
            self.said = True
            print(f"hawk_kernels: num_nodes='auto' is timing {self.mode} steps at batch {self.batch} "
                  f"({step_form(candidate.decoder)}): every size uncompiled, then at most {MAX_COMPILED} compiled, "
                  f"each compiling first; done once per device, model shape and batch, kept in {self.table.path}",
                  file=sys.stderr, flush=True)
        seconds = self.table.seconds(key, lambda: self.measure(candidate, compiled))
        if announce:
            print(f"hawk_kernels:   {candidate.size} node{'s' * (candidate.size > 1)}: {seconds * 1e3:.2f} ms per "
                  f"step", file=sys.stderr, flush=True)
        self.timed_trees = self.timed_trees or (timed and compiled and candidate.size > 1)
        self.compiled_timings += announce
        return seconds


def _swept(candidates: list[_Candidate], timer: _StepTimer) -> dict:
    """Every size timed, smallest first, but a size whose cost is not in the table yet only if it could still win:
    a bigger tree does at least the work of a smaller one, so its step costs at least the largest cost measured so
    far (less COST_NOISE), and its best possible speed is its tokens per pass over that cost. A size that cannot
    beat the best so far is not measured; its estimate says so."""
    estimates, best_speed, cost_floor = {}, 0.0, 0.0  # cost_floor: the largest cost so far, which
    #                                                     bounds every bigger tree's cost from below
    for candidate in candidates:
        if not timer.known(candidate) and cost_floor > 0 and \
                candidate.tokens / (COST_NOISE * cost_floor) <= best_speed:
            estimates[candidate.size] = dict(
                tokens_per_pass=candidate.tokens, seconds_per_step=None,
                not_measured="cannot beat a smaller tree: it costs at least as much per step")
            continue
        seconds = timer.seconds(candidate)
        cost_floor, best_speed = max(cost_floor, seconds), max(best_speed, candidate.tokens / seconds)
        estimates[candidate.size] = dict(tokens_per_pass=candidate.tokens, seconds_per_step=seconds)
    return estimates


def _screened(candidates: list[_Candidate], timer: _StepTimer) -> dict:
    """A compiled step's sizes, compiling few of them (on a GPU a compile takes a minute or more at the 7B shape, and
    timing all six sizes would cost minutes before the first image). Every size is timed uncompiled (the screen:
    graph capture costs milliseconds); the smallest size (AR) is compiled and timed, then the tree predicted
    fastest (_predicted_cost), then, up to MAX_COMPILED sizes, the size predicted fastest while its prediction
    comes within COST_NOISE of the best size timed. Sizes an earlier choice compiled are timed already (the
    table): they count as timed here, free, and do not count towards MAX_COMPILED. On 2,000 random cost curves
    whose costs are 3% off that model (tests/test_tree_size.py) it chose the best size of a compiled sweep in 99.4%
    and at least 0.93x its speed in all, compiling 2.8 sizes on average where a sweep compiles up to 6 (10% off:
    the best in 80%, >= 0.75x). The choice is made from the compiled costs alone."""
    screen = {c.size: timer.seconds(c, compiled=False) for c in candidates}
    # AR, and every size a call before this one compiled (its cost is in the table: free)
    compiled = {c.size: timer.seconds(c) for c in candidates if c is candidates[0] or timer.known(c)}
    while timer.compiled_timings < MAX_COMPILED:
        best = max(c.tokens / compiled[c.size] for c in candidates if c.size in compiled)
        predicted = {c.size: _predicted_cost(c.size, screen, compiled) for c in candidates if c.size not in compiled}
        pick = max((c for c in candidates if c.size in predicted), key=lambda c: c.tokens / predicted[c.size],
                   default=None)
        a_tree_timed = any(size > 1 for size in compiled)  # until one is, predictions rest on AR's overhead alone
        if pick is None or (a_tree_timed and pick.tokens / predicted[pick.size] <= COST_NOISE * best):
            break
        compiled[pick.size] = timer.seconds(pick)
    estimates = {}
    for c in candidates:
        estimates[c.size] = dict(tokens_per_pass=c.tokens, seconds_per_step=compiled.get(c.size),
                                 uncompiled_seconds_per_step=screen[c.size])
        if c.size not in compiled:
            estimates[c.size].update(predicted_seconds_per_step=_predicted_cost(c.size, screen, compiled),
                                     not_measured="not compiled: predicted slower than a size timed compiled")
    return estimates


def _predicted_cost(size: int, screen: dict, compiled: dict) -> float:
    """`size`'s compiled cost, predicted from its uncompiled one (screen). Compiling takes away overhead (kernel
    launches, Python dispatch) that hardly depends on the tree size, and leaves the work that does (the GEMMs' rows,
    attention's queries, the verify's logits): the two forms differ by a constant, the same for every tree (a tree's
    extra ops make it another constant than AR's: measured, bundled model, CPU, hawk+jacobi, batch 1, eager -
    compiled = 1.42 ms for AR, 2.51-2.66 ms at 4-32 nodes). So a tree's prediction is its uncompiled cost less the
    difference of the trees timed both ways: interpolated between the two nearest (by uncompiled cost), else that
    of the nearest one, else AR's; and at least COST_NOISE x the compiled cost of any smaller size timed."""
    trees = sorted((screen[n], screen[n] - compiled[n]) for n in compiled if n > 1) or \
        [(screen[n], screen[n] - compiled[n]) for n in compiled]  # no tree timed yet: AR's difference
    x = screen[size]
    below = [point for point in trees if point[0] <= x]
    above = [point for point in trees if point[0] > x]
    if below and above:
        (x0, d0), (x1, d1) = below[-1], above[0]
        saved = d0 + (d1 - d0) * (x - x0) / (x1 - x0)
    else:
        saved = (below[-1] if below else above[0])[1]
    floor = max((compiled[n] for n in compiled if n < size), default=0.0)
    return max(x - saved, COST_NOISE * floor)


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
