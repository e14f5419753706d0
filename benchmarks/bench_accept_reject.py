"""accept_reject on CUDA at the Lumina-mGPT-7B shapes (local vocab 8194 = 8192 codes + row-end, CFG batch 2,
trees of 16/32/64/128 nodes, 8 draft rows = 5 horizontal + 3 vertical heads) and at larger ones (vocab 32769,
32 rows: where the memory floor, not latency, should bound the per-node-parallel kernels), small shapes on CPU.
Logits are float32: what the engine passes (ops/_backend.bind_kernels binds accept_reject for float32 logits
unless the model is float64; engine/step.py casts the draft table to the target logits' dtype). Backends: cuda / triton / cpu kernels against the reference
(the reference only where it finishes quickly). `bandwidth_fraction` = (all target + draft logits read once) /
median time / measured copy bandwidth: 1.0 is the memory floor (issue 20's target: within 1.4x, i.e. >= 0.71).
"""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import ops

VOCAB, BATCH, DRAFT_ROWS = 8194, 2, 8
LARGE_VOCAB, LARGE_BATCH = 32769, 32


def medusa_tree(num_nodes):
    """A wide-then-narrow tree (Medusa-style): 4 children at depth 1, then 2, then 1, truncated to num_nodes."""
    parents, frontier = [-1], [0]
    for width in (4, 2, 2, 2, 1, 1, 1, 1, 1, 1):
        nxt = []
        for node in frontier:
            for _ in range(width):
                if len(parents) < num_nodes:
                    parents.append(node)
                    nxt.append(len(parents) - 1)
        frontier = nxt
    while len(parents) < num_nodes:  # pad with leaves of the root
        parents.append(0)
    return parents


def make(num_nodes, vocab, batch, device, dtype):
    """Correlated target / draft logits and tokens drawn from their draft rows, generated on `device`."""
    g = torch.Generator(device=device).manual_seed(0)
    base = torch.randn(batch, 1, vocab, generator=g, device=device) * 2.5
    target = base + 0.6 * torch.randn(batch, num_nodes, vocab, generator=g, device=device)
    draft = base + 0.6 * torch.randn(batch, DRAFT_ROWS, vocab, generator=g, device=device)
    law = torch.randint(0, DRAFT_ROWS, (batch, num_nodes), generator=g, device=device)
    rows = torch.softmax(draft, -1)[torch.arange(batch, device=device)[:, None], law]
    tokens = torch.multinomial(rows.reshape(-1, vocab), 1, generator=g).view(batch, num_nodes)
    return dict(target_logits=target.to(dtype), draft_logits=draft.to(dtype), node_tokens=tokens,
                node_parent=torch.tensor(medusa_tree(num_nodes), device=device), node_law=law,
                uniforms=torch.rand(batch, num_nodes, 2, generator=g, device=device))


def params():
    out = []
    for n in (16, 32, 64, 128):
        for backend in ("cuda", "triton", "reference"):
            out.append(pytest.param("cuda", backend, n, VOCAB, BATCH, marks=pytest.mark.cuda,
                                    id=f"cuda-{backend}-N{n}"))
    for n in (16, 64, 128):
        for backend in ("cuda", "triton"):
            out.append(pytest.param("cuda", backend, n, LARGE_VOCAB, LARGE_BATCH, marks=pytest.mark.cuda,
                                    id=f"cuda-{backend}-N{n}-V{LARGE_VOCAB}-B{LARGE_BATCH}"))
    for n in (16, 64):
        for backend in ("cpu", "reference"):
            out.append(pytest.param("cpu", backend, n, 1024, BATCH, id=f"cpu-{backend}-N{n}-V1024"))
    return out


@pytest.mark.parametrize("device_type,backend,num_nodes,vocab,batch", params())
def test_accept_reject(timed, bench_device, device_type, backend, num_nodes, vocab, batch):
    device = bench_device(device_type, backend, "accept_reject")
    if backend == "reference" and device_type == "cuda" and num_nodes > 32:
        pytest.skip("the Python reference is only timed on small trees")
    inputs = make(num_nodes, vocab, batch, device, torch.float32)
    elem = inputs["target_logits"].element_size()
    accept_len = ops.accept_reject(**inputs, backend=backend)[0]
    # validate=False, as the engine binds it: the value checks read the device (a host sync inside the timing)
    timed(lambda: ops.accept_reject(**inputs, backend=backend, validate=False), device=device,
          bytes_moved=batch * (num_nodes + DRAFT_ROWS) * vocab * elem, repeats=10 if backend == "reference" else 50,
          backend=backend, nodes=num_nodes, vocab=vocab, batch=batch, dtype="float32",
          mean_accept_len=accept_len.float().mean().item(),
          bytes_note="all target + draft logits read once: the memory floor (every node's decision reads its "
                     "target row; the per-node kernels read it once from HBM, the draft rows from L2)")


def walk_params():
    out = [pytest.param("cuda", n, VOCAB, BATCH, marks=pytest.mark.cuda, id=f"cuda-N{n}") for n in (16, 32, 64, 128)]
    out += [pytest.param("cuda", n, LARGE_VOCAB, LARGE_BATCH, marks=pytest.mark.cuda,
                         id=f"cuda-N{n}-V{LARGE_VOCAB}-B{LARGE_BATCH}") for n in (16, 64, 128)]
    return out + [pytest.param("cpu", n, 1024, BATCH, id=f"cpu-N{n}-V1024") for n in (16, 64)]


@pytest.mark.parametrize("device_type,num_nodes,vocab,batch", walk_params())
def test_coupled_verify_walk(timed, bench_device, device_type, num_nodes, vocab, batch):
    """The default (coupled) rule's verify as the step runs it (engine/step.py `verify`): each node's own sample
    (the Gumbel-argmax of its logits + the noise row of its depth) and the token walk (verify.match_walk), eager
    torch ops, no verifier kernel. Beside accept_reject's rows above: what the coupled rule spends instead."""
    from hawk_kernels.engine.step import own_tokens
    from hawk_kernels.tree import TreeBuffers, TreeTemplate
    from hawk_kernels.verify import match_walk

    device = bench_device(device_type, "torch", None)  # no hawk kernel: torch ops
    inputs = make(num_nodes, vocab, batch, device, torch.float32)
    tree = TreeBuffers(TreeTemplate.from_paths(_paths(medusa_tree(num_nodes))), device)
    g = torch.Generator(device=device).manual_seed(1)
    noise = -torch.log(-torch.log(torch.rand(batch, tree.template.max_depth + 1, vocab, generator=g, device=device)
                                  .clamp(min=1e-20)))
    target, tokens = inputs["target_logits"], inputs["node_tokens"]
    accept_len = match_walk(*own_tokens(target, noise[:, tree.depth]), tokens, tree).accept_len
    timed(lambda: match_walk(*own_tokens(target, noise[:, tree.depth]), tokens, tree), device=device,
          bytes_moved=batch * (num_nodes + noise.shape[1]) * vocab * target.element_size(), repeats=50,
          backend="torch", nodes=num_nodes, vocab=vocab, batch=batch, dtype="float32",
          mean_accept_len=accept_len.float().mean().item(),
          bytes_note="the target logits and the depth noise read once: the memory floor")


def _paths(parents):
    """medusa_tree's parent list -> the rank paths TreeTemplate.from_paths takes (children ranked in node order)."""
    paths, children = [()], {}
    for node, parent in enumerate(parents[1:], 1):
        rank = children.setdefault(parent, 0)
        children[parent] = rank + 1
        paths.append(paths[parent] + (rank,))
    return paths[1:]
