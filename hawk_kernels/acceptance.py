"""Acceptance measured on the user's own model: the rates num_nodes="auto" weighs tree sizes with where no
calibrated rates came with the heads (every model without trained heads, whose default mode is jacobi; heads
never calibrated with python/calibrate_tree.py).

Why: the generic prior (0.6 * 0.5**rank at every depth) caps a chain at 2.5 tokens per pass, while a Jacobi chain
on the bundled model commits about 6. From the prior, "auto" chose 8 nodes instead of 16 at batch 1 (about 20%
slower) and plain AR steps instead of a tree at batch 16 (about 10%).

How: the first "auto" call of a key (the model's weights, the heads' where the mode drafts with them, the mode,
the verify rule, the sampling values, the image layout) decodes a probe: up to PROBE_ROWS of the call's own
prompts, with their seeds and the call's sampling, through an uncompiled PROBE_NODES-node tree of the mode (its
steps CUDA-graphed on a GPU, with no compile: an H200 took 8.34 ms per graphed AR step at the 7B shape, 37.4 ms
eager), for at most PROBE_PASSES passes, counting per (depth, rank) the nodes tried (their parent was accepted) and
accepted. Every later generation of that key, at any tree size, adds its counts, so the rates sharpen with use.
The counts are smoothed into rates as tree calibration smooths its own (smoothed_rates, here) and kept in
acceptance.json beside the step costs (disk_table.py); the probe runs under the table's lock, so concurrent
processes probe once. A probe of an image's first rows is biased towards them: a long continuous call re-chooses
its size after its first whole images (pipelines/continuous.py), and the counts of whole images soon outweigh the
probe's.

The counts decide a tree size only. Under the coupled rule (the default) an image does not depend on its tree;
under the rejection rule the chosen size is recorded in the output, and passing it back reproduces the images.
The decoders' tree shapes keep the pipeline's own rates (a shape that changed with use would change
rejection-rule images for the same size).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import torch

from .decoder import HawkDecoder, HawkOutput
from .engine.session import collect_output
from .disk_table import DiskTable, cache_path
from .drafts import needs_heads
from .fingerprint import exact_digest
from .target import SamplingConfig

PRIOR_WEIGHT = 4.0  # pseudo-counts of the generic prior 0.6 * 0.5**rank in each (depth, rank) estimate
PROBE_ROWS = 2  # images the probe decodes (acceptance is a property of a row, not of the batch)
PROBE_NODES = 32  # the probe's tree (jacobi: a 31-deep chain; deeper depths inherit the deepest measured rate)
PROBE_PASSES = 64  # at most this many probe passes (a 768 px image is ~2,400 tokens: its first rows)


@dataclass
class ProbeBatch:
    """What a probe decodes: a call's first prompt rows as the decoder takes them (pipelines/rows.stack_rows)."""

    ids: torch.Tensor
    mask: torch.Tensor
    negative: torch.Tensor | None
    negative_mask: torch.Tensor | None
    seeds: list[int]


class AcceptanceTable(DiskTable):
    """{key: {"tried": [depth][rank], "accepted": [depth][rank], "images": n, "probe_images": k}} in
    acceptance.json under the cache directory (HAWK_CACHE_DIR)."""

    def __init__(self, path=None):
        super().__init__(path if path is not None else cache_path("acceptance.json"))

    def add(self, key: str, tried: torch.Tensor, accepted: torch.Tensor, images: int, probe: bool = False) -> None:
        """Add counts ([depth, rank], depth 1 first) of `images` images to `key`'s."""
        self.change(lambda entries: entries.update({key: _added(entries.get(key), tried, accepted, images, probe)}))

    def probe_once(self, key: str, probe: Callable[[], tuple[torch.Tensor, torch.Tensor, int]]) -> None:
        """Where `key` has no counts, probe() -> (tried, accepted, images), added as probed. Under the table's lock:
        concurrent processes (torchrun ranks) probe once, and the others read its counts (so their sizes agree)."""
        def probe_if_missing(entries: dict) -> None:
            if not _counted(entries.get(key)):
                entries[key] = _added(entries.get(key), *probe(), probe=True)

        if not _counted(self.merged().get(key)):
            self.change(probe_if_missing)

    def rates(self, key: str) -> tuple[list[list[float]] | None, int, int]:
        """(smoothed rates[depth - 1][rank] of `key`, or None where nothing was counted; images counted, of which
        probed)."""
        entry = self.merged().get(key)
        if not _counted(entry):
            return None, 0, 0
        tried, accepted = (torch.tensor(entry[name], dtype=torch.float64) for name in ("tried", "accepted"))
        return smoothed_rates(tried, accepted).tolist(), entry["images"], entry["probe_images"]


def _counted(entry) -> bool:
    return _valid(entry) and bool(entry["images"] and any(map(any, entry["tried"])))


def _valid(entry) -> bool:
    """Whether `entry` is counts as this module writes them (a hand-edited or foreign entry reads as none, and the
    next counts replace it, as an unreadable file is measured again)."""
    def table(value) -> bool:
        return (isinstance(value, list) and value and all(isinstance(row, list) and row for row in value)
                and len({len(row) for row in value}) == 1
                and all(isinstance(n, int) and n >= 0 for row in value for n in row))

    return (isinstance(entry, dict) and table(entry.get("tried")) and table(entry.get("accepted"))
            and all(isinstance(entry.get(name), int) and entry[name] >= 0 for name in ("images", "probe_images"))
            and torch.tensor(entry["accepted"]).shape == torch.tensor(entry["tried"]).shape)


def _added(entry, tried, accepted, images: int, probe: bool = False) -> dict:
    """An entry's counts plus counts of `images` more images (probed or generated)."""
    old = entry if _valid(entry) else dict(tried=[[0]], accepted=[[0]], images=0, probe_images=0)
    return dict(tried=_summed(old["tried"], tried), accepted=_summed(old["accepted"], accepted),
                images=old["images"] + images, probe_images=old["probe_images"] + images * probe)


def acceptance_key(pipe, mode: str, grid, sampling: SamplingConfig) -> str | None:
    """The key of the counts a call of `mode` measures and reads, or None where none are kept: "ar", or a mode the
    pipeline has calibrated rates for (they shape its trees and decide its sizes)."""
    if mode == "ar" or pipe.accept_rates.get(mode) is not None:
        return None
    weights = [exact_digest(pipe.model)] + ([exact_digest(pipe.heads)] if needs_heads(mode) else [])
    values = f"cfg {sampling.cfg_scale}, temperature {sampling.temperature}, top-k {sampling.top_k}, " \
             f"top-p {sampling.top_p}"
    return f"{pipe.family}|{'+'.join(weights)}|{mode}|{pipe.verify} verify|{values}|{grid.height}x{grid.width}"


def described(key: str, entry) -> str:
    """An acceptance_key and its counts, for a person: family, layout, mode, rule, sampling and images counted
    (the weights' digests left out)."""
    parts = key.split("|")
    if len(parts) != 6 or not _valid(entry):
        return f"{key}: not readable (measured again when used)"
    family, _, mode, rule, sampling, layout = parts
    return (f"{family} {layout}, {mode}, {rule}, {sampling}: {entry['images']} image(s) counted "
            f"({entry['probe_images']} by the probe)")


def measured_rates(pipe, key: str, mode: str, grid, sampling: SamplingConfig,
                   probe: Callable[[], ProbeBatch] | None, table: AcceptanceTable | None = None
                   ) -> tuple[list[list[float]] | None, str, bool]:
    """(rates for `key`, where they came from, for the output, whether they rest on a probe alone): the counts
    kept, after a probe of the rows probe() builds where none are kept yet (built only then: most calls read the
    counts; probe None: none is run, and the generic prior stands in)."""
    table = table or AcceptanceTable()
    rates, images, probed = table.rates(key)
    if rates is None and probe is not None:
        def measure() -> tuple[torch.Tensor, torch.Tensor, int]:
            rows = probe()
            if rows.ids.device.type == "cuda":  # predicted ~1 s at the 7B shape: said, as timing is
                print(f"hawk_kernels: num_nodes='auto' is measuring {mode}'s acceptance on this model "
                      f"({len(rows.seeds)} image(s), at most {PROBE_PASSES} passes): once per model, mode and "
                      f"sampling, kept in {table.path}", file=sys.stderr, flush=True)
            return (*probe_counts(pipe, mode, grid, sampling, rows), len(rows.seeds))

        table.probe_once(key, measure)
        rates, images, probed = table.rates(key)
    if rates is None:
        return None, "not measured: the generic prior", True
    return rates, f"measured on this model ({images} image{'s' * (images != 1)})", images == probed


def probe_counts(pipe, mode: str, grid, sampling: SamplingConfig, probe: ProbeBatch) -> tuple[torch.Tensor, ...]:
    """(tried, accepted) [depth, rank] of an uncompiled PROBE_NODES-node decoder of `mode` (the pipeline's layout, heads
    and rule) over `probe`'s rows, for at most PROBE_PASSES passes."""
    heads = pipe.heads if needs_heads(mode) else None
    decoder = HawkDecoder(pipe.backbone(grid), heads, grid, mode=mode, num_nodes=PROBE_NODES, compile=False,
                          cuda_graphs="auto", verify=pipe.verify)
    session = decoder.start(probe.ids, probe.negative, sampling.cfg_scale, sampling.temperature, sampling.top_k,
                            sampling.top_p, seed=probe.seeds, attention_mask=probe.mask,
                            negative_attention_mask=probe.negative_mask)
    for _ in range(PROBE_PASSES):
        if len(session.finished_rows()) == len(probe.seeds):
            break
        session.run(1)
    return counts_of([collect_output(session.plan, session.state, cuda_graph=False)])  # finished or not


def counts_of(outputs: list[HawkOutput]) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed (tried, accepted) [depth, rank] counts of decoder outputs, depth 1 first (the root, depth 0,
    is never drafted)."""
    tried = accepted = [[0]]
    for out in outputs:
        tried = _summed(tried, torch.tensor(out.rank_tried)[1:])
        accepted = _summed(accepted, torch.tensor(out.rank_accepted)[1:])
    return torch.tensor(tried), torch.tensor(accepted)


def record(key: str | None, outputs: list[HawkOutput], images: int, table: AcceptanceTable | None = None) -> None:
    """Add the counts of a generation's outputs to `key`'s (nothing where key is None or no tree was drafted)."""
    if key is None:
        return
    tried, accepted = counts_of(outputs)
    if tried.any():
        (table or AcceptanceTable()).add(key, tried, accepted, images)


def smoothed_rates(tried: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
    """[depth, rank] counts -> rates: PRIOR_WEIGHT pseudo-counts of the generic prior 0.6 * 0.5**rank, except in
    cells the exploratory tree never tried, which inherit their rank's rate from the nearest shallower depth (a
    generic prior there would outbid measured ranks: 0.3 for a rank 1 that is accepted 1 time in 10)."""
    prior = 0.6 * 0.5 ** torch.arange(tried.shape[1], dtype=torch.float64)
    rates = (accepted + PRIOR_WEIGHT * prior) / (tried + PRIOR_WEIGHT)
    for depth in range(1, rates.shape[0]):
        rates[depth] = torch.where(tried[depth] > 0, rates[depth], rates[depth - 1])
    return rates


def _summed(table: list[list[int]], more: torch.Tensor) -> list[list[int]]:
    """table + more, [depth, rank] counts of any two shapes, zero-padded to the larger."""
    old = torch.tensor(table, dtype=torch.int64)
    more = torch.as_tensor(more, dtype=torch.int64).reshape(-1, more.shape[-1] if more.dim() else 1)
    out = torch.zeros(max(old.shape[0], more.shape[0]), max(old.shape[1], more.shape[1]), dtype=torch.int64)
    out[: old.shape[0], : old.shape[1]] += old
    out[: more.shape[0], : more.shape[1]] += more
    return out.tolist()

