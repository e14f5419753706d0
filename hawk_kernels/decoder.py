"""HawkDecoder: exact speculative decoding of images over a frozen backbone, with horizontal and vertical draft
heads. The decoder holds configuration only: it checks arguments, builds the step plan once (engine/plan.py)
and, per generation, a fresh state (engine/state.py) that a DecodeSession steps (engine/step.py). Decoders
keep nothing between calls, so several sessions of one decoder may be alive and interleaved.
"""
from __future__ import annotations

import warnings

import torch

from .backbones import backbone_for
from .backbones.kv_cache import cache_capacity
from .checks import as_bool, as_int, check_auto_flag, check_compile, image_seeds, mask_tensor, token_tensor
from .drafts import MODES, chain_depth, check_mode, default_depth, needs_heads, sources_for
from .engine import DecodeSession, HawkOutput, StepPlan, build_plan, new_state
from .engine.compiled import CompiledStep, compiles
from .engine.grouped_gemms import adjacent_projections, separate_projections
from .engine.step import prefill
from .grid import ImageGrid
from .heads import DraftHeads
from .memory import check_cache_fits
from .target import SamplingConfig
from .tree import MAX_NUM_NODES, TreeTemplate, rate_function

__all__ = ["DecodeSession", "HawkDecoder", "HawkOutput", "MODES", "VERIFY_RULES"]

VERIFY_RULES = ("coupled", "rejection")  # HawkDecoder(verify=...): how a step decides what it commits


class HawkDecoder:
    """Drop-in decode loop over a frozen image model. Modes (drafts.MODES): "ar" (plain), "medusa" (horizontal
    heads), "vertical" (vertical heads + speculation cache), "hawk" (both in the spatial pool), "jacobi" (the
    target's own predictions of the previous tree, no heads), "hawk+jacobi" (heads and Jacobi drafts)."""

    def __init__(self, model, heads: DraftHeads | None, grid: ImageGrid, mode: str = "hawk",
                 tree: TreeTemplate | None = None, num_nodes: int = 32, horizontal_candidates: int = 2,
                 vertical_candidates: int = 1, max_depth: int | None = None, backend: str = "auto",
                 cuda_graphs: bool | str = "auto", sync_every: int = 4, accept_rates=None,
                 compile: bool | str = "auto", heads_measured: bool | None = None, verify: str = "coupled"):
        """model: a transformers causal LM, or a backbone adapter (backbones/protocol.py).
        cuda_graphs: "auto" captures the step in a CUDA graph on CUDA devices (falling back to eager with a
        warning where capture fails), True insists (raises), False keeps every step eager. sync_every: steps
        between host checks of "all rows done" when graphed (extra steps after the end are no-ops).
        compile: "auto" compiles the step (the backbone forward included) with torch.compile's inductor backend,
        fullgraph, on CUDA devices and not on the CPU (where compiling costs more than it saves for one image);
        True compiles anywhere and raises where compiling fails; False never compiles; "regional" is True with
        the decoder layers compiled once as one region (about 40% less compile time at 32 layers, about two
        more kernels per layer per step). A fallback under "auto" is reported in HawkOutput.fallbacks
        (engine/compiled.py).
        accept_rates: measured acceptance per (depth, rank), rates[depth - 1][rank] (python/calibrate_tree.py),
        which shapes the tree (TreeTemplate.from_budget) and sets its depth; default: generic priors.
        heads_measured: whether the heads' acceptance was measured (default: accept_rates were given); in
        hawk+jacobi measured heads own depth 1 and Jacobi drafts start at depth 2, else Jacobi owns depth 1 too
        (drafts.JACOBI_SOURCES). Calibration passes True: rates are measured in the layout they are used with.
        backend: kernels for every op, chosen once here (ops/_backend.py).
        verify: "coupled" (default): each step commits the target's own sample (Gumbel-max with noise keyed by the
        image's seed and the position, the noise the drafts draw with too), so a sampled image is the one AR
        sampling makes from its seed, in every mode, tree size and batch; "rejection": Hawk's multi-draft
        rejection sampling with residual resampling (the paper's rule: the same law, another image per mode).
        Both are exact (engine/step.py, verify)."""
        check_mode(mode)
        if verify not in VERIFY_RULES:
            raise ValueError(f"verify: expected one of {VERIFY_RULES}, got {verify!r}")
        cuda_graphs, compile = check_auto_flag("cuda_graphs", cuda_graphs), check_compile(compile)
        if not isinstance(grid, ImageGrid):
            raise TypeError(f"grid: expected an ImageGrid, got {type(grid).__name__}")
        sync_every = as_int("sync_every", sync_every, 1)
        num_nodes = as_int("num_nodes", num_nodes, 1, MAX_NUM_NODES)
        horizontal_candidates = as_int("horizontal_candidates", horizontal_candidates, 1, grid.local_vocab_size)
        vertical_candidates = as_int("vertical_candidates", vertical_candidates, 1, grid.local_vocab_size)
        max_depth = None if max_depth is None else as_int("max_depth", max_depth, 1)
        _check_rates(accept_rates)
        if tree is not None and not isinstance(tree, TreeTemplate):
            raise TypeError(f"tree: expected a TreeTemplate or None, got {type(tree).__name__}")
        backbone = backbone_for(model, grid)
        if backbone.grid != grid:  # an adapter passed as `model` brings its own grid: one grid, checked here
            raise ValueError(f"grid: {grid} differs from the grid of the backbone adapter given as model "
                             f"({backbone.grid})")
        if needs_heads(mode):
            _check_heads(heads, backbone, grid, mode)
        measured = accept_rates is not None if heads_measured is None else bool(heads_measured)
        sources = sources_for(mode, heads, horizontal_candidates, vertical_candidates, measured=measured)
        if sources and tree is None and num_nodes < 2:
            raise ValueError(f"num_nodes: mode={mode!r} needs a tree of >= 2 nodes (the root and a draft), got "
                             f"{num_nodes}")
        tree = _tree_for(mode, heads, sources, tree, num_nodes, max_depth, accept_rates)
        # model: as given (a transformers model or an adapter); backbone: the adapter the steps call
        self.model, self.heads, self.mode = model, heads, mode
        self.cuda_graphs, self.sync_every = cuda_graphs, sync_every
        self.compiled_step = _compiled_step(compile, backbone)
        self.plan: StepPlan = build_plan(backbone, heads if needs_heads(mode) else None, sources, tree, backend,
                                         verify)

    @property
    def tree(self) -> TreeTemplate:
        """The tree template the steps verify (the constructor's `tree`, or the one built from num_nodes)."""
        return self.plan.tree.template

    @property
    def backbone(self):
        return self.plan.backbone

    @property
    def grid(self) -> ImageGrid:
        return self.plan.grid

    # --- public entry ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids, negative_input_ids=None, cfg_scale: float = 1.0, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | list[int] = 0,
                 attention_mask=None, progress: bool = False, negative_attention_mask=None) -> HawkOutput:
        """input_ids [B, L] (or [L]) conditional prompts ending where the image starts; attention_mask marks
        left padding; negative_input_ids [B or 1, L'] the unconditional prompts for CFG (default: the last
        token of each prompt, i.e. image-start only, as Lumina-mGPT does), negative_attention_mask their left
        padding (unconditional prompts of several lengths in one batch). temperature=0 -> greedy."""
        as_bool("progress", progress)
        session = self.start(input_ids, negative_input_ids, cfg_scale, temperature, top_k, top_p, seed,
                             attention_mask, negative_attention_mask=negative_attention_mask)
        bar = None
        if progress:
            from .progress import progress_bar

            bar = progress_bar(self.grid.num_body_tokens, None, unit="tok", leave=False)
        shown, before = 0, -1
        while True:
            least = session.least_committed()  # the one host sync: between steps, never inside one
            if bar is not None:
                bar.update(least - shown)
                shown = least
            if least >= self.grid.num_body_tokens:
                break
            session.check()
            if least <= before:  # every step commits >= 1 token per unfinished row: a step that did not is broken
                raise RuntimeError(f"generate: the decode steps made no progress (the slowest row stays at {least} "
                                   f"of {self.grid.num_body_tokens} tokens; the steps ran "
                                   f"{'as CUDA-graph replays' if session.graphed else 'eagerly'})")
            before = least
            session.run(self.sync_every if session.graphed else 1)
        if bar is not None:
            bar.close()
        return session.output()

    @torch.no_grad()
    def start(self, input_ids, negative_input_ids=None, cfg_scale: float = 1.0, temperature: float = 1.0,
              top_k: int | None = None, top_p: float | None = None, seed: int | list[int] = 0,
              attention_mask=None, max_prompt_length: int | None = None,
              negative_attention_mask=None) -> DecodeSession:
        """Prefill and sample the first token; returns a DecodeSession whose run(n) takes n steps (for
        streaming, benchmarks and custom stopping). generate() is start() + run() until every row is done.
        Each session owns its state (KV cache included): sessions of one decoder may interleave.
        max_prompt_length: cache room for prompts up to this many tokens per row (the longer CFG branch), for
        refills with prompts longer than these (refill)."""
        sampling = SamplingConfig(cfg_scale, temperature, top_k, top_p)
        _check_eval_mode(self.model)
        self._check_attention()
        prompt, valid, cond_prompt = self._prompts(input_ids, attention_mask, negative_input_ids,
                                                   negative_attention_mask, sampling)
        room = prompt.shape[1] if max_prompt_length is None else max(
            prompt.shape[1], as_int("max_prompt_length", max_prompt_length, 1))
        capacity = cache_capacity(self._slots_past_prompt() + room, self.plan.backbone.sliding_window)
        seeds = image_seeds("seed", seed, cond_prompt.shape[0])
        check_cache_fits(self.plan.backbone, cond_prompt.shape[0], sampling.branches, capacity)
        state = new_state(self.plan, sampling, cond_prompt.shape[0], capacity, seeds, cond_prompt)
        prefill(self.plan, state, prompt, valid)
        return DecodeSession(self.plan, state, self.cuda_graphs, self.compiled_step)

    @torch.no_grad()
    def refill(self, session: DecodeSession, rows, input_ids, negative_input_ids=None, seed: int | list[int] = 0,
               attention_mask=None, negative_attention_mask=None) -> None:
        """Give the session's taken rows `rows` to new images (continuous batching): input_ids [k, L] (k ==
        len(rows)) prompts as for start(), sampled as the session's images are; each new image then decodes as it
        would in a generation of its own with the same seed (image i of the refill gets seed + i, or seed[i])."""
        if not isinstance(session, DecodeSession) or session.plan is not self.plan:
            raise ValueError("session: expected a DecodeSession started by this decoder (decoder.start)")
        sampling = session.state.config
        prompt, valid, cond_prompt = self._prompts(input_ids, attention_mask, negative_input_ids,
                                                   negative_attention_mask, sampling)
        capacity = session.state.cache.capacity
        if prompt.shape[1] + self._slots_past_prompt() > capacity:
            raise ValueError(f"input_ids: prompts of {prompt.shape[1]} tokens (CFG branch included) do not fit the "
                             f"session's cache of {capacity} slots; start it with max_prompt_length="
                             f"{prompt.shape[1]} or more")
        rows = session.free_rows(rows)
        if cond_prompt.shape[0] != len(rows):
            raise ValueError(f"input_ids: {cond_prompt.shape[0]} prompts for {len(rows)} rows")
        # the new images' own cache holds their prompts only (the prefill fills nothing else), and only those slots
        # are copied: a refill of every row of a 7B batch (AR rows finish together) adds prompts, not whole caches
        prompt_slots = cache_capacity(prompt.shape[1], self.plan.backbone.sliding_window)
        fresh = new_state(self.plan, sampling, cond_prompt.shape[0], min(prompt_slots, capacity),
                          image_seeds("seed", seed, cond_prompt.shape[0]), cond_prompt)
        prefill(self.plan, fresh, prompt, valid)
        session.replace_rows(rows, fresh)

    def _slots_past_prompt(self) -> int:
        """Cache slots a row needs past its prompt: the body, one tree block past the longest row, and the
        commit's width."""
        return self.grid.num_body_tokens + self.plan.tree.template.num_nodes + self.plan.path_width

    def _check_attention(self) -> None:
        """A model run with FlexAttention on the CPU cannot verify trees: torch's CPU FlexAttention kernel fails to
        compile the tree's block masks (torch 2.13: an InductorError after seconds of compiling; a root-only AR
        step compiles). Read at each start, as the backbone reads the model's setting at each call."""
        backbone = self.plan.backbone
        if (getattr(backbone, "block_sparse_attention", False) and backbone.device.type == "cpu"
                and self.plan.tree.template.num_nodes > 1):
            raise ValueError(f"model: runs attn_implementation='flex_attention' on the CPU, where torch's "
                             f"FlexAttention kernel fails to compile the tree masks of mode={self.mode!r}; load the "
                             "model with attn_implementation='sdpa' (or call model.set_attn_implementation('sdpa')), "
                             "or decode on CUDA")

    def _prompts(self, input_ids, attention_mask, negative_input_ids, negative_attention_mask, sampling):
        """-> (prompt ids [B * branches, L], valid [B * branches, L], conditional prompts [B, L0])."""
        backbone = self.plan.backbone
        dev = backbone.device
        cond_prompt = token_tensor("input_ids", input_ids, backbone.vocab_size)
        ids = cond_prompt.to(dev)
        if attention_mask is None:
            valid = torch.ones_like(ids, dtype=torch.bool)
            _warn_if_padded(ids, self.model)
        else:
            valid = mask_tensor("attention_mask", attention_mask, ids.shape).to(dev)
        if not bool(valid[:, -1].all()):
            raise ValueError("attention_mask: prompts must be left-padded (the last position valid in every row)")
        if negative_attention_mask is not None and negative_input_ids is None:
            raise ValueError("negative_attention_mask: given without negative_input_ids (the padding it marks)")
        if sampling.uses_cfg:
            neg = ids[:, -1:] if negative_input_ids is None else self._negative(negative_input_ids, ids.shape[0])
            neg_valid = torch.ones_like(neg, dtype=torch.bool) if negative_attention_mask is None else (
                self._negative_valid(negative_attention_mask, neg.shape))
            ids, valid = _left_pad_cat([(ids, valid), (neg, neg_valid)])
        elif negative_input_ids is not None:
            raise ValueError("negative_input_ids: given, but cfg_scale == 1 disables classifier-free guidance")
        total = ids.shape[1] + self.grid.num_body_tokens + 1
        if backbone.max_positions is not None and total > backbone.max_positions:
            raise ValueError(f"input_ids: prompt ({ids.shape[1]}) + image ({self.grid.num_body_tokens}) tokens "
                             f"exceed the model's max_position_embeddings={backbone.max_positions}")
        return ids, valid, cond_prompt

    def _negative(self, negative_input_ids, batch: int) -> torch.Tensor:
        """[L'], [1, L'] or [B, L'] unconditional prompts -> [B, L'] on the model's device."""
        backbone = self.plan.backbone
        neg = token_tensor("negative_input_ids", negative_input_ids, backbone.vocab_size).to(backbone.device)
        if neg.shape[0] not in (1, batch):
            raise ValueError(f"negative_input_ids: expected 1 or {batch} rows (one per prompt), got "
                             f"{tuple(negative_input_ids.shape)}")
        return neg.expand(batch, -1)

    def _negative_valid(self, negative_attention_mask, shape) -> torch.Tensor:
        """negative_attention_mask ([B or 1, L'], as negative_input_ids) -> valid [B, L'], left padding only."""
        rows = negative_attention_mask.shape[0] if isinstance(negative_attention_mask, torch.Tensor) else 0
        valid = mask_tensor("negative_attention_mask", negative_attention_mask,
                            (rows if rows in (1, shape[0]) else shape[0], shape[1]))
        if not bool(valid[:, -1].all()):
            raise ValueError("negative_attention_mask: unconditional prompts must be left-padded (the last position "
                             "valid in every row)")
        return valid.to(self.plan.backbone.device).expand(shape)


def _check_heads(heads: DraftHeads | None, backbone, grid: ImageGrid, mode: str) -> None:
    if heads is None:
        raise ValueError(f"heads: mode={mode!r} needs DraftHeads")
    if not isinstance(heads, DraftHeads):
        raise TypeError(f"heads: expected DraftHeads (or None for mode='ar'), got {type(heads).__name__}")
    heads.check_for(backbone, grid)


def _check_rates(accept_rates) -> None:
    """accept_rates: None or a table rates[depth - 1][rank] in [0, 1], checked in every mode (an "ar" decoder
    builds no tree from it) and named as the caller spelled it (tree.rate_function says accept_rate)."""
    if accept_rates is None:
        return
    what = "None or a non-empty table rates[depth - 1][rank] of numbers in [0, 1]"
    if callable(accept_rates):
        raise TypeError(f"accept_rates: expected {what}, got {type(accept_rates).__name__}")
    try:
        rate_function(accept_rates)
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("accept_rate:", "accept_rates:", 1)) from None


def _check_eval_mode(model) -> None:
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)  # adapter: its model
    if isinstance(module, torch.nn.Module) and module.training:
        raise ValueError("model: is in training mode (dropout on): call model.eval() before decoding")


def _warn_if_padded(ids: torch.Tensor, model) -> None:
    """Without attention_mask, rows that start with the pad token are decoded as if the pads were text."""
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    config = getattr(module, "config", None)
    pad = getattr(config, "pad_token_id", None) if config is not None else None
    if isinstance(pad, int) and bool((ids[:, 0] == pad).any()):
        warnings.warn(f"input_ids: some rows start with the pad token {pad} but no attention_mask was given, so "
                      "the pads are read as text; pass attention_mask (1 = token, 0 = left padding)",
                      UserWarning, stacklevel=4)


def _left_pad_cat(parts):
    """[(ids [B, L_i], valid [B, L_i]), ...] stacked on the batch axis, left-padded to one length."""
    length = max(ids.shape[1] for ids, _ in parts)
    ids_out, valid_out = [], []
    for ids, valid in parts:
        pad = length - ids.shape[1]
        ids_out.append(torch.nn.functional.pad(ids, (pad, 0), value=0))
        valid_out.append(torch.nn.functional.pad(valid, (pad, 0), value=False))
    return torch.cat(ids_out), torch.cat(valid_out)


def _tree_for(mode: str, heads, sources: tuple, tree, num_nodes: int, max_depth, accept_rates) -> TreeTemplate:
    """The decoder's tree: `tree` as given, the root alone (no sources: AR), or best-first from num_nodes."""
    if not sources:
        return TreeTemplate.from_paths([])
    if tree is not None:
        return tree
    deepest = max_depth or (len(accept_rates) if accept_rates else default_depth(mode, heads))
    width = max(1, sum(s.num_candidates() for s in sources))
    # Jacobi modes reserve a rank-0 chain (drafts.chain_depth): it feeds the next step's predictions
    return TreeTemplate.from_budget(num_nodes, deepest, width, accept_rates, chain_depth(mode, num_nodes))


def _compiled_step(compile, backbone) -> CompiledStep | None:
    """The step's compiled form for the decoder's `compile` word (None: eager)."""
    if not compiles(compile, backbone.device):
        return None
    regional = compile == "regional"
    language_model = getattr(backbone, "language_model", None)
    # the projections' layout the step compiles best with (engine/grouped_gemms.py): one GEMM per group for the
    # whole step; separate weights for a region (it refuses inputs that alias)
    if regional:
        separate_projections(language_model)
    else:
        adjacent_projections(language_model)
    layers = getattr(language_model, "layers", None) if regional else None
    return CompiledStep(required=compile is True or regional, layers=layers, language_model=language_model)
