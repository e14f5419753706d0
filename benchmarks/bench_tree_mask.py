"""tree_mask for trees of 16/32/64/128 nodes on CUDA, and a 1024-node tree; CPU at small sizes. Compared with
the Python reference (which is what a host-side tree builder costs). Outputs: ancestor_mask, depth, retrieve."""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops

from bench_accept_reject import medusa_tree


def depth_of(parents):
    depth = [0] * len(parents)
    for i in range(1, len(parents)):
        depth[i] = depth[parents[i]] + 1
    return max(depth)


def params():
    out = []
    for n in (16, 32, 64, 128, 1024):
        for backend in ("cuda", "triton", "reference"):
            out.append(pytest.param("cuda", backend, n, marks=pytest.mark.cuda, id=f"cuda-{backend}-N{n}"))
    for n in (16, 128):
        for backend in ("cpu", "reference"):
            out.append(pytest.param("cpu", backend, n, id=f"cpu-{backend}-N{n}"))
    return out


@pytest.mark.parametrize("device_type,backend,num_nodes", params())
def test_tree_mask(timed, bench_device, device_type, backend, num_nodes):
    device = bench_device(device_type, backend, "tree_mask")
    parents = medusa_tree(num_nodes)
    node_parent = torch.tensor(parents, device=device)
    max_depth = depth_of(parents)
    out_bytes = num_nodes * num_nodes + 8 * num_nodes * (3 + max_depth)  # parents in; mask, depth, retrieve out
    timed(lambda: ops.tree_mask(node_parent, max_depth, backend=backend, validate=False), device=device,
          bytes_moved=out_bytes, backend=backend, nodes=num_nodes, max_depth=max_depth)
