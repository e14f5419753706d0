"""One decode step, as named verbs over (plan, state):

  draft   the spatial pool draws candidates for depths 1..D from every source (horizontal heads fed the last
          committed hidden state, vertical drafts waiting in the speculation cache, ...);
  tree    the static template turns candidates into nodes; node 0 is the root, the last committed token;
  forward one backbone pass over every node with the tree mask (CFG branches batched on the same nodes);
  verify  ops.accept_reject walks the tree -> path + bonus token. Under the coupled rule (the default) the
          target's token after each node is its own sample, the Gumbel-argmax of its law with noise keyed by (image
          seed, body offset), and a child is accepted when it is that token (verify.match_walk, over tokens: no
          kernel); the drafts drew with the same noise.
          So every step commits exactly the tokens AR sampling with that noise commits, whatever the drafts: an
          image is a function of its seed, the same in every mode, tree and batch. Under the rejection rule, Hawk's
          exact multi-draft rejection sampling with residual resampling (ops/reference/accept_reject.py);
  commit  accepted tokens + bonus join the body, the KV cache keeps only the path;
  record  statistics on the device (tokens per step, acceptance per source and per (depth, rank));
  inform  the draft heads (if any) run on the newly committed hidden states, and every source records what the
          step committed in its own state (drafts/source.py: the horizontal drafts for the next step, vertical
          drafts into the speculation cache, the tree's laws into the Jacobi memory).

A step has fixed shapes and never reads a device value on the host or copies host data to the device: every
state tensor is updated in place, randomness is Philox keyed by (seed, step, stream) in device tensors, and
statistics accumulate on the device. So the same step runs eagerly or replays as one CUDA graph (graphs.py).
`prefill` reads the prompts and samples the first image token before the first step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..drafts import Candidates, DraftContext, StepRecord, TreeRecord
from ..ops.philox import STREAM_ACCEPT, STREAM_RESIDUAL
from ..target import defines_a_law
from ..verify import VerifyResult, match_walk
from .plan import StepPlan
from .state import DecodeState


@dataclass
class TreeNodes:
    tokens: torch.Tensor  # [B, N] local ids; the root and missing candidates are -1
    law: torch.Tensor  # [B, N] the draft-table law each node was drawn from


@dataclass
class TreeForward:
    target_logits: torch.Tensor  # [B, N, V_local] processed target logits: the law after each node
    hidden: torch.Tensor  # [B, N, d] conditional branch's hidden states
    next_offsets: torch.Tensor  # [B, N] body offset whose law each node's logits are


@dataclass
class Commit:
    count: torch.Tensor  # [B] tokens committed by this step (accepted + bonus, cut at the image end)
    was_live: torch.Tensor  # [B] bool: the row was unfinished when the step began
    tokens: torch.Tensor  # [B, W] local ids appended at the old frontier: the first `count` are committed


def step(plan: StepPlan, state: DecodeState) -> None:
    noise = step_noise(plan, state)
    candidates = draft(plan, state, noise)
    nodes = build_tree(plan, candidates)
    out = forward(plan, state, nodes)
    verdict = verify(plan, state, nodes, candidates, out, noise)
    done = commit(plan, state, nodes, verdict)
    record(plan, state, candidates, verdict, done)
    inform(plan, state, out, nodes, verdict, done)
    state.rng.advance()


def step_noise(plan: StepPlan, state: DecodeState) -> torch.Tensor | None:
    """The coupled rule's Gumbel noise at the body offsets committed + 0 .. max depth, [B, path_width, V]: drawn once
    per step, row d for the candidates of depth d + 1 and for the target's token after a node of depth d (None: the
    rejection rule, or greedy decoding)."""
    return _coupled_noise(state, state.committed[:, None] + torch.arange(plan.path_width, device=state.body.device))


def draft(plan: StepPlan, state: DecodeState, noise: torch.Tensor | None = None) -> Candidates:
    """noise: step_noise's (every proposal draws with it), or None (each draws with its own or the step's)."""
    offsets = state.committed[:, None] + plan.draft_offsets
    noise = None if noise is None else noise[:, : plan.draft_depth]
    ctx = DraftContext(plan.draft_depth, offsets, state.sampling.greedy, state.source_states, noise is not None)
    return plan.pool.draw(ctx, state.rng, noise)


def build_tree(plan: StepPlan, candidates: Candidates) -> TreeNodes:
    return TreeNodes(plan.tree.gather(candidates.tokens, -1), plan.tree.gather(candidates.law, 0))


def forward(plan: StepPlan, state: DecodeState, nodes: TreeNodes) -> TreeForward:
    batch = nodes.tokens.shape[0]
    root = state.body.gather(1, state.committed[:, None] - 1)[:, 0]  # committed >= 1 after prefill
    tokens = nodes.tokens.clamp(min=0)
    tokens[:, 0] = root
    embeds = plan.backbone.embed_image_tokens(tokens)
    hidden = plan.backbone.forward_tree(state.cache, _both_branches(embeds, state), plan.tree.depth,
                                        plan.tree.ancestor_mask)
    next_offsets = state.committed[:, None] + plan.tree.depth[None]
    target_logits = state.target(plan.backbone.image_logits(hidden), next_offsets)
    return TreeForward(target_logits, hidden[:batch], next_offsets)


def verify(plan: StepPlan, state: DecodeState, nodes: TreeNodes, candidates: Candidates, out: TreeForward,
           noise: torch.Tensor | None = None) -> VerifyResult:
    """noise: step_noise's; node n's target token takes its row at n's depth (the offset its logits are the law of,
    out.next_offsets)."""
    if noise is not None or state.sampling.greedy:  # "match": each node's target token is drawn here (its own
        #                                             Gumbel-max sample; greedy: its argmax), then a walk over tokens
        depth_noise = None if noise is None else noise[:, plan.tree.depth]
        verdict = match_walk(*own_tokens(out.target_logits, depth_noise), nodes.tokens, plan.tree)
    else:  # the rejection rule
        uniforms = _verify_uniforms(state, *nodes.tokens.shape)
        target, draft_table = out.target_logits, candidates.table.to(out.target_logits.dtype)  # one dtype (float64)
        verdict = VerifyResult(*plan.kernels.accept_reject(target, draft_table, nodes.tokens, plan.tree.parents,
                                                           nodes.law, uniforms, "rejection"))
    state.bad_rows.logical_or_(verdict.bonus < 0)  # raised by DecodeSession.check() between steps
    return verdict


def commit(plan: StepPlan, state: DecodeState, nodes: TreeNodes, verdict: VerifyResult) -> Commit:
    remaining = plan.grid.num_body_tokens - state.committed
    # accepted drafts + bonus, cut at the image end (a bonus past the last body offset is dropped)
    count = torch.minimum(verdict.accept_len + 1, remaining.clamp(min=0))
    path = verdict.path[:, : plan.path_width]
    path_tokens = nodes.tokens.gather(1, path.clamp(min=0))
    slots = torch.arange(plan.path_width, device=path.device)[None]
    # slot s < accept_len holds the token of path node s+1; slot accept_len holds the bonus
    tokens = torch.where(slots < verdict.accept_len[:, None], path_tokens.roll(-1, 1), 0)
    tokens = torch.where(slots == verdict.accept_len[:, None], verdict.bonus[:, None], tokens)
    append_tokens(plan, state, tokens, count)
    # the root + the accepted nodes before the bonus enter the KV cache: `count` path nodes
    plan.backbone.commit(state.cache, _both_branches(path, state), _both_branches(count, state))
    return Commit(count, remaining > 0, tokens)


def record(plan: StepPlan, state: DecodeState, candidates: Candidates, verdict: VerifyResult, done: Commit) -> None:
    stats = state.stats
    if plan.pool.sources:
        _count_acceptance(plan, state, verdict.path, done.was_live)
        _count_sources(plan, state, candidates, verdict.path, (done.count - 1).clamp(min=0))
    rows = torch.arange(done.count.shape[0], device=done.count.device)
    stats.history.index_put_((stats.row_steps.clamp(max=stats.history.shape[0] - 1), rows), done.count)
    stats.row_steps.add_(1)
    stats.step_index.add_(1)


def inform(plan: StepPlan, state: DecodeState, out: TreeForward, nodes: TreeNodes, verdict: VerifyResult,
           done: Commit) -> None:
    """Every source records the step: the heads' drafts on the hidden states of the path nodes just cached (body
    offsets c_old - 1 .. c_old - 2 + count, over the fixed path width; slots past count are masked) and the tree
    forward with its verdict."""
    width = plan.path_width
    chosen = verdict.path[:, :width].clamp(min=0)
    states = out.hidden.gather(1, chosen[:, :, None].expand(-1, -1, out.hidden.shape[-1]))
    slots = torch.arange(width, device=chosen.device)[None]
    offsets = (state.committed - done.count - 1)[:, None] + slots
    tree = TreeRecord(out.target_logits, out.next_offsets, nodes.tokens, verdict.path, verdict.accept_len,
                      verdict.bonus)
    _record_in_sources(plan, state, done.tokens, states, offsets, slots < done.count[:, None], tree)


def prefill(plan: StepPlan, state: DecodeState, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor) -> None:
    """Read the prompts (both CFG branches), sample the first image token with the "match" rule on a
    root-only tree, and run the heads on the last prompt state. Raises if the first target law is invalid."""
    batch = state.committed.shape[0]
    last_hidden = plan.backbone.prefill(state.cache, prompt_ids, prompt_valid)
    first = state.target(plan.backbone.image_logits(last_hidden)[:, None], state.committed[:, None])
    noise = _coupled_noise(state, state.committed[:, None])
    if noise is not None or state.sampling.greedy:  # the root's own sample, or argmax (-1 where no law is defined)
        bonus = match_walk(*own_tokens(first, noise), torch.zeros_like(state.committed)[:, None], None).bonus
    else:  # the rejection rule's first token: a draw from the target with the step's uniforms
        no_node = torch.full((batch, 1), -1, device=first.device)
        _, _, bonus = plan.kernels.accept_reject(first, first, no_node, plan.tree.parents[:1], no_node.clamp(min=0),
                                                 _verify_uniforms(state, batch, 1), "match")
    state.rng.advance()
    if bool((bonus < 0).any()):
        raise FloatingPointError("target logits: the first image position has NaN or no finite logits")
    append_tokens(plan, state, bonus[:, None], torch.ones_like(state.committed))
    offsets = torch.full((batch, 1), -1, device=first.device)  # the prompt's last token: offset -1
    _record_in_sources(plan, state, bonus[:, None], last_hidden[:batch, None], offsets,
                       torch.ones_like(offsets, dtype=torch.bool), None)


# --- helpers of the verbs ----------------------------------------------------------------------------------
def append_tokens(plan: StepPlan, state: DecodeState, tokens: torch.Tensor, count: torch.Tensor) -> None:
    """tokens [B, K] local ids; count [B] how many to append at body[committed:] (the rest hit the sink)."""
    body_tokens = plan.grid.num_body_tokens
    slots = torch.arange(tokens.shape[1], device=tokens.device)[None]
    where = state.committed[:, None] + slots
    ok = (slots < count[:, None]) & (where < body_tokens)
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None].expand_as(where)
    # index_put_, not scatter_: compiled, a scatter_ into a state buffer copies the whole buffer out and back
    state.body.index_put_((rows, torch.where(ok, where, body_tokens)), tokens.clamp(min=0))
    state.committed.add_(ok.sum(1))


def _record_in_sources(plan: StepPlan, state: DecodeState, tokens: torch.Tensor, hidden: torch.Tensor,
                       offsets: torch.Tensor, valid: torch.Tensor, tree: TreeRecord | None) -> None:
    """tokens [B, T] just committed (valid [B, T]), the tokens before them: hidden [B, T, d], at body offsets
    [B, T]. The heads (if any) run on every hidden state at once (one fused draft_heads call), then each source
    records the StepRecord in its state."""
    head_logq = None
    if plan.head_weights is not None:
        batch, width, dim = hidden.shape
        logq = plan.head_weights.draft_logq(hidden.reshape(-1, dim), 1.0, plan.kernels.draft_heads)
        if state.sampling.retempers_drafts:  # log_softmax(z / T) from log_softmax(z): the temperature is a tensor
            logq = torch.log_softmax(logq / state.sampling.temperature.to(logq.dtype), dim=-1)
        head_logq = _pad_layout(logq.float(), plan.grid).view(batch, width, plan.head_weights.num_heads, -1)
    done = StepRecord(state.committed, tokens, valid, head_logq, offsets, tree)
    for source in plan.pool.sources:
        source.record(state.source_states[id(source)], done)


def _count_acceptance(plan: StepPlan, state: DecodeState, path: torch.Tensor, live: torch.Tensor) -> None:
    """Per (depth, rank) of the template: how often a node was tried (its parent on the accepted path) and
    accepted; the tree calibration reads these (python/calibrate_tree.py)."""
    on_path = torch.zeros(path.shape, dtype=torch.int64, device=path.device)
    on_path = on_path.scatter_add_(1, path.clamp(min=0), (path >= 0).long()) > 0
    on_path &= live[:, None]
    tried = on_path[:, plan.tree.parents.clamp(min=0)]
    tried[:, 0] = False
    accepted = on_path.clone()
    accepted[:, 0] = False
    state.stats.rank_tried.index_add_(1, plan.tree.rank_cell, tried.long())  # per row: [B, cells]
    state.stats.rank_accepted.index_add_(1, plan.tree.rank_cell, accepted.long())


def _count_sources(plan: StepPlan, state: DecodeState, candidates: Candidates, path: torch.Tensor,
                   accept_len: torch.Tensor) -> None:
    node_source = plan.tree.gather(candidates.source, -1).gather(1, path.clamp(min=0))
    slots = torch.arange(path.shape[1], device=path.device)[None]
    accepted = (slots >= 1) & (slots <= accept_len[:, None]) & (node_source >= 0)
    rows = torch.arange(path.shape[0], device=path.device)[:, None].expand_as(node_source)
    state.stats.source_counts.index_put_((rows, node_source.clamp(min=0)), accepted.long(), accumulate=True)


def _coupled_noise(state: DecodeState, offsets: torch.Tensor) -> torch.Tensor | None:
    """[B, K] body offsets -> [B, K, V] the coupled rule's Gumbel noise there (None: the rejection rule, or greedy
    decoding, whose target token is its argmax)."""
    if state.noise is None or state.sampling.greedy:
        return None
    return state.noise.gumbel(offsets)


def own_tokens(target_logits: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The "match" rule's target tokens: per node, the Gumbel-argmax of its processed logits + noise, i.e. a sample
    of the target law (the Gumbel-max trick; noise None: greedy, whose processed law is one-hot at its argmax), and
    whether that law is defined at all (target.defines_a_law). [B, N] each."""
    token = (target_logits if noise is None else target_logits + noise.to(target_logits.dtype)).argmax(-1)
    return token, defines_a_law(target_logits)


def _verify_uniforms(state: DecodeState, batch: int, nodes: int) -> torch.Tensor:
    """[B, N, 2]: column 0 for acceptance tests, column 1 for sampling (bonus / residual)."""
    return torch.stack([state.rng.uniforms((batch, nodes), STREAM_ACCEPT),
                        state.rng.uniforms((batch, nodes), STREAM_RESIDUAL)], dim=-1)


def _both_branches(rows: torch.Tensor, state: DecodeState) -> torch.Tensor:
    """[B, ...] -> [B * branches, ...]: the CFG branches see the same nodes (conditional rows first)."""
    return rows.repeat(state.sampling.branches, *([1] * (rows.dim() - 1)))


def _pad_layout(logq: torch.Tensor, grid) -> torch.Tensor:
    """[T, H, V_img] -> [T, H, V_local]: the row-end column (if any) gets -inf (drafts are for image offsets)."""
    if grid.row_end_local is None:
        return logq
    return torch.nn.functional.pad(logq, (0, 1), value=float("-inf"))
