"""Exactness of the verifier (docs/method.md §5): closed-form law at tiny vocabularies, a statistical test at a
realistic vocabulary, each with a NEGATIVE CONTROL (the no-residual-update rule) that must fail."""
import itertools
import math

import pytest
import torch

from hawk_kernels import ops

from hawk_kernels.ops.reference import accept_reject as reference
from hawk_kernels.ops.reference.accept_reject import _sample
from hawk_kernels.drafts import DraftContext, DraftProposal, SpatialPool
from hawk_kernels.grid import ImageGrid
from hawk_kernels.verify import VerifyResult


def broken_no_residual(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms, rule):
    """The biased rule seen in a public engine: each sibling tested against the ORIGINAL target."""
    probs = torch.softmax(target_logits[0].double(), -1)
    children = [n for n in range(1, node_parent.shape[0]) if int(node_parent[n]) == 0]
    draft = None
    for child in children:
        draft = torch.softmax(draft_logits[0, int(node_law[0, child])].double(), -1)
        token = int(node_tokens[0, child])
        if float(uniforms[0, child, 0]) * float(draft[token]) < float(probs[0, token]):
            return torch.tensor([1]), torch.tensor([[0, child]]), torch.tensor([-2])
    residual = torch.clamp(probs[0] - draft, min=0)
    return torch.tensor([0]), torch.tensor([[0, -1]]), torch.tensor([_sample(residual, float(uniforms[0, 0, 1]))])


def _threshold(accepts, iters=60) -> float:
    """sup{u in [0,1): accepts(u)} for a set of the form [0, t) (the acceptance contract)."""
    if not accepts(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if accepts(mid) else (lo, mid)
    return lo


def _sample_law(sample, vocab, iters=60) -> dict:
    """Law of a nondecreasing step function token(u), u ~ U[0,1), by bisecting each boundary."""
    law, prev = {}, 0.0
    for v in range(vocab):
        if sample(1.0 - 1e-16) <= v:
            bound = 1.0
        else:
            lo, hi = 0.0, 1.0
            for _ in range(iters):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if sample(mid) <= v else (lo, mid)
            bound = hi
        if bound > prev:
            law[v] = bound - prev
        prev = max(prev, bound)
    return law


def exact_output_law(op, target_logits, draft_logits, tokens, parents, sources):
    """{tuple of committed tokens: probability} of one op call, integrating every uniform exactly."""
    nodes = parents.shape[0]
    children = {n: [c for c in range(1, nodes) if int(parents[c]) == n] for n in range(nodes)}
    uniforms = torch.full((1, nodes, 2), 0.5, dtype=torch.float64)
    out = {}

    def run():
        _, path, bonus = op(target_logits, draft_logits, tokens, parents, sources, uniforms, "rejection")
        return [int(n) for n in path[0] if n >= 0], int(bonus[0])

    def visit(node, weight, path_tokens):
        for child in children[node]:
            def accepts(u, child=child):
                uniforms[0, child, 0] = u
                return child in run()[0]
            tau = _threshold(accepts)
            if tau > 0:
                uniforms[0, child, 0] = tau / 2
                visit(child, weight * tau, path_tokens + [int(tokens[0, child])])
            if tau >= 1:
                return
            uniforms[0, child, 0] = (1 + tau) / 2
            weight *= 1 - tau

        def sample(u):
            uniforms[0, node, 1] = u
            return run()[1]
        for token, mass in _sample_law(sample, target_logits.shape[-1]).items():
            key = tuple(path_tokens + [token])
            out[key] = out.get(key, 0.0) + weight * mass

    visit(0, 1.0, [])
    return out


def _draw_prob(draft_probs, sources, picks):
    """Probability that the pool draws `picks` in order (sequential, without replacement across sources)."""
    prob, taken = 1.0, []
    for src, tok in zip(sources, picks):
        q = draft_probs[src]
        prob *= float(q[tok]) / (1.0 - sum(float(q[t]) for t in taken))
        taken.append(tok)
    return prob


def _backend_op(backend):
    def op(target, drafts, tokens, parents, sources, uniforms, rule):
        if backend == "cpu":  # fp32 kernel: thresholds exact to ~1e-7
            target, drafts, uniforms = target.float(), drafts.float(), uniforms.float()
        return ops.accept_reject(target, drafts, tokens, parents, sources, uniforms, rule=rule, backend=backend)
    return op


def _compiled():
    return ops._backend.why_not("cpu", "accept_reject", torch.device("cpu")) is None


@pytest.mark.parametrize("op, must_match, tol", [
    (reference, True, 1e-9),
    (broken_no_residual, False, 1e-9),
    pytest.param(_backend_op("cpu"), True, 2e-6, marks=pytest.mark.skipif(not _compiled(), reason="no _C")),
])
def test_closed_form_one_level(op, must_match, tol):
    vocab = 4
    target = torch.randn(1, 4, vocab, dtype=torch.float64) * 1.5
    drafts = torch.randn(1, 2, vocab, dtype=torch.float64) * 1.5
    parents = torch.tensor([-1, 0, 0, 0])
    sources = [0, 1, 0]  # two siblings from the same law: without replacement
    draft_probs = torch.softmax(drafts[0], -1)
    law = torch.zeros(vocab, dtype=torch.float64)
    for picks in itertools.permutations(range(vocab), 3):
        weight = _draw_prob(draft_probs, sources, picks)
        tokens = torch.tensor([[-1, *picks]])
        for key, mass in exact_output_law(op, target, drafts, tokens, parents, torch.tensor([[0, *sources]])).items():
            law[key[0]] += weight * mass
    error = float((law - torch.softmax(target[0, 0], -1)).abs().max())
    assert (error < tol) == must_match, error
    if not must_match:
        assert error > 1e-3  # the negative control is far off, not marginally


def test_closed_form_two_levels_mixed_sources():
    vocab = 3
    first = torch.randn(vocab, dtype=torch.float64) * 1.5
    second = torch.randn(vocab, vocab, dtype=torch.float64) * 1.5  # law of x2 given x1
    drafts = torch.randn(1, 4, vocab, dtype=torch.float64) * 1.5
    draft_probs = torch.softmax(drafts[0], -1)
    parents = torch.tensor([-1, 0, 0, 1, 1])  # root -> A, B ; A -> A1, A2
    sources = torch.tensor([[0, 0, 1, 2, 3]])
    law = torch.zeros(vocab, vocab, dtype=torch.float64)
    for top in itertools.permutations(range(vocab), 2):
        for low in itertools.permutations(range(vocab), 2):
            weight = _draw_prob(draft_probs, [0, 1], top) * _draw_prob(draft_probs, [2, 3], low)
            tokens = torch.tensor([[-1, top[0], top[1], low[0], low[1]]])
            target = torch.stack([first, second[top[0]], second[top[1]], first, first])[None]
            for key, mass in exact_output_law(reference, target, drafts, tokens, parents, sources).items():
                if len(key) == 1:  # stopped at the root: the next step samples x2 from its own target
                    law[key[0]] += weight * mass * torch.softmax(second[key[0]], -1)
                else:
                    law[key[0], key[1]] += weight * mass
    expected = torch.softmax(first, -1)[:, None] * torch.softmax(second, -1)
    assert float((law - expected).abs().max()) < 1e-9


class _Fixed:
    """A draft source with fixed laws (the pool's DraftSource interface), keeping no state."""

    def __init__(self, name, logq, count):
        self.name, self.logq, self.count = name, logq, count

    def num_candidates(self):
        return self.count

    def new_state(self, setup):
        return None

    def record(self, state, done):
        pass

    def propose(self, state, ctx):
        batch = ctx.target_offsets.shape[0]
        logq = self.logq[None, None].expand(batch, ctx.depth, -1)
        return [DraftProposal(self.name, logq, torch.ones(batch, ctx.depth, dtype=torch.bool), self.count)]


def _chi2_pvalue(counts, probs, bins=20):
    order = torch.argsort(probs)
    edges = torch.linspace(0, 1, bins + 1)[1:-1]
    group = torch.bucketize(torch.cumsum(probs[order], 0) - probs[order] / 2, edges)
    observed = torch.zeros(bins, dtype=torch.float64).index_add_(0, group, counts[order].double())
    expected = torch.zeros(bins, dtype=torch.float64).index_add_(0, group, probs[order]) * counts.sum()
    keep = expected > 0
    stat = float(((observed - expected) ** 2 / expected)[keep].sum())
    dof = int(keep.sum()) - 1
    # Wilson-Hilferty normal approximation of the chi-square tail
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


@pytest.mark.parametrize("broken", [False, True])
def test_statistical_realistic_vocab(broken):
    vocab, trials = 1000, 6000
    target = torch.randn(vocab) * 2
    horizontal = torch.log_softmax(target + torch.randn(vocab) * 1.5, -1)
    vertical = torch.log_softmax(target * 0.5 + torch.randn(vocab), -1)
    grid = ImageGrid(height=1, width=64, image_token_range=(0, vocab))
    pool = SpatialPool([_Fixed("horizontal", horizontal, 2), _Fixed("vertical", vertical, 1)], grid)
    gen = torch.Generator().manual_seed(7)
    offsets = torch.zeros(trials, 1, dtype=torch.int64)
    cand = pool.draw(DraftContext(1, offsets, False, {id(s): None for s in pool.sources}), gen)
    pvalue = first_token_pvalue(target, cand, gen, broken)
    if broken:
        assert pvalue < 1e-6, pvalue
    else:
        assert pvalue > 1e-4, pvalue


def first_token_pvalue(target, cand, gen, broken: bool) -> float:
    """The first committed token of a root + depth-1 tree of the pool's candidates (every row one trial),
    verified exactly or by the broken no-residual rule, tested against softmax(target) by chi-square."""
    trials, width = cand.tokens.shape[0], cand.tokens.shape[2]
    tokens = torch.cat([torch.full((trials, 1), -1), cand.tokens[:, 0]], 1)
    laws = torch.cat([torch.zeros(trials, 1, dtype=torch.int64), cand.law[:, 0]], 1)
    parents = torch.tensor([-1] + [0] * width)
    target_rows = target[None, None].expand(trials, width + 1, -1)
    uniforms = torch.rand(trials, width + 1, 2, generator=gen)
    if broken:
        out = torch.tensor([_broken_first_token(target_rows[b:b + 1], cand.table[b:b + 1], tokens[b:b + 1], parents,
                                                laws[b:b + 1], uniforms[b:b + 1]) for b in range(trials)])
    else:
        result = VerifyResult(*ops.accept_reject(target_rows, cand.table, tokens, parents, laws, uniforms))
        first = tokens.gather(1, result.path[:, 1:2].clamp(min=0))[:, 0]
        out = torch.where(result.accept_len > 0, first, result.bonus)
    return _chi2_pvalue(torch.bincount(out, minlength=target.shape[0]), torch.softmax(target.double(), -1))


def _broken_first_token(*args):
    accept_len, path, bonus = broken_no_residual(*args, "rejection")
    return int(args[2][0, int(path[0, 1])]) if int(accept_len[0]) else int(bonus[0])


def test_match_rule_and_guards():
    vocab = 6
    target = torch.randn(2, 3, vocab)
    target[1, 0] = float("nan")
    drafts = torch.randn(2, 1, vocab)
    tokens = torch.tensor([[-1, 7, 2], [-1, 1, 2]])  # 7 is out of range: never accepted
    parents = torch.tensor([-1, 0, 0])
    sources = torch.zeros(2, 3, dtype=torch.int64)
    uniforms = torch.rand(2, 3, 2)
    uniforms[0, 0, 1] = 0.0  # the target's own sample is its first token with positive mass
    accept_len, path, bonus = reference(target, drafts, tokens, parents, sources, uniforms, "match")
    assert bonus[1] == -1 and accept_len[1] == 0  # NaN target row: defined outcome
    expected_token = int(torch.nonzero(torch.softmax(target[0, 0].double(), -1) > 0)[0])
    if expected_token == 2:
        assert accept_len[0] == 1 and path[0, 1] == 2
    else:
        assert accept_len[0] == 0 and bonus[0] == expected_token
    assert int(bonus.max()) < vocab
