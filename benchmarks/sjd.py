"""Speculative Jacobi decoding (SJD) as published, as a baseline beside our modes (issue 20, item 5).

SJD: Teng et al., "Accelerating Auto-regressive Text-to-Image Generation with Training-free Speculative Jacobi
Decoding", ICLR 2025, arXiv 2410.01699; public code tyshiwo1/Accelerating-T2I-AR-with-SJD
(scheduler/jacobi_iteration_lumina_mgpt.py). docs/method.md §7 summarises it. This file is a BASELINE, not a mode
of the package: it reuses the backbone adapter, its slot KV cache, the target processor and the verifier op, and
nothing here is imported by hawk_kernels.

One SJD pass, per image row (batch rows each keep their own frontier):
  * the target runs over the last committed token (the root) and a fixed window of `window - 1` draft tokens
    (SJD's max_num_new_tokens = 16 is the forward width: the root + 15 drafts, at most 16 tokens committed);
  * the drafts are tested left to right: draft x at a position is accepted with probability min(1, p(x)/q(x)),
    p the target's law there now, q the law x was drawn from: the PREVIOUS pass's law at that position (a
    Jacobi draft) or the one-hot law of a random initial token (so acceptance is p(x));
  * at the first rejection a token is drawn from normalize(max(p - q, 0)) and the rest of the window is
    dropped; when every draft is accepted, a bonus token comes from the last position's law;
  * the next window: positions the pass predicted past the new frontier get a fresh sample from this pass's
    laws (the Jacobi iteration; fresh randomness, no coupling); the positions it did not reach get random
    image tokens drawn uniformly from the image codes, recorded with a one-hot q.
The test is ops.accept_reject with a chain-shaped tree and rule "rejection": on a chain (one child per node) the
multi-draft rule is exactly SJD's (test, residual, bonus). The target law is the package's (TargetProcessor:
logits -> CFG -> layout mask -> top-k -> top-p -> temperature).

Layout tokens: positions that hold a row-end token are forced in the target law (one-hot). With
layout_drafts="forced" (default) a random initial draft at such a position IS the row-end token (one-hot q,
accepted with probability 1, as our decoder places layout tokens); layout_drafts="random" is SJD's code to
the letter (a random image code there, always rejected, the row-end token then comes from the residual). Both
are exact. Jacobi drafts at forced positions are drawn from the forced law, so they are the row-end token in
either case.

Benchmark: on the bundled model, AR, SJD, Medusa, Hawk, Jacobi and Hawk+Jacobi with the same prompts, seeds,
CFG (3.0) and sampling (temperature 1): tokens per pass and seconds per image at batch 1 and batch 16 (SJD runs
batched: each row its own frontier, like our decoder), modes interleaved image by image so machine noise falls
on all of them alike.

    python benchmarks/sjd.py --out benchmarks/results/sjd_peer_cpu.json     # the full CPU run (a few minutes)
    python benchmarks/sjd.py --smoke --out /tmp/sjd_smoke.json              # seconds (CI: tests/test_sjd_baseline.py)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

import hawk_kernels as hk
from hawk_kernels.backbones import backbone_for
from hawk_kernels.grid import ImageGrid
from hawk_kernels.target import SamplingConfig, TargetProcessor

NEG_INF = float("-inf")
ORIGINS = ("random", "jacobi", "layout")  # where a draft came from (a forced position counts as layout)
RANDOM, JACOBI, LAYOUT = range(3)


@dataclass
class SJDOutput:
    image_tokens: torch.Tensor  # [B, H, W] global image code ids
    generated: torch.Tensor  # [B, body (+ image_end)] global ids
    num_forward_passes: int  # batch passes after prefill (the slowest row's)
    accepted_lengths: list[list[int]]  # per pass, per row: tokens committed by that pass (0: row already done)
    accepted_by_origin: dict[str, int] = field(default_factory=dict)  # accepted drafts per origin (ORIGINS)

    def passes(self, row: int) -> int:
        """Passes row `row` took part in (it committed at least one token)."""
        return sum(1 for step in self.accepted_lengths if step[row] > 0)

    @property
    def mean_accepted_length(self) -> float:
        """Tokens committed per target pass, as HawkOutput.mean_accepted_length counts them (the prefill's
        first token not included; a finished row waiting for the batch not counted)."""
        total = sum(sum(step) for step in self.accepted_lengths)
        row_passes = sum(sum(1 for n in step if n > 0) for step in self.accepted_lengths)
        return total / max(1, row_passes)


class SJDDecoder:
    """SJD over any model our decoder takes (a transformers causal LM or a backbone adapter) and its ImageGrid.

    window: the forward width of a pass (the root + window - 1 drafts; SJD: 16). layout_drafts: "forced" or
    "random" (see the module docstring). broken: deliberately WRONG variants, for the negative controls of the
    law test only: "current_q" tests a Jacobi draft against the current pass's law at its position instead of the
    law it was drawn from (so it is always accepted)."""

    BROKEN = (None, "current_q")

    def __init__(self, model, grid: ImageGrid, window: int = 16, layout_drafts: str = "forced",
                 backend: str = "auto", broken: str | None = None):
        if not isinstance(window, int) or window < 2:
            raise ValueError(f"window: expected an int >= 2 (the root and at least one draft), got {window!r}")
        if layout_drafts not in ("forced", "random"):
            raise ValueError(f"layout_drafts: expected 'forced' or 'random', got {layout_drafts!r}")
        if broken not in self.BROKEN:
            raise ValueError(f"broken: expected one of {self.BROKEN}, got {broken!r}")
        self.backbone = backbone_for(model, grid)
        self.grid, self.window, self.layout_drafts = grid, window, layout_drafts
        self.backend, self.broken = backend, broken
        dev = self.backbone.device
        self.parents = torch.arange(-1, window - 1, device=dev)  # a chain: node n's parent is n - 1
        self.ancestor_mask, self.depth, _ = hk.ops.tree_mask(self.parents, window - 1, backend=backend)
        self.laws = torch.arange(window, device=dev)  # node n's draft law is row n of the draft table

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, negative_input_ids=None, cfg_scale: float = 1.0,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int = 0) -> SJDOutput:
        """input_ids [B, L] left-padded prompts (attention_mask: 1 = token); negative_input_ids [1 or B, L'] the
        unconditional prompts for CFG (default: each prompt's last token), as HawkDecoder.generate takes them."""
        backbone, grid, window = self.backbone, self.grid, self.window
        sampling = SamplingConfig(cfg_scale, temperature, top_k, top_p)
        dev = backbone.device
        target = TargetProcessor(grid, sampling, dev)
        ids = torch.as_tensor(input_ids, device=dev).long()
        ids = ids[None] if ids.dim() == 1 else ids
        valid = (torch.ones_like(ids, dtype=torch.bool) if attention_mask is None
                 else torch.as_tensor(attention_mask, device=dev).bool().reshape(ids.shape))
        batch = ids.shape[0]
        if sampling.uses_cfg:
            neg = ids[:, -1:] if negative_input_ids is None else torch.as_tensor(negative_input_ids, device=dev).long()
            neg = (neg[None] if neg.dim() == 1 else neg).expand(batch, -1)
            ids, valid = _left_pad_cat([(ids, valid), (neg, torch.ones_like(neg, dtype=torch.bool))])
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        body_len, vocab = grid.num_body_tokens, grid.local_vocab_size

        def both(rows):  # [B, ...] -> [B * branches, ...]: the CFG branches see the same tokens
            return rows.repeat(sampling.branches, *([1] * (rows.dim() - 1)))

        cache = backbone.new_cache(ids.shape[0], ids.shape[1] + body_len + 2 * window)
        last_hidden = backbone.prefill(cache, ids, valid)
        body = torch.zeros(batch, body_len + 1, dtype=torch.int64, device=dev)  # the last column: a write sink
        first = target(backbone.image_logits(last_hidden)[:, None], torch.zeros(batch, 1, dtype=torch.int64,
                                                                                  device=dev))[:, 0]
        _check_laws(first)
        body[:, 0] = _sample(first, gen)
        committed = torch.ones(batch, dtype=torch.int64, device=dev)
        logits = None  # the previous pass's laws: none yet, so every draft starts random
        drafts, logq, origin = self._next_drafts(None, committed, committed, gen, batch, dev)
        slots = torch.arange(window, device=dev)[None]
        history, by_origin = [], torch.zeros(len(ORIGINS), dtype=torch.int64, device=dev)
        while int(committed.min()) < body_len:
            root = body.gather(1, committed[:, None] - 1)
            tokens = torch.cat([root, drafts], 1)  # [B, window]: node n >= 1 sits at body offset committed + n - 1
            hidden = backbone.forward_tree(cache, both(backbone.embed_image_tokens(tokens)), self.depth,
                                           self.ancestor_mask)
            logits = target(backbone.image_logits(hidden), committed[:, None] + slots)  # row n: law of offset c + n
            nodes = torch.cat([torch.full_like(root, -1), drafts], 1)
            table = torch.cat([torch.zeros_like(logits[:, :1]), logq.to(logits.dtype)], 1)  # row 0: the root's
            if self.broken == "current_q":  # WRONG: a Jacobi draft tested against the law of this very pass
                table[:, 1:] = torch.where((origin == JACOBI)[..., None], logits[:, :-1], table[:, 1:])
            uniforms = torch.rand(batch, window, 2, generator=gen, device=dev, dtype=torch.float64)
            accept_len, path, bonus = hk.ops.accept_reject(logits, table, nodes, self.parents,
                                                           self.laws.expand(batch, -1), uniforms, "rejection",
                                                           backend=self.backend, validate=False)
            _check_laws(logits, bonus)
            remaining = (body_len - committed).clamp(min=0)
            count = torch.minimum(accept_len + 1, remaining)  # accepted drafts + the bonus, cut at the image end
            new = torch.cat([drafts, torch.zeros_like(root)], 1)
            new = torch.where(slots == accept_len[:, None], bonus[:, None], new)  # slot s < accept_len: draft s
            where = committed[:, None] + slots
            body.scatter_(1, torch.where(slots < count[:, None], where, body_len), new)
            backbone.commit(cache, both(path), both(count))  # the root + the accepted drafts enter the cache
            kept_drafts = torch.minimum(accept_len, count)
            accepted = slots[:, : window - 1] < kept_drafts[:, None]
            by_origin.index_add_(0, origin[accepted], torch.ones_like(origin[accepted]))
            history.append(count)
            old = committed.clone()
            committed += count
            drafts, logq, origin = self._next_drafts(logits, old, committed, gen, batch, dev)
        generated = backbone.token_ids(body[:, :body_len])
        image_tokens = grid.image_tokens(generated)
        if grid.image_end_token is not None:
            generated = torch.cat([generated, torch.full_like(generated[:, :1], grid.image_end_token)], 1)
        steps = torch.stack(history).tolist() if history else []
        return SJDOutput(image_tokens, generated, len(steps), steps,
                         dict(zip(ORIGINS, by_origin.tolist())))

    def _next_drafts(self, logits, old, committed, gen, batch, dev):
        """The window's drafts for body offsets committed .. committed + window - 2: a fresh sample from the last
        pass's law where that pass predicted the offset (its row n predicted offset old + n), else a random
        image code (one-hot q); at forced offsets with layout_drafts="forced", the layout token (one-hot q).
        -> (tokens [B, window - 1], log q [B, window - 1, V], origin [B, window - 1])."""
        grid, width, vocab = self.grid, self.window - 1, self.grid.local_vocab_size
        offsets = committed[:, None] + torch.arange(width, device=dev)[None]
        forced = grid.is_forced(offsets)
        tokens = torch.randint(0, grid.num_image_codes, (batch, width), generator=gen, device=dev)
        if self.layout_drafts == "forced" and grid.row_end_local is not None:
            tokens = torch.where(forced, grid.row_end_local, tokens)
        dtype = torch.float64 if logits is not None and logits.dtype == torch.float64 else torch.float32
        logq = torch.full((batch, width, vocab), NEG_INF, dtype=dtype, device=dev)
        logq.scatter_(2, tokens[..., None], 0.0)  # one-hot q
        jacobi = torch.zeros_like(forced)
        if logits is not None:
            row = offsets - old[:, None]  # the last pass's row that predicted each offset
            jacobi = row <= self.window - 1
            laws = logits.gather(1, row.clamp(max=self.window - 1)[..., None].expand(-1, -1, vocab))
            tokens = torch.where(jacobi, _sample(laws, gen), tokens)
            logq = torch.where(jacobi[..., None], laws.to(dtype), logq)
        origin = torch.where(forced, LAYOUT, torch.where(jacobi, JACOBI, RANDOM))
        return tokens, logq, origin


def _sample(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One fresh draw from softmax(logits) per row: [..., V] -> [...]."""
    probs = torch.softmax(logits.double(), -1)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=gen).view(probs.shape[:-1])


def _check_laws(logits: torch.Tensor, bonus: torch.Tensor | None = None) -> None:
    bad = torch.isnan(logits).any() or not bool(torch.isfinite(logits).any(-1).all())
    if bad or (bonus is not None and bool((bonus < 0).any())):
        raise FloatingPointError("target logits: a target row was NaN or had no finite entry")


def _left_pad_cat(parts):
    """[(ids [B, L_i], valid [B, L_i]), ...] stacked on the batch axis, left-padded to one length."""
    length = max(ids.shape[1] for ids, _ in parts)
    pad = torch.nn.functional.pad
    return (torch.cat([pad(ids, (length - ids.shape[1], 0), value=0) for ids, _ in parts]),
            torch.cat([pad(valid, (length - valid.shape[1], 0), value=False) for _, valid in parts]))


# --- the benchmark -----------------------------------------------------------------------------------------------
OUR_MODES = ("ar", "medusa", "hawk", "jacobi", "hawk+jacobi")
PROMPTS = tuple(f"a handwritten digit {w}" for w in "zero one two three four five six seven eight nine".split())


def header(argv=None) -> dict:
    """benchmarks/timing.report_header (device: the CPU's model name, versions, UTC date, command, commit)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from timing import report_header

    return report_header(torch.device("cpu"), argv, "benchmarks/sjd.py")


class Runner:
    """Decodes one batch of prompts in a given mode on the bundled pipeline; returns (seconds, output summary)."""

    def __init__(self, pipe, nodes: int, window: int, cfg: float, temperature: float):
        self.pipe, self.nodes, self.cfg, self.temperature = pipe, nodes, cfg, temperature
        self.sjd = {"sjd": SJDDecoder(pipe.model, pipe.grid, window=window),
                    "sjd_layout_random": SJDDecoder(pipe.model, pipe.grid, window=window, layout_drafts="random")}
        self.negative = torch.tensor([pipe.vocab.unconditional_prompt()], device=pipe.device)

    def __call__(self, mode: str, prompts, seed: int) -> dict:
        pipe = self.pipe
        if mode in self.sjd:
            tokens, mask = pipe.encode(prompts)
            start = time.perf_counter()  # as DemoPipeline.generate times: the decode, not the encoding
            out = self.sjd[mode].generate(tokens, attention_mask=mask, negative_input_ids=self.negative,
                                          cfg_scale=self.cfg, temperature=self.temperature, seed=seed)
            seconds = time.perf_counter() - start
            passes = [out.passes(r) for r in range(len(prompts))]
            extra = dict(accepted_by_origin=out.accepted_by_origin)
        else:
            demo = pipe.generate(prompts, mode=mode, seed=seed, cfg_scale=self.cfg, temperature=self.temperature,
                                 num_nodes=self.nodes)
            seconds, out, passes, extra = demo.seconds, demo.outputs[0], demo.num_forward_passes, {}
        tokens = sum(sum(step) for step in out.accepted_lengths)  # committed by the passes (prefill's not)
        return dict(seconds=seconds, images=len(prompts), tokens=tokens, row_passes=sum(passes),
                    batch_passes=out.num_forward_passes, **extra)


def summarise(runs: list[dict], batch: int) -> dict:
    images = sum(r["images"] for r in runs)
    row = dict(batch=batch, images=images, batches=len(runs),
               tokens_per_pass=sum(r["tokens"] for r in runs) / sum(r["row_passes"] for r in runs),
               seconds_per_image=sum(r["seconds"] for r in runs) / images,
               median_seconds_per_batch=statistics.median(r["seconds"] for r in runs),
               passes=sum(r["row_passes"] for r in runs) / images,  # target passes per image
               batch_passes=sum(r["batch_passes"] for r in runs) / len(runs))  # passes per batch (slowest row)
    origins = [r["accepted_by_origin"] for r in runs if "accepted_by_origin" in r]
    if origins:
        row["accepted_drafts_by_origin"] = {k: sum(o[k] for o in origins) for k in ORIGINS}
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--smoke", action="store_true", help="1 image at batch 1, one batch of 2, no warm-up (CI)")
    ap.add_argument("--window", type=int, default=16, help="SJD's forward width: the root + window - 1 drafts")
    ap.add_argument("--nodes", type=int, default=16, help="tree nodes of our drafting modes (default: SJD's width)")
    ap.add_argument("--images", type=int, default=20, help="batch-1 images per mode")
    ap.add_argument("--batch", type=int, default=16, help="the large batch size")
    ap.add_argument("--batches", type=int, default=3, help="large batches per mode")
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.batch, args.batches = 1, 2, 1
    began = time.perf_counter()
    torch.set_num_threads(args.threads)
    pipe = hk.load_demo_pipeline(device="cpu")
    run = Runner(pipe, args.nodes, args.window, args.cfg, args.temperature)
    modes = ("ar", "sjd", "sjd_layout_random", "medusa", "hawk", "jacobi", "hawk+jacobi")
    for mode in modes if not args.smoke else ():  # warm-up (decoders built, first-call costs paid)
        run(mode, PROMPTS[:1], seed=10_000)
    jobs = {1: [([PROMPTS[i % len(PROMPTS)]], i) for i in range(args.images)],
            args.batch: [([PROMPTS[(b * args.batch + i) % len(PROMPTS)] for i in range(args.batch)], b)
                         for b in range(args.batches)]}
    report = header(argv)
    report["load_average_1_5_15_min_at_start"] = list(os.getloadavg())
    report.update(smoke=args.smoke, settings=dict(
        model="bundled demo (hawk_kernels.load_demo_pipeline)", grid=[pipe.grid.height, pipe.grid.width],
        body_tokens=pipe.grid.num_body_tokens, row_stride=pipe.grid.row_stride, cfg_scale=args.cfg,
        temperature=args.temperature, top_k=None, sjd_window=args.window, num_nodes=args.nodes,
        prompts="batch 1: image i is PROMPTS[i % 10] with seed i; batch B: batch b holds PROMPTS[(b*B + i) % 10], "
                "seed b", prompt_list=list(PROMPTS),
        sjd_batched="SJD runs batched (each row its own frontier), not as sequential images",
        sjd_layout_random="SJD's code to the letter: a random image code at row-end positions too",
        seconds_per_image="total decode seconds / images (the mean); speedup_vs_ar: AR's seconds_per_image / the "
                          "mode's, both from this run; median_seconds_per_batch beside it",
        order="modes interleaved batch by batch (round robin), after one warm-up decode per mode (none with "
              "--smoke)"))
    report["results"] = {}
    for batch, batches in jobs.items():
        runs = {mode: [] for mode in modes}
        for prompts, seed in batches:
            for mode in modes:
                runs[mode].append(run(mode, prompts, seed))
        rows = {mode: summarise(r, batch) for mode, r in runs.items()}
        for row in rows.values():
            row["speedup_vs_ar"] = rows["ar"]["seconds_per_image"] / row["seconds_per_image"]
            row["pass_ratio_vs_ar"] = rows["ar"]["passes"] / row["passes"]
        report["results"][str(batch)] = rows
        for mode, row in rows.items():
            print(f"batch {batch:2d} {mode:18s} tokens/pass {row['tokens_per_pass']:.3f} passes/image "
                  f"{row['passes']:.1f} s/image {row['seconds_per_image']:.3f} ({row['speedup_vs_ar']:.2f}x AR)",
                  flush=True)
    report["seconds"] = time.perf_counter() - began
    report["load_average_1_5_15_min_at_end"] = list(os.getloadavg())  # other jobs on the machine make timings noisy
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print("wrote", args.out, f"({report['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
