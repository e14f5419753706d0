"""HawkDecoder: exact speculative decoding of an image with horizontal + vertical draft heads.

One step (`_step`) reads as: draft -> build tree -> forward the tree -> verify -> commit.
  1. draft    the spatial pool draws candidates for depths 1..D from the horizontal heads (fed the last
              committed hidden state) and the speculation cache (vertical drafts made rows above).
  2. tree     the static template turns candidates into nodes; node 0 is the root, the last committed token.
  3. forward  one backbone pass over all nodes with the tree mask (CFG rows batched with the same nodes).
  4. verify   ops.accept_reject walks the tree with the exact multi-draft rule; returns path + bonus token.
  5. commit   accepted tokens + bonus join the sequence; the KV cache keeps only the path; the heads run on
              the committed hidden states (vertical drafts go to the cache, horizontal ones feed the next step).
Invariant between steps: body[:c] is committed, the cache holds the prompt + body[:c-1], body[c-1] is the root.

A step has fixed shapes and never reads a device value on the host: every state tensor is updated in place,
randomness is Philox keyed by (seed, step, stream) held in device tensors, and statistics accumulate on the
device. So the same step runs eagerly or replays as one CUDA graph (graphs.py); the host only checks
"all rows done?" between steps (every `sync_every` steps when graphed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .backbone import Backbone
from .graphs import StepRunner
from .grid import ImageGrid
from .heads import DraftHeads
from .ops.philox import STREAM_ACCEPT, STREAM_RESIDUAL, DeviceRNG
from .pool import DraftContext, HorizontalSource, SpatialPool, VerticalSource
from .spec_cache import SpeculationCache
from .target import SamplingConfig, TargetProcessor
from .tree import TreeBuffers, TreeTemplate
from .verify import verify_tree

MODES = ("ar", "medusa", "vertical", "hawk")


@dataclass
class HawkOutput:
    image_tokens: torch.Tensor  # [B, H, W] global image code ids
    sequences: torch.Tensor  # [B, L_prompt + body (+ image_end)] the (padded) prompt then generated ids
    generated: torch.Tensor  # [B, body (+ image_end)]
    num_forward_passes: int  # target passes after prefill
    accepted_lengths: list[list[int]]  # per step, per row: tokens committed by that pass
    accepted_by_source: dict[str, int] = field(default_factory=dict)  # accepted tree tokens per source (+ 'layout')
    cuda_graph: bool = False  # whether the steps replayed a captured CUDA graph
    rank_tried: list[list[int]] = field(default_factory=list)  # [depth][rank]: node tried (parent accepted)
    rank_accepted: list[list[int]] = field(default_factory=list)  # [depth][rank]: node accepted

    @property
    def mean_accepted_length(self) -> float:
        """Tokens committed per target pass, per image: every row's committed tokens over the passes that row
        took part in (a finished row waiting for the batch does not count; the prefill's token neither)."""
        total = sum(sum(step) for step in self.accepted_lengths)
        row_passes = sum(sum(1 for n in step if n > 0) for step in self.accepted_lengths)
        return total / max(1, row_passes)


class HawkDecoder:
    """Drop-in decode loop over a frozen transformers causal LM. Modes: "ar" (plain), "medusa" (horizontal
    heads), "vertical" (vertical heads + cache), "hawk" (both in the spatial pool)."""

    def __init__(self, model, heads: DraftHeads | None, grid: ImageGrid, mode: str = "hawk",
                 tree: TreeTemplate | None = None, num_nodes: int = 32, horizontal_candidates: int = 2,
                 vertical_candidates: int = 1, max_depth: int | None = None, backend: str = "auto",
                 cuda_graphs: bool | str = "auto", sync_every: int = 4, accept_rates=None):
        """cuda_graphs: "auto" captures the step in a CUDA graph on CUDA devices (falling back to eager with a
        warning where capture fails), True insists (raises), False keeps every step eager. sync_every: steps
        between host checks of "all rows done" when graphed (extra steps after the end are no-ops).
        accept_rates: measured acceptance per (depth, rank), rates[depth - 1][rank] (python/calibrate_tree.py),
        which shapes the tree (TreeTemplate.from_budget) and sets its depth; default: generic priors."""
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        grid.check_vocab(config.vocab_size)
        if mode != "ar":
            if heads is None:
                raise ValueError(f"heads: mode={mode!r} needs DraftHeads")
            if heads.config.hidden_size != config.hidden_size:
                raise ValueError(f"heads: hidden_size={heads.config.hidden_size} does not match the model's "
                                 f"{config.hidden_size}")
            if heads.config.vocab_size != config.vocab_size:
                raise ValueError(f"heads: vocab_size={heads.config.vocab_size} does not match the model's "
                                 f"{config.vocab_size}")
            if heads.config.image_token_range not in (None, grid.image_token_range):
                raise ValueError(f"heads: image_token_range={heads.config.image_token_range} differs from the "
                                 f"grid's {grid.image_token_range}")
        self.model, self.heads, self.grid, self.mode, self.backend = model, heads, grid, mode, backend
        self.max_positions = getattr(config, "max_position_embeddings", None)
        self.backbone = Backbone(model, grid.local_vocab_ids())
        sources = self._sources(mode, horizontal_candidates, vertical_candidates)
        self.sources = sources
        if mode == "ar":
            tree = TreeTemplate.from_paths([])
        elif tree is None:
            deepest = max_depth or (len(accept_rates) if accept_rates else self._default_depth())
            width = max(1, sum(s.num_candidates() for s in sources))
            tree = TreeTemplate.from_budget(num_nodes, deepest, width, accept_rates)
        self.tree = TreeBuffers(tree, self.backbone.device, backend=backend)
        # path nodes that can enter the cache in one step: the root + one per depth
        self.path_width = self.tree.template.max_depth + 1
        # each node's (depth, rank) cell in the acceptance statistics, flattened
        self.rank_cell = self.tree.depth * self.tree.template.max_rank + self.tree.rank_index
        if cuda_graphs not in ("auto", True, False):
            raise ValueError(f"cuda_graphs: expected 'auto', True or False, got {cuda_graphs!r}")
        if int(sync_every) < 1:
            raise ValueError(f"sync_every: expected an int >= 1, got {sync_every!r}")
        self.cuda_graphs, self.sync_every = cuda_graphs, int(sync_every)

    def _sources(self, mode, horizontal_candidates, vertical_candidates):
        sources = []
        if mode in ("medusa", "hawk") and self.heads.num_horizontal:
            sources.append(HorizontalSource(horizontal_candidates))
        if mode in ("vertical", "hawk") and self.heads.vertical_depth:
            sources.append(VerticalSource(self.heads.vertical_depth, vertical_candidates))
        if mode != "ar" and not sources:
            raise ValueError(f"heads: mode={mode!r} has no heads of the kind it needs")
        return sources

    def _default_depth(self) -> int:
        return max(self.heads.num_horizontal, 1) if self.mode == "medusa" else self.heads.num_horizontal + 2

    # --- public entry ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids, negative_input_ids=None, cfg_scale: float = 1.0, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                 attention_mask=None, progress: bool = False) -> HawkOutput:
        """input_ids [B, L] (or [L]) conditional prompts ending where the image starts; attention_mask marks
        left padding; negative_input_ids [B or 1, L'] the unconditional prompts for CFG (default: the last
        token of each prompt, i.e. image-start only, as Lumina-mGPT does). temperature=0 -> greedy."""
        session = self.start(input_ids, negative_input_ids, cfg_scale, temperature, top_k, top_p, seed,
                             attention_mask)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.grid.num_body_tokens, unit="tok", leave=False)
        shown = 0
        while True:
            least = session.least_committed()  # the one host sync: between steps, never inside one
            if bar is not None:
                bar.update(least - shown)
                shown = least
            if least >= self.grid.num_body_tokens:
                break
            session.check()
            session.run(self.sync_every if session.graphed else 1)
        if bar is not None:
            bar.close()
        return session.output()

    @torch.no_grad()
    def start(self, input_ids, negative_input_ids=None, cfg_scale: float = 1.0, temperature: float = 1.0,
              top_k: int | None = None, top_p: float | None = None, seed: int = 0,
              attention_mask=None) -> "DecodeSession":
        """Prefill and sample the first token; returns a DecodeSession whose run(n) takes n steps (for
        streaming, benchmarks and custom stopping). generate() is start() + run() until every row is done.
        One live session per decoder: the next start() re-allocates the decoder's KV cache."""
        sampling = SamplingConfig(cfg_scale, temperature, top_k, top_p)
        prompt, valid = self._prompts(input_ids, attention_mask, negative_input_ids, sampling)
        rng = DeviceRNG(int(seed), self.backbone.device)
        cond_prompt = input_ids[None] if input_ids.dim() == 1 else input_ids
        # cache slots: the prompt, the body, one tree block past the longest row, and the commit's width
        capacity = prompt.shape[1] + self.grid.num_body_tokens + self.tree.template.num_nodes + self.path_width
        return DecodeSession.start(self, prompt, valid, sampling, rng, cond_prompt, capacity)

    def _prompts(self, input_ids, attention_mask, negative_input_ids, sampling):
        dev = self.backbone.device
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError("input_ids: expected an integer torch.Tensor of token ids [B, L]")
        ids = (input_ids[None] if input_ids.dim() == 1 else input_ids).to(dev, torch.int64)
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"input_ids: expected shape [B, L] with L >= 1, got {tuple(input_ids.shape)}")
        valid = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.to(dev).bool()
        if valid.shape != ids.shape:
            raise ValueError(f"attention_mask: expected shape {tuple(ids.shape)}, got {tuple(attention_mask.shape)}")
        if not bool(valid[:, -1].all()):
            raise ValueError("attention_mask: prompts must be left-padded (the last position valid in every row)")
        vocab = self.model.get_input_embeddings().num_embeddings
        if bool((ids < 0).any()) or bool((ids >= vocab).any()):
            raise ValueError(f"input_ids: token ids must lie in [0, {vocab})")
        if sampling.uses_cfg:
            neg = ids[:, -1:] if negative_input_ids is None else negative_input_ids
            neg = (neg[None] if neg.dim() == 1 else neg).to(dev, torch.int64).expand(ids.shape[0], -1)
            ids, valid = _left_pad_cat([(ids, valid), (neg, torch.ones_like(neg, dtype=torch.bool))])
        elif negative_input_ids is not None:
            raise ValueError("negative_input_ids: given, but cfg_scale == 1 disables classifier-free guidance")
        total = ids.shape[1] + self.grid.num_body_tokens + 1
        if self.max_positions is not None and total > self.max_positions:
            raise ValueError(f"grid: prompt ({ids.shape[1]}) + image ({self.grid.num_body_tokens}) tokens exceed "
                             f"the model's max_position_embeddings={self.max_positions}")
        return ids, valid

    # --- one step ---------------------------------------------------------------------------------------
    def _step(self, state: "DecodeSession") -> None:
        candidates = self._draft(state)
        node_local, node_rows = self._build_tree(state, candidates)
        target_logits, hidden = self._forward(state, node_local)
        rule = "match" if state.sampling.greedy else "rejection"
        result = verify_tree(target_logits, candidates.table, node_local, self.tree.parents, node_rows,
                             rule=rule, uniforms=state.verify_uniforms(*node_local.shape), backend=self.backend)
        self._commit(state, node_local, candidates, result.path, result.accept_len, result.bonus, hidden)
        state.rng.advance()

    def _draft(self, state):
        depth = max(self.tree.template.max_depth, 1)  # AR's root-only tree still asks for one depth
        offsets = state.committed[:, None] - 1 + torch.arange(1, depth + 1, device=state.committed.device)
        ctx = DraftContext(depth, offsets, state.horizontal_logq, state.cache)
        return state.pool.draw(ctx, state.rng)

    def _build_tree(self, state, candidates):
        node_local = self.tree.gather(candidates.tokens, -1)
        node_rows = self.tree.gather(candidates.rows, 0)
        return node_local, node_rows

    def _forward(self, state, node_local):
        root = state.body.gather(1, (state.committed - 1).clamp(min=0)[:, None])[:, 0]
        node_global = self.grid.to_global(node_local.clamp(min=0))
        node_global[:, 0] = torch.where(state.committed > 0, root, state.prompt_last)
        repeat = 2 if state.sampling.uses_cfg else 1
        hidden = self.backbone.forward_tree(node_global.repeat(repeat, 1), self.tree.depth, self.tree.ancestor_mask)
        next_offsets = state.committed[:, None] + self.tree.depth[None]
        target_logits = state.target(self.backbone.local_logits(hidden), next_offsets)
        return target_logits, hidden[: node_local.shape[0]]

    def _commit(self, state, node_local, candidates, path, accept_len, bonus, hidden):
        state.bad_rows.logical_or_(bonus < 0)  # raised by state.check() between steps
        remaining = self.grid.num_body_tokens - state.committed
        # accepted drafts + bonus, cut at the image end (a bonus past the last body offset is dropped)
        new_count = torch.minimum(accept_len + 1, remaining.clamp(min=0))
        path_tokens = node_local.gather(1, path.clamp(min=0))
        slots = torch.arange(path.shape[1], device=path.device)[None]
        # slot s < accept_len holds the token of path node s+1; slot accept_len holds the bonus
        tokens = torch.where(slots < accept_len[:, None], path_tokens.roll(-1, 1), 0)
        tokens = torch.where(slots == accept_len[:, None], bonus[:, None], tokens)
        self._count_acceptance(state, path, remaining > 0)
        state.write(tokens[:, : self.path_width], new_count, self.grid)
        self._count_sources(state, candidates, path, (new_count - 1).clamp(min=0))
        keep = new_count  # the root + the accepted nodes before the bonus enter the KV cache
        repeat = 2 if state.sampling.uses_cfg else 1
        path = path[:, : self.path_width]
        self.backbone.commit(path.repeat(repeat, 1), keep.repeat(repeat))
        state.after_commit(self, hidden, path, keep)
        state.record(new_count)

    def _count_acceptance(self, state, path, active):
        """Per (depth, rank) of the template: how often a node was tried (its parent on the accepted path)
        and accepted, on the device; the tree calibration reads these (python/calibrate_tree.py)."""
        if self.mode == "ar":
            return
        on_path = torch.zeros(path.shape, dtype=torch.int64, device=path.device)
        on_path = on_path.scatter_add_(1, path.clamp(min=0), (path >= 0).long()) > 0
        on_path &= active[:, None]
        tried = on_path[:, self.tree.parents.clamp(min=0)]
        tried[:, 0] = False
        accepted = on_path.clone()
        accepted[:, 0] = False
        state.rank_tried.index_add_(0, self.rank_cell, tried.long().sum(0))
        state.rank_accepted.index_add_(0, self.rank_cell, accepted.long().sum(0))

    def _count_sources(self, state, candidates, path, accept_len):
        if self.mode == "ar":
            return
        node_source = self.tree.gather(candidates.source, -1).gather(1, path.clamp(min=0))
        slots = torch.arange(path.shape[1], device=path.device)[None]
        accepted = (slots >= 1) & (slots <= accept_len[:, None]) & (node_source >= 0)
        state.source_counts.index_add_(0, node_source.clamp(min=0).flatten(), accepted.flatten().long())


def _left_pad_cat(parts):
    """[(ids [B, L_i], valid [B, L_i]), ...] stacked on the batch axis, left-padded to one length."""
    length = max(ids.shape[1] for ids, _ in parts)
    ids_out, valid_out = [], []
    for ids, valid in parts:
        pad = length - ids.shape[1]
        ids_out.append(torch.nn.functional.pad(ids, (pad, 0), value=0))
        valid_out.append(torch.nn.functional.pad(valid, (pad, 0), value=False))
    return torch.cat(ids_out), torch.cat(valid_out)


class DecodeSession:
    """Everything one generate() call mutates, as fixed-shape device tensors updated in place (so a captured
    step replays on the same memory); the decoder itself stays stateless between calls."""

    @classmethod
    def start(cls, decoder: HawkDecoder, prompt, valid, sampling, rng: DeviceRNG, cond_prompt, capacity: int):
        self = cls()
        self.cond_prompt = cond_prompt
        grid, dev = decoder.grid, prompt.device
        rows = prompt.shape[0] // (2 if sampling.uses_cfg else 1)
        self.decoder, self.sampling, self.rng = decoder, sampling, rng
        self.target = TargetProcessor(grid, sampling)
        self.pool = SpatialPool(decoder.sources, grid, greedy=sampling.greedy)
        body = grid.num_body_tokens
        self.body = torch.zeros(rows, body + 1, dtype=torch.int64, device=dev)  # last column: write sink
        self.committed = torch.zeros(rows, dtype=torch.int64, device=dev)
        self.prompt_last = prompt[:rows, -1]
        # tokens committed per step and row; a step commits >= 1 token per unfinished row, so <= body steps
        # are real; steps run after every row finished write the last (sink) row
        self.history = torch.zeros(body + 1, rows, dtype=torch.int64, device=dev)
        self.step_index = torch.zeros((), dtype=torch.int64, device=dev)
        self.source_counts = torch.zeros(len(self.pool.source_names), dtype=torch.int64, device=dev)
        self.bad_rows = torch.zeros(rows, dtype=torch.bool, device=dev)
        ranks = (decoder.tree.template.max_depth + 1) * decoder.tree.template.max_rank
        self.rank_tried = torch.zeros(ranks, dtype=torch.int64, device=dev)  # [(depth, rank)] flattened
        self.rank_accepted = torch.zeros_like(self.rank_tried)
        heads = decoder.heads
        vsd = heads.vertical_depth if (heads is not None and decoder.mode in ("vertical", "hawk")) else 0
        self.cache = SpeculationCache(rows, grid.row_stride, vsd, grid.local_vocab_size, dev) if vsd else None
        self.horizontal_logq = None
        last_hidden = decoder.backbone.prefill(prompt, valid, capacity)
        first = self.target(decoder.backbone.local_logits(last_hidden)[:, None], self.committed[:, None])
        no_node = torch.full((rows, 1), -1, device=dev)  # a root-only tree: the "match" rule just samples
        bonus = verify_tree(first, first, no_node, decoder.tree.parents[:1], no_node.clamp(min=0), rule="match",
                            uniforms=self.verify_uniforms(rows, 1), backend=decoder.backend).bonus
        rng.advance()
        if bool((bonus < 0).any()):
            raise FloatingPointError("target logits: the first image position has NaN or no finite logits")
        self.write(bonus[:, None], torch.ones_like(self.committed), grid)
        self._run_heads(last_hidden[:rows, None], torch.full((rows, 1), -1, device=dev),
                        torch.ones(rows, 1, dtype=torch.bool, device=dev))
        self.runner = StepRunner(lambda: decoder._step(self), dev, decoder.cuda_graphs)
        return self

    @property
    def graphed(self) -> bool:
        return self.runner.graphed

    @torch.no_grad()
    def run(self, steps: int = 1) -> None:
        """Take `steps` decode steps (eager, or graph replays after the first two on CUDA). Steps after every
        row finished are no-ops that record nothing."""
        self.runner.run(steps)

    def least_committed(self) -> int:
        return int(self.committed.min())

    def finished(self) -> bool:
        return self.least_committed() >= self.decoder.grid.num_body_tokens

    def verify_uniforms(self, rows: int, nodes: int) -> torch.Tensor:
        """[B, N, 2]: column 0 for acceptance tests, column 1 for sampling (bonus / residual)."""
        return torch.stack([self.rng.uniforms((rows, nodes), STREAM_ACCEPT),
                            self.rng.uniforms((rows, nodes), STREAM_RESIDUAL)], dim=-1)

    def check(self) -> None:
        if bool(self.bad_rows.any()):
            raise FloatingPointError("target logits: a target row was NaN or had no finite entry (check the "
                                     "model's dtype/weights, cfg_scale and the token range)")

    def write(self, tokens_local, count, grid: ImageGrid) -> None:
        """tokens_local [B, K] local ids; count [B] how many to append at body[committed:]."""
        slots = torch.arange(tokens_local.shape[1], device=tokens_local.device)[None]
        where = self.committed[:, None] + slots
        ok = (slots < count[:, None]) & (where < grid.num_body_tokens)
        glob = grid.to_global(tokens_local.clamp(min=0))
        self.body.scatter_(1, torch.where(ok, where, grid.num_body_tokens), glob)  # others go to the sink
        self.committed.add_(ok.sum(1))

    def after_commit(self, decoder: HawkDecoder, hidden, path, keep) -> None:
        """Run the heads on the newly cached nodes' hidden states (offsets c_old-1 .. c_old-2+keep), over
        the fixed path width (slots past keep are masked)."""
        if decoder.mode == "ar":
            return
        width = path.shape[1]
        chosen = path.clamp(min=0)
        states = hidden.gather(1, chosen[:, :, None].expand(-1, -1, hidden.shape[-1]))
        root_offset = self.committed - keep - 1  # keep == tokens just committed (never truncated here)
        offsets = root_offset[:, None] + torch.arange(width, device=path.device)[None]
        valid = torch.arange(width, device=path.device)[None] < keep[:, None]
        self._run_heads(states, offsets, valid)

    def _run_heads(self, states, offsets, valid) -> None:
        """states [B, T, d] hidden states at body offsets [B, T]; the last valid one feeds horizontal heads."""
        decoder = self.decoder
        if decoder.mode == "ar":
            return
        heads, grid = decoder.heads, decoder.grid
        rows, width, dim = states.shape
        inv_temp = 1.0 if self.sampling.greedy else 1.0 / self.sampling.temperature
        image_rows = decoder.backbone.local_rows[: grid.num_image_codes]
        logq = heads.draft_logq(states.reshape(-1, dim), image_rows, inv_temp, backend=decoder.backend)
        logq = _pad_layout(logq.float(), grid).view(rows, width, heads.config.num_heads, -1)
        last = (valid.long().sum(1) - 1).clamp(min=0)
        horizontal = logq[torch.arange(rows, device=logq.device), last, : heads.num_horizontal]
        if self.horizontal_logq is None:
            self.horizontal_logq = horizontal
        else:  # rows with nothing new (finished) keep their drafts; shapes never change
            self.horizontal_logq.copy_(torch.where(valid.any(1)[:, None, None], horizontal, self.horizontal_logq))
        if self.cache is not None:
            self.cache.evict_before(self.committed)
            self.cache.insert(offsets, logq[:, :, heads.num_horizontal:], valid, grid.num_body_tokens)

    def record(self, new_count) -> None:
        self.history.index_copy_(0, self.step_index.clamp(max=self.history.shape[0] - 1), new_count[None])
        self.step_index.add_(1)

    def output(self) -> HawkOutput:
        self.check()
        grid = self.decoder.grid
        cond_prompt = self.cond_prompt
        body = self.body[:, : grid.num_body_tokens]
        generated = body
        if grid.image_end_token is not None:
            end = torch.full((generated.shape[0], 1), grid.image_end_token, dtype=torch.int64, device=generated.device)
            generated = torch.cat([generated, end], dim=1)
        sequences = torch.cat([cond_prompt.to(generated), generated], dim=1)
        history = self.history[:-1]
        steps = history[history.sum(1) > 0].tolist()  # real passes: some row committed a token
        counts = self.source_counts.tolist()
        by_source = {name: n for name, n in zip(self.pool.source_names, counts) if n}
        shape = (self.decoder.tree.template.max_depth + 1, self.decoder.tree.template.max_rank)
        return HawkOutput(grid.image_tokens(body), sequences, generated, len(steps), steps, by_source,
                          cuda_graph=self.graphed, rank_tried=self.rank_tried.view(shape).tolist(),
                          rank_accepted=self.rank_accepted.view(shape).tolist())


def _pad_layout(logq, grid: ImageGrid):
    """[T, H, V_img] -> [T, H, V_local]: the row-end column (if any) gets -inf (drafts are for image offsets)."""
    if grid.row_end_local is None:
        return logq
    return torch.nn.functional.pad(logq, (0, 1), value=float("-inf"))
