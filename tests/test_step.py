"""The step's contracts (engine/): sessions share nothing, sources can read the last tree forward through the
state, and a model family with its own image path plugs in as one backbone adapter."""
import pytest
import torch
from torch import nn

import hawk_kernels as hk
from hawk_kernels.backbones import CausalLMBackbone
from hawk_kernels.drafts import DraftProposal, HorizontalSource
from hawk_kernels.engine import DecodeSession, build_plan, new_state
from hawk_kernels.engine import step as step_module
from hawk_kernels.target import SamplingConfig
from hawk_kernels.tree import TreeTemplate
from tests.tiny_models import HIDDEN, VOCAB, tiny_backbone, tiny_grid, tiny_heads

PROMPT = torch.tensor([[1, 5, 6, 4]])


def _run_to_end(session, body_tokens):
    while session.least_committed() < body_tokens:
        session.run(1)
    return session.output()


@pytest.mark.parametrize("mode", ["ar", "hawk"])
def test_interleaved_sessions_equal_sequential_ones(mode):
    """Two live sessions of one decoder, stepped alternately, give exactly what each gives alone (each owns
    its KV cache, drafts, speculation cache, RNG and statistics)."""
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=12)
    first = dict(input_ids=PROMPT, cfg_scale=2.0, seed=3, top_k=20)
    second = dict(input_ids=torch.tensor([[2, 7, 9, 4], [1, 1, 3, 4]]), seed=8)  # no CFG, batch 2
    alone = [dec.generate(**first), dec.generate(**second)]
    sessions = [dec.start(**first), dec.start(**second)]
    while any(s.least_committed() < grid.num_body_tokens for s in sessions):
        for s in sessions:
            if s.least_committed() < grid.num_body_tokens:
                s.run(1)
    for ref, session in zip(alone, sessions):
        got = session.output()
        assert torch.equal(got.sequences, ref.sequences)
        assert got.accepted_lengths == ref.accepted_lengths and got.accepted_by_source == ref.accepted_by_source


class LastRootSource:
    """A draft source that keeps, in its own state, the target law the last tree computed at its root (recorded
    after each commit) and proposes it at every depth (any sampled law keeps the verifier exact)."""

    name = "echo"

    def __init__(self):
        self.seen = []

    def num_candidates(self):
        return 1

    def new_state(self, setup):
        return dict(logits=torch.zeros(setup.batch, setup.grid.local_vocab_size, dtype=setup.logits_dtype),
                    offset=torch.full((setup.batch,), -1))

    def record(self, state, done):
        if done.tree is not None:
            state["logits"].copy_(done.tree.target_logits[:, 0])
            state["offset"].copy_(done.tree.next_offsets[:, 0])

    def propose(self, state, ctx):
        self.seen.append((state["logits"].clone(), state["offset"].clone()))
        law = torch.log_softmax(state["logits"][:, None].float(), -1).expand(-1, ctx.depth, -1)
        valid = (state["offset"][:, None] >= 0).expand(-1, ctx.depth)
        return [DraftProposal(self.name, law, valid, 1)]


@pytest.mark.parametrize("greedy", [True, False])
def test_a_source_records_the_tree_forward_in_its_own_state(greedy, monkeypatch):
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    echo = LastRootSource()
    sources = (HorizontalSource(heads.num_horizontal, 1), echo)
    plan = build_plan(CausalLMBackbone(model, grid), heads, sources,
                      TreeTemplate.from_budget(8, max_depth=3, width=2), backend="auto")
    forwards, forward = [], step_module.forward

    def spy(plan, state, nodes):
        out = forward(plan, state, nodes)
        forwards.append((out.target_logits.clone(), out.next_offsets.clone()))
        return out

    monkeypatch.setattr(step_module, "forward", spy)
    out = _generate(plan, SamplingConfig(cfg_scale=2.0, temperature=0.0 if greedy else 1.0), seed=4)
    assert len(echo.seen) == len(forwards) == out.num_forward_passes > 1
    assert bool((echo.seen[0][1] == -1).all())  # nothing before the first tree
    for step_index in range(1, len(forwards)):  # step t's source sees exactly step t-1's forward (its root)
        assert torch.equal(echo.seen[step_index][0], forwards[step_index - 1][0][:, 0])
        assert torch.equal(echo.seen[step_index][1], forwards[step_index - 1][1][:, 0])
    assert bool((echo.seen[1][1] >= 0).all())  # from the second step on, its drafts are valid
    if greedy:
        ar = hk.HawkDecoder(model, heads, grid, mode="ar").generate(PROMPT, cfg_scale=2.0, temperature=0)
        assert torch.equal(out.sequences, ar.sequences)


def _generate(plan, sampling, seed, batch=1):
    """A whole generation through the engine's own API (what HawkDecoder does, minus its checks)."""
    state = new_state(plan, sampling, batch=batch, capacity=64, seed=seed, prompt=PROMPT.expand(batch, -1))
    prompt = PROMPT.expand(batch, -1)
    valid = torch.ones_like(prompt, dtype=torch.bool)
    if sampling.uses_cfg:  # conditional rows, then the unconditional ones (image-start token only)
        prompt = torch.cat([prompt, prompt[:, -1:].expand(batch, prompt.shape[1])])
        valid = torch.cat([valid, torch.ones_like(valid)])
        valid[batch:, :-1] = False
    step_module.prefill(plan, state, prompt, valid)
    return _run_to_end(DecodeSession(plan, state, cuda_graphs=False), plan.grid.num_body_tokens)


class SeparateImagePath(CausalLMBackbone):
    """A Janus-shaped family: image codes have an embedding table and a (non-linear) head of their own; the
    sequence ids of the output are the codes themselves."""

    def __init__(self, model, grid, image_embedding: nn.Module, image_head: nn.Module):
        super().__init__(model, grid)
        self.image_embedding, self.image_head = image_embedding, image_head

    def embed_image_tokens(self, local_ids):
        return self.image_embedding(local_ids)

    def image_logits(self, hidden):
        return self.image_head(hidden)

    def head_rows(self):
        return None  # no linear image head to share: heads bring their own projection


def _separate_path_backbone(codes=12):
    torch.manual_seed(5)
    grid = hk.ImageGrid(height=3, width=3, image_token_range=(0, codes))  # no row-end token, as Janus
    embedding = nn.Embedding(codes, HIDDEN).double()
    head = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, codes)).double()
    with torch.no_grad():
        head[2].weight.mul_(6.0)
    return SeparateImagePath(tiny_backbone(), grid, embedding, head), grid


def _reference_greedy(backbone, grid, cfg):
    """A plain loop without cache or trees: argmax of the CFG-combined image head, fed back as embeddings."""
    lm = backbone.language_model
    prompts = [PROMPT, PROMPT[:, -1:]]
    codes = []
    for _ in range(grid.num_body_tokens):
        logits = []
        for prompt in prompts:
            embeds = lm.get_input_embeddings()(prompt)
            if codes:
                embeds = torch.cat([embeds, backbone.image_embedding(torch.tensor([codes]))], 1)
            logits.append(backbone.image_head(lm(inputs_embeds=embeds).last_hidden_state[:, -1]))
        codes.append(int((logits[1] + cfg * (logits[0] - logits[1])).argmax()))
    return codes


def test_a_family_with_its_own_image_path_plugs_in_as_one_adapter():
    backbone, grid = _separate_path_backbone()
    heads = tiny_heads(shared_lm_head=False, image_token_range=(0, 12))
    with torch.no_grad():
        expected = _reference_greedy(backbone, grid, cfg=2.0)
    outs = {mode: hk.HawkDecoder(backbone, heads, grid, mode=mode, num_nodes=10).generate(PROMPT, cfg_scale=2.0,
                                                                                           temperature=0)
            for mode in ("ar", "medusa", "hawk")}
    for mode, out in outs.items():
        assert out.generated[0].tolist() == expected, mode
    assert outs["hawk"].num_forward_passes <= outs["ar"].num_forward_passes
    sampled = hk.HawkDecoder(backbone, heads, grid, mode="hawk", num_nodes=10).generate(PROMPT.repeat(3, 1), seed=1)
    assert bool(((sampled.image_tokens >= 0) & (sampled.image_tokens < 12)).all())
    assert VOCAB > 12  # the codes are not text ids: only the adapter knows how to embed and score them
