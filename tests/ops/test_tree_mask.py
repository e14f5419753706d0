"""tree_mask: every backend's six outputs are bit-identical to the reference, up to N = 1024 nodes."""
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
NAMES = ("ancestor_mask", "depth", "position_ids", "first_child", "next_sibling", "retrieve")


def check(backend, parents, batch, extra_depth, seed, device):
    g = torch.Generator().manual_seed(seed)
    node_parent = torch.tensor(parents, dtype=torch.int64)
    prefix_len = torch.randint(0, 5000, (batch,), generator=g)
    max_depth = depth_of(parents) + extra_depth
    want = reference.tree_mask(node_parent, prefix_len, max_depth)
    got = ops.tree_mask(node_parent.to(device), prefix_len.to(device), max_depth, backend=backend)
    for name, a, b in zip(NAMES, got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype, a.shape, b.shape)
        assert torch.equal(a.cpu(), b), f"{name} differs for {len(parents)} nodes"


@pytest.mark.parametrize("backend", backend_params("tree_mask"))
@pytest.mark.parametrize("tree", list(TREES))
def test_matches_reference(backend, tree):
    device = require(backend, "tree_mask")
    if backend == "triton" and device.type == "cpu" and len(TREES[tree]) > 100:
        pytest.skip("interpreter: large trees are covered on the GPU")
    check(backend, TREES[tree], batch=2, extra_depth=0, seed=0, device=device)
    check(backend, TREES[tree], batch=3, extra_depth=2, seed=1, device=device)


def test_opcheck():
    require("cpu", "tree_mask")
    torch.library.opcheck(torch.ops.hawk.tree_mask.default,
                          (torch.tensor(TREES["layered"]), torch.tensor([3, 9]), 4))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 0, 3, 1]), torch.tensor([0]), 4)
    with pytest.raises(ValueError, match="node_parent"):
        ops.tree_mask(torch.tensor([0, 0]), torch.tensor([0]), 4)
    with pytest.raises(ValueError, match="max_depth"):
        ops.tree_mask(torch.tensor(TREES["chain16"]), torch.tensor([0]), 3)
    with pytest.raises(TypeError, match="prefix_len"):
        ops.tree_mask(torch.tensor([-1, 0]), torch.tensor([0.0]), 4)
    with pytest.raises(TypeError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 0], dtype=torch.int32), torch.tensor([0]), 4)


def test_cpu_op_checks_without_wrapper_validation():
    require("cpu", "tree_mask")
    with pytest.raises(RuntimeError, match="node_parent"):
        ops.tree_mask(torch.tensor([-1, 0, 3, 1]), torch.tensor([0]), 4, backend="cpu", validate=False)
    with pytest.raises(RuntimeError, match="max_depth"):
        ops.tree_mask(torch.tensor(TREES["chain16"]), torch.tensor([0]), 3, backend="cpu", validate=False)
