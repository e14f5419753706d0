import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.backbone import Backbone
from hawk_kernels.tree import TreeBuffers, TreeTemplate
from tests.tiny_models import tiny_backbone


def test_template_rules():
    tree = TreeTemplate.from_paths([(0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 0)])
    assert tree.parents == (-1, 0, 0, 1, 1, 2, 3) and tree.max_depth == 3
    with pytest.raises(ValueError, match="earlier sibling"):
        TreeTemplate.from_paths([(0,), (2,)])
    with pytest.raises(ValueError, match="parent"):
        TreeTemplate.from_paths([(0, 0)])
    budget = TreeTemplate.from_budget(24, max_depth=5, width=3)
    assert budget.num_nodes == 24 and budget.max_depth <= 5 and budget.max_rank <= 3


def test_tree_mask_reference_matches_brute_force():
    tree = TreeTemplate.from_budget(40, max_depth=6, width=4)
    parents = torch.tensor(tree.parents)
    mask, depth, pos, first_child, next_sibling, retrieve = ops.tree_mask(parents, torch.tensor([5, 9]), 6,
                                                                          backend="reference")
    for node in range(tree.num_nodes):
        chain, cur = [], node
        while cur >= 0:
            chain.append(cur)
            cur = tree.parents[cur]
        assert set(torch.nonzero(mask[node])[:, 0].tolist()) == set(chain)
        assert retrieve[node, : len(chain)].tolist() == chain[::-1] and depth[node] == len(chain) - 1
        kids = [c for c in range(tree.num_nodes) if tree.parents[c] == node]
        assert first_child[node] == (kids[0] if kids else -1)
    assert torch.equal(pos, torch.tensor([[5], [9]]) + depth[None])


def test_bad_parents():
    with pytest.raises(ValueError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 2, 0]), torch.tensor([0]), 3)
    with pytest.raises(ValueError, match="max_depth"):
        ops.tree_mask(torch.tensor([-1, 0, 1]), torch.tensor([0]), 1)


@pytest.mark.parametrize("kind", ["llama", "chameleon"])
def test_every_node_equals_causal_attention_over_its_path(kind):
    model = tiny_backbone(kind)
    tree = TreeTemplate.from_budget(20, max_depth=4, width=3)
    buffers = TreeBuffers(tree, "cpu")
    backbone = Backbone(model, torch.arange(8, 48))
    prompt = torch.randint(8, 48, (2, 5))
    valid = torch.ones_like(prompt, dtype=torch.bool)
    valid[1, :2] = False  # a left-padded row
    backbone.prefill(prompt, valid, capacity=5 + tree.num_nodes + 3)
    nodes = torch.randint(8, 48, (2, tree.num_nodes))
    hidden = backbone.forward_tree(nodes, buffers.depth, buffers.ancestor_mask)
    for row in range(2):
        for node in range(tree.num_nodes):
            path = [int(n) for n in buffers.retrieve[node] if n >= 0]
            seq = torch.cat([prompt[row][valid[row]], nodes[row, path]])[None]
            ref = model.get_decoder()(input_ids=seq).last_hidden_state[0, -1]
            assert torch.allclose(hidden[row, node], ref, atol=1e-9), (row, node)
