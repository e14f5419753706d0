"""accept_reject: every backend makes the reference's decisions, given the same uniforms.

The reference runs in float64; the C++ CPU op in double, CUDA/Triton in float32. Decisions can only differ
when a uniform lands within float32 rounding of a threshold: ~1e-6 per accept test, but a bonus or match token
drawn by inverse CDF over V entries sums V float32 terms, ~1e-4 per draw at V 8194 and ~1e-3 at V 32769-70001.
These seeds were checked to keep every on-path decision of the GPU cases at least 3e-5 (relative) from its
threshold, so they give bit-equal (accept_len, path, bonus); a new seed at a large V may not.
"""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.ops import _backend, reference
from trees import layered
from conftest import backend_params, require

# ---------------------------------------------------------------- trees (parent pointers, topological)


def chain(n):
    return [-1] + list(range(n - 1))


def wide(n):
    return [-1] + [0] * (n - 1)


def random_tree(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [-1] + [int(torch.randint(0, i, (1,), generator=g)) for i in range(1, n)]


TREES = {
    "chain8": chain(8), "chain33": chain(33), "wide13": wide(13), "random24": random_tree(24, 3),
    "layered": layered([3, 2, 2, 1]), "root_only": [-1],
}

# ---------------------------------------------------------------- inputs


def make_inputs(parents, batch, vocab, num_rows, seed, dtype=torch.float32):
    """Correlated target/draft logits, tokens drawn from their draft rows, fresh uniforms (all CPU)."""
    g = torch.Generator().manual_seed(seed)
    num_nodes = len(parents)
    base = torch.randn(batch, 1, vocab, generator=g) * 2.5  # shared shape of every law: drafts get accepted
    target = base + 0.6 * torch.randn(batch, num_nodes, vocab, generator=g)
    draft = base + 0.6 * torch.randn(batch, num_rows, vocab, generator=g)
    law = torch.randint(0, num_rows, (batch, num_nodes), generator=g)
    rows = torch.softmax(torch.gather(draft, 1, law[..., None].expand(-1, -1, vocab)), -1)
    tokens = torch.multinomial(rows.reshape(-1, vocab), 1, generator=g).view(batch, num_nodes)
    uniforms = torch.rand(batch, num_nodes, 2, generator=g)
    return dict(target_logits=target.to(dtype), draft_logits=draft.to(dtype), node_tokens=tokens,
                node_parent=torch.tensor(parents, dtype=torch.int64), node_law=law, uniforms=uniforms)


def corrupt(inputs, seed, *, invalid=False, nan=False, neg_inf=False, forced=False, duplicates=False):
    """Edge cases of the contract, each on some nodes of some batch rows."""
    g = torch.Generator().manual_seed(seed)
    t, d, tok, law = (inputs[k] for k in ("target_logits", "draft_logits", "node_tokens", "node_law"))
    batch, num_nodes, vocab = t.shape
    num_rows = d.shape[1]
    parents = inputs["node_parent"].tolist()
    some = lambda: torch.rand(batch, num_nodes, generator=g) < 0.25
    if invalid:
        bad = torch.tensor([-1, vocab, vocab + 7, -100])[torch.randint(0, 4, (batch, num_nodes), generator=g)]
        tok[:] = torch.where(some(), bad, tok)
        law[:] = torch.where(some(), torch.where(some(), -1, num_rows), law)
    if nan:  # one NaN logit in ~20% of target rows, a NaN draft row, and the root of batch row 0
        rows = torch.rand(batch, num_nodes, generator=g) < 0.2
        t[rows, torch.randint(0, vocab, (int(rows.sum()),), generator=g)] = float("nan")
        d[:, 0, vocab // 2] = float("nan")
        t[0, 0, 0] = float("nan")
    if neg_inf:
        t[-1, num_nodes // 2] = float("-inf")
        d[:, -1] = float("-inf")
        t[..., : vocab // 3] = torch.where(some()[..., None], float("-inf"), t[..., : vocab // 3])
    if forced:  # one-hot laws (layout tokens): a child matching its parent's one-hot target is always taken
        d[:, 0] = float("-inf")
        d[:, 0, 1] = 3.0
        tok[law == 0] = 1
        for b in range(batch):
            for node in range(1, num_nodes):
                if node % 3 != 2:
                    t[b, parents[node]] = float("-inf")
                    t[b, parents[node], int(tok[b, node]) % vocab] = 0.0
    if duplicates:
        for node in range(2, num_nodes):
            if parents[node] == parents[node - 1]:
                tok[:, node] = tok[:, node - 1]
                law[:, node] = law[:, node - 1] if node % 2 else law[:, node]
    return inputs


def run(backend, inputs, rule, device=torch.device("cpu")):
    moved = {k: v.to(device) for k, v in inputs.items()}
    return ops.accept_reject(**moved, rule=rule, backend=backend)


def assert_same(got, want, note=""):
    names = ("accept_len", "path", "bonus")
    for name, a, b in zip(names, got, want):
        assert a.dtype == torch.int64, name
        assert torch.equal(a.cpu(), b.cpu()), f"{name} differs {note}:\n got {a.tolist()}\nwant {b.tolist()}"


# ---------------------------------------------------------------- backend == reference

CASES = [  # (tree, batch, vocab, draft rows, edge cases)
    ("chain8", 3, 37, 3, {}),
    ("wide13", 2, 129, 4, {"duplicates": True}),
    ("random24", 3, 300, 5, {"invalid": True}),
    ("layered", 2, 257, 4, {"nan": True}),
    ("layered", 2, 100, 3, {"neg_inf": True, "invalid": True}),
    ("chain33", 2, 64, 2, {"forced": True}),
    ("wide13", 2, 50, 2, {"forced": True, "duplicates": True}),
    ("root_only", 2, 17, 1, {}),
]


@pytest.mark.parametrize("backend", backend_params("accept_reject"))
@pytest.mark.parametrize("rule", ["rejection", "match"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_reference(backend, rule, case):
    device = require(backend, "accept_reject")
    tree, batch, vocab, num_rows, edges = CASES[case]
    for seed in range(2 if backend == "triton" else 4):
        inputs = corrupt(make_inputs(TREES[tree], batch, vocab, num_rows, seed=100 * case + seed), seed, **edges)
        want = reference.accept_reject(**inputs, rule=rule)
        assert_same(run(backend, inputs, rule, device), want, f"(case {case}, seed {seed})")


@pytest.mark.parametrize("backend", backend_params("accept_reject"))
def test_matches_reference_lumina_vocab(backend):
    """The real local vocabulary (8192 codes + row-end), a Medusa-like tree, CFG batch 2, bf16 logits."""
    device = require(backend, "accept_reject")
    dtype = torch.float32 if _backend.why_not(backend, "accept_reject", device, torch.bfloat16, True) else torch.bfloat16
    inputs = make_inputs(layered([2, 2, 1]), 2, 8194, 4, seed=7, dtype=dtype)
    for rule in ("rejection", "match"):
        assert_same(run(backend, inputs, rule, device), reference.accept_reject(**inputs, rule=rule), rule)


# ---------------------------------------------------------------- the per-node-parallel structure
# Every backend decides each (row, node) on its own, then walks from the root along the accepted children: the
# walk must read only the decisions of the nodes it reaches, whatever the others decided.


def last_child_forced(inputs):
    """Every internal node's target is one-hot on the token of its LAST child, siblings have distinct tokens and
    the last child's accept uniform is 0: each earlier sibling is tried and rejected (residual 0 at its token), the
    residual updated, and the last one accepted, at every depth."""
    t, tok, u = inputs["target_logits"], inputs["node_tokens"], inputs["uniforms"]
    parents = inputs["node_parent"].tolist()
    kids = {}
    for node in range(1, len(parents)):
        kids.setdefault(parents[node], []).append(node)
    for node, children in kids.items():
        for i, child in enumerate(children):
            tok[:, child] = (tok[:, child] + i) % t.shape[-1] if i == 0 else (tok[:, children[0]] + i) % t.shape[-1]
        t[:, node] = float("-inf")
        t[torch.arange(t.shape[0]), node, tok[:, children[-1]]] = 0.0
        u[:, children[-1], 0] = 0.0
    return inputs


@pytest.mark.parametrize("backend", backend_params("accept_reject", include_reference=True))
@pytest.mark.parametrize("rule", ["rejection", "match"])
@pytest.mark.parametrize("tree", ["chain64", "layered333", "wide40"])
def test_accepted_at_every_depth(backend, rule, tree):
    """Deep chains and trees whose nodes all have several children: the last sibling accepted at every depth."""
    device = require(backend, "accept_reject")
    parents = {"chain64": chain(64), "layered333": layered([3, 3, 3]), "wide40": wide(40)}[tree]
    batch = 1 if backend == "triton" and device.type == "cpu" else 2  # the interpreter runs every node's program
    inputs = last_child_forced(make_inputs(parents, batch, 61, 3, seed=len(parents)))
    want = reference.accept_reject(**inputs, rule=rule)
    depth = {"chain64": 63, "layered333": 3, "wide40": 1}[tree]
    assert want[0].tolist() == [depth] * batch
    assert_same(run(backend, inputs, rule, device), want, tree)


@pytest.mark.parametrize("backend", backend_params("accept_reject"))
@pytest.mark.parametrize("rule", ["rejection", "match"])
def test_nodes_off_the_path_do_not_matter(backend, rule):
    """Nodes the walk never reaches may hold anything (NaN or +inf target rows, invalid tokens and laws, other
    uniforms): their decisions are computed and ignored."""
    device = require(backend, "accept_reject")
    for seed in range(3):
        inputs = make_inputs(random_tree(30, seed), 3, 90, 4, seed=seed)
        want = reference.accept_reject(**inputs, rule=rule)
        parents = inputs["node_parent"]
        g = torch.Generator().manual_seed(seed)
        for b in range(3):
            on_path = set(want[1][b, : int(want[0][b]) + 1].tolist())
            off = [n for n in range(30) if n not in on_path]
            unread = [n for n in off if int(parents[n]) not in on_path]  # not even tried as a child
            inputs["target_logits"][b, off] = torch.where(torch.rand(len(off), 1, generator=g) < 0.5,
                                                          float("nan"), float("inf"))
            inputs["node_tokens"][b, unread] = torch.randint(-5, 200, (len(unread),), generator=g)
            inputs["node_law"][b, unread] = torch.randint(-2, 7, (len(unread),), generator=g)
            inputs["uniforms"][b, unread] = torch.rand(len(unread), 2, generator=g)
        assert_same(reference.accept_reject(**inputs, rule=rule), want, f"reference, seed {seed}")
        assert_same(run(backend, inputs, rule, device), want, f"seed {seed}")


@pytest.mark.parametrize("backend", backend_params("accept_reject"))
def test_many_siblings_rejected(backend):
    """A root with 47 children and a target unrelated to the drafts: long sibling loops (more tried tokens than a
    warp has lanes), many residual updates, in every row."""
    device = require(backend, "accept_reject")
    inputs = make_inputs(wide(48), 1 if backend == "triton" and device.type == "cpu" else 3, 70, 4, seed=9)
    inputs["target_logits"] = torch.randn(inputs["target_logits"].shape, generator=torch.Generator().manual_seed(9))
    want = reference.accept_reject(**inputs)
    assert_same(run(backend, inputs, "rejection", device), want)


@pytest.mark.parametrize("backend", backend_params("accept_reject"))
@pytest.mark.parametrize("vocab", [32769, 70001])
def test_large_vocabularies(backend, vocab):
    """V = 32769 (CUDA: the row in opt-in shared memory) and 70001 (CUDA: the row above it, residual in global
    memory), a wide-then-deep tree, both rules."""
    device = require(backend, "accept_reject")
    if backend == "triton" and device.type == "cpu":
        pytest.skip("the Triton interpreter is too slow at this vocabulary")
    inputs = make_inputs(layered([4, 2, 1]), 2, vocab, 3, seed=vocab)
    for rule in ("rejection", "match"):
        assert_same(run(backend, inputs, rule, device), reference.accept_reject(**inputs, rule=rule), rule)


@pytest.mark.cuda
@pytest.mark.parametrize("rule", ["rejection", "match"])
def test_cuda_global_memory_path(monkeypatch, rule):
    """HAWK_ACCEPT_REJECT_SMEM=0: the CUDA kernel keeps the residual in global memory (its path above ~56k
    entries, where the target row no longer fits in shared memory) at small vocabularies, with every edge case."""
    device = require("cuda", "accept_reject")
    monkeypatch.setenv("HAWK_ACCEPT_REJECT_SMEM", "0")
    for seed in range(3):
        inputs = corrupt(make_inputs(TREES["random24"], 3, 300, 5, seed=seed), seed, invalid=True, nan=True,
                         duplicates=True)
        assert_same(run("cuda", inputs, rule, device), reference.accept_reject(**inputs, rule=rule), f"seed {seed}")


def test_cpu_many_rows_mixed_edges():
    """Many seeds through the C++ op: every edge case at once, both rules."""
    require("cpu", "accept_reject")
    for seed in range(20):
        tree = random_tree(12 + seed % 7, seed)
        inputs = corrupt(make_inputs(tree, 4, 23 + 11 * seed, 3, seed=seed), seed, invalid=seed % 2 == 0,
                         nan=seed % 3 == 0, duplicates=True, forced=seed % 4 == 1)
        for rule in ("rejection", "match"):
            want = reference.accept_reject(**inputs, rule=rule)
            assert_same(run("cpu", inputs, rule), want, f"(seed {seed}, {rule})")


def test_outputs_are_well_formed():
    inputs = corrupt(make_inputs(TREES["random24"], 3, 40, 3, seed=5), 5, invalid=True, nan=True)
    accept_len, path, bonus = ops.accept_reject(**inputs)
    parents = inputs["node_parent"]
    for b in range(3):
        assert bonus[b] < 40
        assert path[b, 0] == 0 and (path[b, accept_len[b] + 1:] == -1).all()
        for k in range(1, int(accept_len[b]) + 1):
            assert parents[path[b, k]] == path[b, k - 1]
    assert bonus[0] == -1  # the NaN root


# ---------------------------------------------------------------- the law is the target's (C++ op, fast)


def _draw_without_replacement(draft_probs, laws, count, g):
    """Candidates of one depth drawn as the pool draws: sequentially, earlier tokens removed from every law."""
    batch = draft_probs.shape[0]
    removed = torch.zeros(batch, draft_probs.shape[-1], dtype=torch.bool)
    tokens = []
    for k in range(count):
        probs = draft_probs[:, laws[k]].masked_fill(removed, 0.0)
        token = torch.multinomial(probs, 1, generator=g)[:, 0]
        removed[torch.arange(batch), token] = True
        tokens.append(token)
    return torch.stack(tokens, 1)


@pytest.mark.parametrize("rule", ["rejection", "match"])
def test_first_token_follows_target_law(rule):
    """Output token after the root ~ target_probs for ANY mix of draft laws (lossless), 5 sigma."""
    require("cpu", "accept_reject")
    g = torch.Generator().manual_seed(11)
    batch, vocab, num_rows = 200_000, 6, 2
    target_row = torch.randn(vocab, generator=g) * 1.5
    draft_rows = torch.randn(num_rows, vocab, generator=g) * 1.5
    laws = [0, 1, 0]
    tokens = _draw_without_replacement(torch.softmax(draft_rows, -1).expand(batch, -1, -1), laws, 3, g)
    parents = torch.tensor([-1, 0, 0, 0])
    inputs = dict(target_logits=target_row.expand(batch, 4, vocab).contiguous(),
                  draft_logits=draft_rows.expand(batch, -1, -1).contiguous(),
                  node_tokens=torch.cat([torch.zeros(batch, 1, dtype=torch.int64), tokens], 1), node_parent=parents,
                  node_law=torch.tensor([0] + laws).expand(batch, -1).contiguous(),
                  uniforms=torch.rand(batch, 4, 2, generator=g, dtype=torch.float64))
    accept_len, path, bonus = ops.accept_reject(**inputs, rule=rule, backend="cpu")
    first = torch.where(accept_len > 0, inputs["node_tokens"].gather(1, path[:, 1:2].clamp(min=0))[:, 0], bonus)
    freq = torch.bincount(first, minlength=vocab).double() / batch
    want = torch.softmax(target_row.double(), -1)
    sigma = (want * (1 - want) / batch).sqrt()
    assert ((freq - want).abs() < 5 * sigma).all(), (freq, want)
    assert (accept_len > 0).float().mean() > 0.3  # the drafts do get accepted


# ---------------------------------------------------------------- op registration and argument checks


def test_opcheck():
    require("cpu", "accept_reject")
    inputs = corrupt(make_inputs(TREES["layered"], 2, 33, 3, seed=1), 1, invalid=True)
    args = tuple(inputs[k] for k in ("target_logits", "draft_logits", "node_tokens", "node_parent", "node_law",
                                     "uniforms"))
    for match_rule in (False, True):
        torch.library.opcheck(torch.ops.hawk.accept_reject.default, args + (match_rule,))


@pytest.mark.parametrize("field,value,error,pattern", [
    ("node_tokens", lambda t: t.int(), TypeError, "node_tokens"),
    ("uniforms", lambda t: t[:, :, :1], ValueError, "uniforms"),
    ("draft_logits", lambda t: t[..., :-1], ValueError, "draft_logits"),
    ("node_parent", lambda t: t[:-1], ValueError, "node_parent"),
    ("target_logits", lambda t: t[0], ValueError, "target_logits"),
    ("node_law", lambda t: t[:, :-1], ValueError, "node_law"),
    ("draft_logits", lambda t: t.double(), TypeError, "draft_logits.*float32"),
])
def test_bad_inputs_name_the_argument(field, value, error, pattern):
    inputs = make_inputs(TREES["chain8"], 2, 20, 2, seed=0)
    inputs[field] = value(inputs[field])
    with pytest.raises(error, match=pattern):
        ops.accept_reject(**inputs)


def test_bad_rule_and_backend():
    inputs = make_inputs(TREES["chain8"], 1, 20, 2, seed=0)
    with pytest.raises(ValueError, match="rule"):
        ops.accept_reject(**inputs, rule="greedy")
    with pytest.raises(RuntimeError, match="cuda"):
        ops.accept_reject(**inputs, backend="cuda")


def test_compiled_op_checks_its_arguments():
    """csrc/op_args.h: the checks the CPU and CUDA kernels share, each message naming the argument."""
    require("cpu", "accept_reject")
    inputs = make_inputs(TREES["chain8"], 2, 20, 3, seed=0)
    op = lambda **changed: torch.ops.hawk.accept_reject(*{**inputs, **changed}.values(), False)
    with pytest.raises(RuntimeError, match=r"node_law: expected shape \[2, 8\], got \[2, 7\]"):
        op(node_law=inputs["node_law"][:, :-1])
    with pytest.raises(RuntimeError, match="node_tokens: expected dtype Long, got Int"):
        op(node_tokens=inputs["node_tokens"].int())
    with pytest.raises(RuntimeError, match=r"draft_logits: expected shape \[2, \*, 20\]"):
        op(draft_logits=inputs["draft_logits"][..., :-1])
    with pytest.raises(RuntimeError, match="draft_logits: expected dtype Float, got Double"):
        op(draft_logits=inputs["draft_logits"].double())
    with pytest.raises(RuntimeError, match="uniforms: expected dtype float32 or float64"):
        op(uniforms=inputs["uniforms"].half())
    with pytest.raises(RuntimeError, match="target_logits: expected at least one node"):
        op(target_logits=inputs["target_logits"][..., :0], draft_logits=inputs["draft_logits"][..., :0])


def test_cpu_op_rejects_bad_parents():
    require("cpu", "accept_reject")
    inputs = make_inputs([-1, 0, 5, 1], 1, 20, 2, seed=0)
    with pytest.raises(ValueError, match="node_parent: node 2 has parent 5"):  # the wrapper's value check
        ops.accept_reject(**inputs, backend="cpu")
    with pytest.raises(RuntimeError, match="node_parent"):  # and the kernel's own, without it
        ops.accept_reject(**inputs, backend="cpu", validate=False)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_uniforms_outside_the_unit_interval_are_refused(bad):
    inputs = make_inputs([-1, 0, 0, 1], 2, 20, 2, seed=0)
    inputs["uniforms"][1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"uniforms: expected values in \[0, 1\]"):
        ops.accept_reject(**inputs, backend="reference")


@pytest.mark.parametrize("backend", backend_params("accept_reject", include_reference=True))
def test_pos_inf_rows(backend):
    """A +inf logit makes softmax NaN: a target row like that stops the walk (bonus -1), a draft row like
    that makes its nodes invalid (the reference used to crash on both)."""
    device = require(backend, "accept_reject")
    inputs = make_inputs(TREES["layered"], 2, 40, 3, seed=4)
    inputs["target_logits"][1, 0, 3] = float("inf")
    inputs["draft_logits"][0, 1, 5] = float("inf")
    want = reference.accept_reject(**inputs)
    assert want[2][1] == -1
    assert_same(run(backend, inputs, "rejection", device), want)
