"""The coupled rule's token walk (verify.match_walk) against the verifier kernels it replaces in the step: on
one-hot targets at the same tokens, ops.accept_reject(rule="match") must give the same verdict, bit for bit, on
fresh random trees, with children that often carry their parent's token, duplicate siblings, and target laws
that are undefined (NaN, +inf, no finite entry)."""
import random

import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.engine.step import own_tokens
from hawk_kernels.target import SamplingConfig, filter_logits
from hawk_kernels.tree import TreeBuffers, TreeTemplate
from hawk_kernels.verify import match_walk


def one_hot_targets(target_logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the step fed the kernel before match_walk: one-hot laws (0 at the Gumbel-argmax, -inf elsewhere), the
    raw row kept where it defines no law."""
    token = (target_logits + noise.to(target_logits.dtype)).argmax(-1, keepdim=True)
    one_hot = torch.full_like(target_logits, float("-inf")).scatter_(-1, token, 0.0)
    undefined = torch.isnan(target_logits).any(-1, keepdim=True) | torch.isposinf(target_logits).any(-1, keepdim=True)
    undefined |= ~torch.isfinite(target_logits).any(-1, keepdim=True)
    return torch.where(undefined, target_logits, one_hot)


def random_case(gen: torch.Generator, rnd: random.Random, dtype: torch.dtype):
    batch, vocab = rnd.randint(1, 5), rnd.choice([2, 3, 7, 50])
    tree = TreeTemplate.from_budget(rnd.choice([1, rnd.randint(2, 40)]), rnd.randint(1, 8), rnd.randint(1, 4),
                                    accept_rate=lambda depth, rank: rnd.uniform(0.05, 0.95))
    nodes = tree.num_nodes
    logits = torch.randn(batch, nodes, vocab, generator=gen, dtype=torch.float64).to(dtype)
    logits[torch.rand(batch, nodes, vocab, generator=gen) < 0.2] = float("-inf")
    kinds = torch.rand(batch, nodes, generator=gen)
    logits[kinds < 0.05] = float("nan")  # whole rows, and single entries below
    logits[(kinds > 0.05) & (kinds < 0.08)] = float("-inf")  # no finite entry
    b, n = torch.nonzero((kinds > 0.08) & (kinds < 0.11), as_tuple=True)
    logits[b, n, 0] = float("inf")
    b, n = torch.nonzero((kinds > 0.11) & (kinds < 0.13), as_tuple=True)
    logits[b, n, -1] = float("nan")
    uniform = torch.rand(batch, nodes, vocab, generator=gen).clamp(min=1e-20)
    noise = -torch.log(-torch.log(uniform))
    token, _ = own_tokens(logits, noise)
    parents = torch.tensor(tree.parents)
    node_tokens = torch.randint(-1, vocab, (batch, nodes), generator=gen)
    carries = torch.rand(batch, nodes, generator=gen) < 0.7  # a child carrying its parent's target token
    node_tokens = torch.where(carries, token[:, parents.clamp(min=0)], node_tokens)
    node_tokens[:, 0] = 0
    return tree, logits, noise, node_tokens


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_match_walk_equals_the_kernel_on_one_hot_targets(dtype, backend):
    gen, rnd = torch.Generator().manual_seed(11), random.Random(11)
    accepted = 0
    for _ in range(60):
        tree, logits, noise, node_tokens = random_case(gen, rnd, dtype)
        buffers = TreeBuffers(tree, "cpu")
        batch, nodes, _ = logits.shape
        laws = torch.zeros(batch, nodes, dtype=torch.int64)
        draft = torch.zeros(batch, 1, logits.shape[-1], dtype=dtype)
        uniforms = torch.rand(batch, nodes, 2, generator=gen, dtype=torch.float64).to(dtype)
        want = ops.accept_reject(one_hot_targets(logits, noise), draft, node_tokens, buffers.parents, laws,
                                 uniforms, "match", backend=backend)
        got = match_walk(*own_tokens(logits, noise), node_tokens, buffers)
        for name, expected, actual in zip(("accept_len", "path", "bonus"), want,
                                          (got.accept_len, got.path, got.bonus)):
            assert torch.equal(actual, expected), (name, tree, node_tokens, actual, expected)
        accepted += int(got.accept_len.sum())
    assert accepted > 50  # the cases exercise long accepted paths, not only rejections


def test_match_walk_follows_the_first_of_duplicate_siblings():
    tree = TreeTemplate.from_paths([(0,), (1,), (0, 0), (1, 0)])  # nodes: root, (0,), (1,), (0,0), (1,0)
    buffers = TreeBuffers(tree, "cpu")
    target = torch.tensor([[3, 5, 5, 1, 6]])  # the target's token after each node
    defined = torch.ones(1, 5, dtype=torch.bool)
    node_tokens = torch.tensor([[0, 3, 3, 5, 5]])  # both depth-1 siblings carry 3; only the first is followed
    verdict = match_walk(target, defined, node_tokens, buffers)
    assert verdict.accept_len.tolist() == [2] and verdict.path[0, :3].tolist() == [0, 1, 3]
    assert verdict.bonus.tolist() == [1]
    defined[0, 1] = False  # node 1's law is undefined: the walk stops there, bonus -1
    verdict = match_walk(target, defined, node_tokens, buffers)
    assert verdict.accept_len.tolist() == [1] and verdict.path[0].tolist() == [0, 1, -1, -1, -1]
    assert verdict.bonus.tolist() == [-1]


def test_a_root_only_tree_commits_the_roots_own_sample():
    target, defined = torch.tensor([[4], [2]]), torch.tensor([[True], [False]])
    verdict = match_walk(target, defined, torch.zeros(2, 1, dtype=torch.int64), None)
    assert verdict.accept_len.tolist() == [0, 0] and verdict.path.tolist() == [[0], [0]]
    assert verdict.bonus.tolist() == [4, -1]  # (root-only trees are among the random cases above, too)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_greedy_match_walk_equals_the_kernel_on_the_greedy_law(backend):
    """Greedy decoding walks its argmax tokens (own_tokens without noise); the kernel got the processed greedy law,
    one-hot at the argmax (NaN where the raw row defines no law)."""
    gen, rnd = torch.Generator().manual_seed(12), random.Random(12)
    greedy = SamplingConfig(temperature=0.0)
    for _ in range(30):
        tree, logits, _, _ = random_case(gen, rnd, torch.float32)
        buffers = TreeBuffers(tree, "cpu")
        law = filter_logits(logits, greedy)
        token, defined = own_tokens(law, None)
        parents = buffers.parents.clamp(min=0)
        node_tokens = torch.where(torch.rand(token.shape, generator=gen) < 0.8, token[:, parents], -1)
        batch, nodes, vocab = logits.shape
        want = ops.accept_reject(law, torch.zeros(batch, 1, vocab), node_tokens, buffers.parents,
                                 torch.zeros(batch, nodes, dtype=torch.int64), torch.rand(batch, nodes, 2,
                                                                                          generator=gen),
                                 "match", backend=backend)
        got = match_walk(token, defined, node_tokens, buffers)
        assert all(torch.equal(a, b) for a, b in zip((got.accept_len, got.path, got.bonus), want))
