"""A draft source added from this file alone, through drafts/source.py's interface (no change under engine/):
it keeps state across steps (a per-image histogram of the codes committed so far), updates it after each commit
(`record`), proposes from it, and so changes what is accepted. Like every source it must pass the closed-form
test and the end-to-end law test, each with a negative control."""
import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.backbones import CausalLMBackbone
from hawk_kernels.drafts import DraftProposal, SpatialPool, StepRecord
from hawk_kernels.drafts.source import DraftContext, SourceSetup
from hawk_kernels.engine import build_plan
from hawk_kernels.grid import ImageGrid
from hawk_kernels.ops.reference import accept_reject as reference
from hawk_kernels.target import SamplingConfig
from hawk_kernels.tree import TreeTemplate
from tests.test_decoder import _exact_image_law
from tests.test_jacobi import first_token_law
from tests.test_step import _generate
from tests.test_verify import _Fixed, _chi2_pvalue, broken_no_residual
from tests.tiny_models import tiny_backbone


class UnigramSource:
    """Drafts every depth from the histogram of the codes this image has committed so far (add-one smoothed):
    images that repeat a few codes get accepted drafts. State: counts [B, V] per generation."""

    name = "unigram"

    def __init__(self, count=1, learn=True):
        self.count, self.learn = count, learn

    def num_candidates(self):
        return self.count

    def new_state(self, setup: SourceSetup):
        counts = torch.ones(setup.batch, setup.grid.local_vocab_size, dtype=torch.float64, device=setup.device)
        is_code = torch.ones(setup.grid.local_vocab_size, dtype=torch.float64, device=setup.device)
        if setup.grid.row_end_local is not None:
            is_code[setup.grid.row_end_local:setup.grid.row_end_local + 1].fill_(0.0)  # drafts are image codes
        return counts, is_code

    def record(self, state, done: StepRecord):
        if self.learn:
            counts, _ = state
            counts.scatter_add_(1, done.tokens.clamp(min=0), (done.head_valid & (done.tokens >= 0)).double())

    def propose(self, state, ctx: DraftContext):
        counts, is_code = state
        weights = counts * is_code
        law = (weights / weights.sum(-1, keepdim=True)).log().float()
        batch, depth = ctx.target_offsets.shape
        valid = torch.ones(batch, depth, dtype=torch.bool, device=counts.device)
        return [DraftProposal(self.name, law[:, None].expand(-1, depth, -1), valid, self.count)]


def _setup(grid, batch=1):
    return SourceSetup(batch, grid, torch.zeros(1, 1, dtype=torch.int64), torch.float64, None, torch.device("cpu"))


@pytest.mark.parametrize("op, must_match", [(reference, True), (broken_no_residual, False)])
def test_closed_form_with_a_stateful_source(op, must_match):
    """After two recorded steps the source's law is its histogram; one depth with its candidate and a horizontal
    sibling, drawn by the pool: the verifier's output law, integrated over every draw and uniform, is the
    target's; the no-residual rule is far off."""
    vocab = 4
    grid = ImageGrid(height=4, width=3, image_token_range=(0, vocab))  # no row end
    source = UnigramSource()
    state = source.new_state(_setup(grid))
    for tokens in ([[2, 2, 0]], [[2, 1, 3]]):
        tokens = torch.tensor(tokens)
        source.record(state, StepRecord(torch.tensor([3]), tokens, torch.tensor([[True, True, False]]), None,
                                        tokens, None))
    assert state[0].tolist() == [[1.0, 2.0, 4.0, 1.0]]  # add-one, then 2, 2 and 2, 1 (the third slots uncommitted)
    horizontal = torch.log_softmax(torch.randn(vocab, dtype=torch.float64) * 1.5, -1)
    fixed = _Fixed("horizontal", horizontal, 1)
    pool = SpatialPool((source, fixed), grid)
    ctx = DraftContext(1, torch.tensor([[5]]), False, {id(source): state, id(fixed): None})
    cand = pool.draw(ctx, torch.Generator().manual_seed(0))
    table = cand.table[0].double()  # laws 0: the histogram, 1: horizontal, 2: row end
    laws = [torch.softmax(table[q], -1) for q in range(2)]
    assert torch.allclose(laws[0], torch.tensor([1, 2, 4, 1], dtype=torch.float64) / 8, atol=1e-6)
    target = torch.randn(1, 3, vocab, dtype=torch.float64) * 1.5
    error = float((first_token_law(op, target, table, laws) - torch.softmax(target[0, 0], -1)).abs().max())
    assert (error < 1e-9) if must_match else (error > 1e-3), error


def _plan(model, grid, source, nodes=6):
    tree = TreeTemplate.from_budget(nodes, max_depth=3, width=source.num_candidates())
    return build_plan(CausalLMBackbone(model, grid), None, (source,), tree, verify="rejection")  # the verifier's
    #                                                     exactness with this source (coupled: test_coupled_verify)


@pytest.mark.parametrize("learn", [True, False])
def test_sampled_images_follow_the_exact_ar_law(learn):
    """End to end: a 2x2 image of 3 codes (81 images, row ends), CFG 2: the images of the stateful source follow
    the exact AR law (chi-square), whether or not it learns. Negative control: the same test rejects the images
    sampled at temperature 1.3 (the same source and tree)."""
    model = tiny_backbone()
    grid = hk.ImageGrid(height=2, width=2, row_end_token=3, image_token_range=(45, 48))
    sampling = SamplingConfig(cfg_scale=2.0)
    probs, images = _exact_image_law(model, grid, sampling)
    index = {img: i for i, img in enumerate(images)}
    counts, hot = torch.zeros(len(images), dtype=torch.int64), torch.zeros(len(images), dtype=torch.int64)
    plan = _plan(model, grid, UnigramSource(learn=learn))
    hot_plan = _plan(model, grid, UnigramSource())
    for seed in range(5):
        out = _generate(plan, sampling, seed, batch=400)
        for img in (out.image_tokens.reshape(400, -1) - 45).tolist():
            counts[index[tuple(img)]] += 1
        if learn:
            warm = _generate(hot_plan, SamplingConfig(cfg_scale=2.0, temperature=1.3), seed, batch=400)
            for img in (warm.image_tokens.reshape(400, -1) - 45).tolist():
                hot[index[tuple(img)]] += 1
    assert _chi2_pvalue(counts, probs, bins=12) > 1e-4
    assert out.accepted_by_source.get("unigram", 0) > 0 and out.mean_accepted_length > 1.0
    if learn:
        assert _chi2_pvalue(hot, probs, bins=12) < 1e-6


def test_recording_changes_what_is_accepted():
    """The state is what the source learns from: with record() a no-op the same generation accepts differently
    (and greedy output still equals AR's either way)."""
    model = tiny_backbone()
    grid = hk.ImageGrid(height=4, width=4, row_end_token=3, image_token_range=(45, 48))
    sampling = SamplingConfig(cfg_scale=2.0, temperature=0.0)
    learning = _generate(_plan(model, grid, UnigramSource(learn=True)), sampling, seed=0, batch=8)
    frozen = _generate(_plan(model, grid, UnigramSource(learn=False)), sampling, seed=0, batch=8)
    ar = _generate(build_plan(CausalLMBackbone(model, grid), None, (), TreeTemplate.from_paths([])), sampling, 0, 8)
    assert torch.equal(learning.sequences, ar.sequences) and torch.equal(frozen.sequences, ar.sequences)
    assert learning.accepted_lengths != frozen.accepted_lengths
    assert learning.accepted_by_source.get("unigram", 0) > frozen.accepted_by_source.get("unigram", 0)
