"""Tree calibration: acceptance measured per (depth, rank) with a wide exploratory tree, smoothed into the rates
that shape every decoder's tree (TreeTemplate.from_budget). The rates belong to the heads they were measured
with and are saved beside them (heads.TREE_RATES_FILE); any tree stays lossless, only its shape changes.

Why measure: which source wins at which depth is empirical (horizontal heads run out after their last
distance, vertical drafts exist once a row above is committed). Jacobi modes draft from how far the previous
tree reached, so their exploratory tree is the rank-0 chain (the Jacobi chain) down to the measured depth with
siblings along it (rank 1 at every depth, then rank 2, ...): Jacobi drafts are weak exactly where the previous
tree was conditioned on the token the verifier rejected (the next depth, and the row below it), deep in the
tree where a best-first exploratory tree never puts siblings.
"""
from __future__ import annotations

import datetime

import torch

from ..acceptance import PRIOR_WEIGHT, smoothed_rates  # noqa: F401 (PRIOR_WEIGHT: re-exported)
from ..decoder import HawkDecoder
from ..drafts import MODE_SOURCES, needs_heads, sources_for
from ..tree import TreeTemplate

CHECK_SEED_OFFSET = 1_000_000  # the layout check's images, away from the calibration's
JACOBI_CHAIN = 64  # the Jacobi chain of the exploratory tree (64-node trees reserve 48)
DIGIT_PROMPTS = tuple(f"a handwritten digit {d}" for d in "zero one two three four five six seven eight nine".split())


def exploratory_tree(heads, mode: str, nodes: int, depth: int, chain: int) -> TreeTemplate:
    sources = sources_for(mode, heads if needs_heads(mode) else None, measured=True)  # the layout rates are used with
    width = max(1, sum(s.num_candidates() for s in sources))
    if not chain:
        return TreeTemplate.from_budget(nodes, depth, width)
    paths = [(0,) * k for k in range(1, chain + 1)]
    siblings = [(0,) * (k - 1) + (rank,) for rank in range(1, width) for k in range(1, chain + 1)]
    return TreeTemplate.from_paths(paths + siblings[: max(0, nodes - 1 - chain)])


def measure(pipe, mode: str, images: int, batch: int, nodes: int, depth: int, cfg: float | None, seed: int,
            chain: int = 0, prompts=DIGIT_PROMPTS, size=None):
    """Decode `images` images (prompts cycled, seeds seed + batch start) with the exploratory tree of `mode`;
    -> (rates, tried, accepted), each [depth, rank]. pipe: an ImagePipeline (its default sampling; cfg None:
    its default CFG). prompts: text, or token-id lists."""
    heads = pipe.heads if needs_heads(mode) else None
    tree = exploratory_tree(pipe.heads, mode, nodes, depth, chain)
    grid = pipe.layout(size)
    dec = HawkDecoder(pipe.backbone(grid), heads, grid, mode=mode, tree=tree, heads_measured=True,
                      verify=pipe.verify)  # measured under the rule the pipeline's decoders verify with
    shape = (dec.tree.max_depth + 1, dec.tree.max_rank)  # may stop short of `depth`
    tried = torch.zeros(shape, dtype=torch.int64)
    accepted = torch.zeros_like(tried)
    for out in _decode(pipe, dec, mode, images, batch, cfg, seed, prompts, size):
        for one in out.outputs:
            tried += torch.tensor(one.rank_tried)
            accepted += torch.tensor(one.rank_accepted)
    return smoothed_rates(tried[1:], accepted[1:]), tried[1:], accepted[1:]


def _keep_rates_if_heads_win(pipe, report: dict, images: int, batch: int, cfg, seed: int, prompts, size,
                             nodes: int = 32) -> None:
    """hawk+jacobi's rates are measured in the layout where the heads own depth 1, and rates make a decoder use
    that layout; without rates the Jacobi predictions own depth 1 (drafts.JACOBI_SOURCES). Decode the same
    images both ways (`nodes`-node trees) and keep the rates only if they win; else drop them, so these heads'
    decoders take the Jacobi layout. Seeds away from the calibration's own (the rates were fit to those images).
    Both figures go in report["runs"]["hawk+jacobi"]["layout_check"]."""
    seed = seed + CHECK_SEED_OFFSET
    grid, rates = pipe.layout(size), report["rates"]["hawk+jacobi"]
    tokens_per_pass = {}
    for label, table in (("heads_own_depth_1", rates), ("jacobi_owns_depth_1", None)):
        dec = HawkDecoder(pipe.backbone(grid), pipe.heads, grid, mode="hawk+jacobi", num_nodes=nodes,
                          accept_rates=table, compile=False, verify=pipe.verify)
        tokens = passes = 0
        for out in _decode(pipe, dec, "hawk+jacobi", images, batch, cfg, seed, prompts, size):
            tokens, passes = tokens + sum(out.committed), passes + sum(out.num_forward_passes)
        tokens_per_pass[label] = round(tokens / max(1, passes), 4)
    heads_win = tokens_per_pass["heads_own_depth_1"] >= tokens_per_pass["jacobi_owns_depth_1"]
    report["runs"]["hawk+jacobi"]["layout_check"] = dict(tokens_per_pass, nodes=nodes, kept_rates=heads_win)
    if not heads_win:
        for table in ("rates", "tried", "accepted"):
            report[table].pop("hawk+jacobi", None)


def _decode(pipe, dec, mode: str, images: int, batch: int, cfg, seed: int, prompts, size):
    """`images` images with decoder `dec`, `batch` at a time (prompts cycled, seeds seed + batch start): one
    PipelineOutput per batch."""
    for start in range(0, images, batch):
        chunk = [prompts[i % len(prompts)] for i in range(start, min(images, start + batch))]
        given = dict(input_ids=chunk) if isinstance(chunk[0], list) else dict(prompts=chunk)
        yield pipe.generate_tokens(**given, mode=mode, size=size, seed=seed + start, cfg_scale=cfg, decoder=dec)


def calibrate(pipe, modes, images: int = 40, batch: int = 20, nodes: int = 64, cfg: float | None = None,
              seed: int = 10_000, jacobi_depth: int = JACOBI_CHAIN, jacobi_nodes: int = 160, report: dict | None = None,
              command: str = "", progress: bool = True, prompts=DIGIT_PROMPTS, size=None) -> dict:
    """Measure every mode in `modes` (seeds away from evaluation seeds) into `report` (a tree_rates.json dict;
    modes not measured keep their tables; `runs` says which run made each). pipe: an ImagePipeline (its default
    sampling; `prompts`: text or token-id lists, the digit prompts by default, which suit the bundled demo;
    `size`: the layout)."""
    heads = pipe.heads
    depths = {"jacobi": jacobi_depth, "hawk+jacobi": jacobi_depth}
    if heads is not None:
        depths.update(medusa=heads.num_horizontal, vertical=heads.num_horizontal + 2, hawk=heads.num_horizontal + 4)
    run = dict(images=images, exploratory_nodes=nodes, cfg=cfg, date=datetime.date.today().isoformat(),
               command=command, size=size if size is None or isinstance(size, int) else list(size),
               verify=pipe.verify)  # the rule the rates hold under (the coupled rule accepts a little differently)
    report = report or dict(rates={}, tried={}, accepted={}, **run)
    report.setdefault("runs", {})
    for mode in modes:
        chain = depths[mode] if "jacobi" in MODE_SOURCES[mode] else 0
        mode_nodes = jacobi_nodes if chain else nodes
        rates, tried, accepted = measure(pipe, mode, images, batch, mode_nodes, depths[mode], cfg, seed, chain,
                                         prompts, size)
        report["rates"][mode] = [[round(float(r), 4) for r in row] for row in rates]
        report["tried"][mode], report["accepted"][mode] = tried.tolist(), accepted.tolist()
        report["runs"][mode] = dict(run, exploratory_nodes=mode_nodes, chain=chain)
        if mode == "hawk+jacobi":
            _keep_rates_if_heads_win(pipe, report, images, batch, cfg, seed, prompts, size)
        if progress:
            print(mode)
            for depth, row in enumerate(report["rates"][mode], 1):
                print(f"  depth {depth}: " + " ".join(f"{r:.3f}" for r in row))
    return report
