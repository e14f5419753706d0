import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.backbones import CausalLMBackbone
from hawk_kernels.tree import TreeBuffers, TreeTemplate
import hawk_kernels as hk
from tests.tiny_models import path_to, tiny_backbone, tiny_grid, tiny_heads


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
    mask, depth, retrieve = ops.tree_mask(parents, 6, backend="reference")
    for node in range(tree.num_nodes):
        chain, cur = [], node
        while cur >= 0:
            chain.append(cur)
            cur = tree.parents[cur]
        assert set(torch.nonzero(mask[node])[:, 0].tolist()) == set(chain)
        assert retrieve[node, : len(chain)].tolist() == chain[::-1] and depth[node] == len(chain) - 1


def test_bad_parents():
    with pytest.raises(ValueError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 2, 0]), 3)
    with pytest.raises(ValueError, match="max_depth"):
        ops.tree_mask(torch.tensor([-1, 0, 1]), 1)


@pytest.mark.parametrize("kind", ["llama", "chameleon"])
def test_every_node_equals_causal_attention_over_its_path(kind):
    model = tiny_backbone(kind)
    tree = TreeTemplate.from_budget(20, max_depth=4, width=3)
    buffers = TreeBuffers(tree, "cpu")
    backbone = CausalLMBackbone(model, tiny_grid(row_end=False))  # local id = global id - 8
    prompt = torch.randint(8, 48, (2, 5))
    valid = torch.ones_like(prompt, dtype=torch.bool)
    valid[1, :2] = False  # a left-padded row
    cache = backbone.new_cache(2, capacity=5 + tree.num_nodes + 3)
    backbone.prefill(cache, prompt, valid)
    nodes = torch.randint(8, 48, (2, tree.num_nodes))
    hidden = backbone.forward_tree(cache, backbone.embed_image_tokens(nodes - 8), buffers.depth, buffers.ancestor_mask)
    for row in range(2):
        for node in range(tree.num_nodes):
            path = path_to(tree, node)
            seq = torch.cat([prompt[row][valid[row]], nodes[row, path]])[None]
            ref = model.get_decoder()(input_ids=seq).last_hidden_state[0, -1]
            assert torch.allclose(hidden[row, node], ref, atol=1e-9), (row, node)


def test_from_budget_follows_measured_rates():
    # a measured table where rank 1 is useless at depth 1 and rank 0 at depth 3 never wins
    rates = [[0.8, 0.0], [0.7, 0.2], [0.0, 0.5]]
    tree = TreeTemplate.from_budget(6, max_depth=3, width=2, accept_rate=rates)
    paths = {(d, r) for d, r in zip(tree.depth[1:], tree.rank[1:])}
    assert (1, 1) not in paths  # a zero-rate sibling is never chosen (and no division by zero)
    assert tree.max_depth == 3 and (3, 1) in paths  # rank 1 at depth 3 comes after its zero-rate sibling
    assert TreeTemplate.from_budget(6, 3, 2) != tree
    with pytest.raises(ValueError, match="accept_rate"):
        TreeTemplate.from_budget(6, 3, 2, accept_rate=[])


def test_rank_statistics_are_consistent():
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    out = hk.HawkDecoder(model, heads, grid, mode="hawk", num_nodes=12).generate(torch.tensor([[1, 5, 6, 4]]), seed=2)
    tried, accepted = torch.tensor(out.rank_tried), torch.tensor(out.rank_accepted)
    assert bool((accepted <= tried).all()) and int(tried[0].sum()) == 0
    # every accepted tree node is counted once; the source counts drop only bonus-truncated ones
    assert int(accepted.sum()) >= sum(out.accepted_by_source.values()) > 0
    assert set(out.rank_tried[1]) - {0} == {out.num_forward_passes}  # the root is on every path
