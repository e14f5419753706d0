"""tree_mask: every backend's three outputs (ancestor_mask, depth, retrieve) are bit-identical to the reference
up to N = 1024 nodes, and describe the tree: retrieve rows are root-to-node paths, mask rows their node sets."""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.ops import reference
from trees import layered
from conftest import backend_params, require


def random_tree(n, seed, max_fanout_bias=0):
    g = torch.Generator().manual_seed(seed)
    parents = [-1]
    for i in range(1, n):
        low = max(0, i - 1 - max_fanout_bias) if max_fanout_bias else 0
        parents.append(int(torch.randint(low, i, (1,), generator=g)))
    return parents


def depth_of(parents):
    depth = [0] * len(parents)
    for i in range(1, len(parents)):
        depth[i] = depth[parents[i]] + 1
    return max(depth)


TREES = {
    "root": [-1], "chain16": [-1] + list(range(15)), "wide64": [-1] + [0] * 63,
    "random37": random_tree(37, 1), "layered": layered([4, 3, 2, 2]), "deep_random200": random_tree(200, 2, 3),
    "random1024": random_tree(1024, 3), "chain1024": [-1] + list(range(1023)),
}
NAMES = ("ancestor_mask", "depth", "retrieve")


def check_paths(parents, mask, depth, retrieve):
    """The path property: retrieve[i] is the root-to-i path (-1 padded), depth[i] its length in edges, and
    ancestor_mask[i] exactly the set of nodes on it."""
    mask, depth, retrieve = mask.cpu(), depth.cpu().tolist(), retrieve.cpu().tolist()
    for node, row in enumerate(retrieve):
        path = row[: depth[node] + 1]
        assert path[0] == 0 and path[-1] == node, (node, row)
        assert all(parents[path[k + 1]] == path[k] for k in range(len(path) - 1)), (node, row)
        assert all(v == -1 for v in row[depth[node] + 1:]), (node, row)
        assert torch.nonzero(mask[node])[:, 0].tolist() == path, (node, row)


def check(backend, parents, extra_depth, device):
    node_parent = torch.tensor(parents, dtype=torch.int64)
    max_depth = depth_of(parents) + extra_depth
    want = reference.tree_mask(node_parent, max_depth)
    got = ops.tree_mask(node_parent.to(device), max_depth, backend=backend)
    assert len(got) == len(NAMES)
    for name, a, b in zip(NAMES, got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype, a.shape, b.shape)
        assert torch.equal(a.cpu(), b), f"{name} differs for {len(parents)} nodes"
    return got


@pytest.mark.parametrize("backend", backend_params("tree_mask", include_reference=True))
@pytest.mark.parametrize("tree", list(TREES))
def test_matches_reference(backend, tree):
    device = require(backend, "tree_mask")
    if backend == "triton" and device.type == "cpu" and len(TREES[tree]) > 100:
        pytest.skip("interpreter: large trees are covered on the GPU")
    got = check(backend, TREES[tree], extra_depth=0, device=device)
    check(backend, TREES[tree], extra_depth=2, device=device)
    if len(TREES[tree]) <= 200:
        check_paths(TREES[tree], *got)


@pytest.mark.parametrize("backend", backend_params("tree_mask"))
def test_random_trees(backend):
    """Many random shapes (bushy to chain-like), bit-exact with the reference."""
    device = require(backend, "tree_mask")
    count = 6 if backend == "triton" and device.type == "cpu" else 30
    for seed in range(count):
        parents = random_tree(2 + (seed * 7) % 60, seed, max_fanout_bias=seed % 4)
        check_paths(parents, *check(backend, parents, extra_depth=seed % 3, device=device))


def test_opcheck():
    require("cpu", "tree_mask")
    torch.library.opcheck(torch.ops.hawk.tree_mask.default, (torch.tensor(TREES["layered"]), 4))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 0, 3, 1]), 4)
    with pytest.raises(ValueError, match="node_parent"):
        ops.tree_mask(torch.tensor([0, 0]), 4)
    with pytest.raises(ValueError, match="max_depth"):
        ops.tree_mask(torch.tensor(TREES["chain16"]), 3)
    with pytest.raises(ValueError, match="max_depth"):
        ops.tree_mask(torch.tensor([-1, 0]), -1)
    with pytest.raises(TypeError, match="max_depth"):
        ops.tree_mask(torch.tensor([-1, 0]), 2.0)
    with pytest.raises(TypeError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 0], dtype=torch.int32), 4)
    with pytest.raises(ValueError, match="node_parent"):
        ops.tree_mask(torch.tensor([[-1, 0]]), 4)


def test_cpu_op_checks_without_wrapper_validation():
    require("cpu", "tree_mask")
    with pytest.raises(RuntimeError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 0, 3, 1]), 4, backend="cpu", validate=False)
    with pytest.raises(RuntimeError, match="max_depth"):
        ops.tree_mask(torch.tensor(TREES["chain16"]), 3, backend="cpu", validate=False)
    op = torch.ops.hawk.tree_mask
    with pytest.raises(RuntimeError, match="node_parent: expected dtype Long, got Int"):
        op(torch.tensor([-1, 0], dtype=torch.int32), 2)
    with pytest.raises(RuntimeError, match=r"node_parent: expected shape \[N\], got \[1, 2\]"):
        op(torch.tensor([[-1, 0]]), 2)
    with pytest.raises(RuntimeError, match="max_depth: expected 0 <= max_depth"):
        op(torch.tensor([-1, 0]), -1)
