"""Every hawk op once, on small inputs: the program scripts/gpu_check.sh runs under compute-sanitizer (memcheck,
racecheck, synccheck, initcheck) to check the CUDA kernels. Out-of-range tokens and draft rows are on purpose.

    python scripts/sanitize_ops.py                               # the CUDA kernels (what gpu_check.sh runs)
    python scripts/sanitize_ops.py --device cpu --backend cpu    # the same calls on the C++ CPU kernels (CI smoke run)
"""
from __future__ import annotations

import argparse

import torch

from hawk_kernels import ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="cuda")
    args = ap.parse_args()
    dev, backend = torch.device(args.device), args.backend
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator().manual_seed(0)
    parents = torch.tensor([-1, 0, 0, 0, 1, 1, 2, 4, 4, 7], device=dev)
    batch, nodes, vocab, rows = 2, parents.numel(), 1000, 3
    base = torch.randn(batch, 1, vocab, generator=g) * 2.5
    target = (base + 0.6 * torch.randn(batch, nodes, vocab, generator=g)).to(dev, dtype)
    draft = (base + 0.6 * torch.randn(batch, rows, vocab, generator=g)).to(dev, dtype)
    tokens = torch.randint(-2, vocab + 2, (batch, nodes), generator=g).to(dev)
    source = torch.randint(-1, rows + 1, (batch, nodes), generator=g).to(dev)
    uniforms = torch.rand(batch, nodes, 2, generator=g).to(dev)
    for rule in ("rejection", "match"):
        print(rule, ops.accept_reject(target, draft, tokens, parents, source, uniforms, rule=rule, backend=backend))
    # a vocabulary past the shared-memory row (CUDA: the residual in the global workspace)
    wide = 70001
    wide_target = torch.randn(1, nodes, wide, generator=g).to(dev)
    wide_draft = torch.randn(1, rows, wide, generator=g).to(dev)
    print(ops.accept_reject(wide_target, wide_draft, tokens[:1].clamp(0, wide - 1), parents, source[:1], uniforms[:1],
                            backend=backend)[0])
    print(ops.tree_mask(parents, 4, backend=backend))
    hidden = torch.randn(3, 64, generator=g).to(dev, dtype)
    print(ops.draft_heads(hidden, (torch.randn(4, 2, 64, 64, generator=g) * 0.1).to(dev, dtype),
                          torch.zeros(4, 2, 64).to(dev, dtype), torch.randn(1, 500, 64, generator=g).to(dev, dtype),
                          1.0, backend=backend).shape)
    # the small-token path's edges: a width that is not a tile multiple, 32 rows
    hidden = torch.randn(32, 72, generator=g).to(dev, dtype)
    print(ops.draft_heads(hidden, (torch.randn(3, 1, 72, 72, generator=g) * 0.1).to(dev, dtype),
                          torch.zeros(3, 1, 72).to(dev, dtype), torch.randn(3, 300, 72, generator=g).to(dev, dtype),
                          1.0, backend=backend).shape)
    rng = ops.DeviceRNG(1234, dev, backend=backend)
    print(rng.uniforms((2, 64, 2), ops.philox.STREAM_ACCEPT).sum())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print("sanitize_ops: every op ran on", dev, "with backend", backend)


if __name__ == "__main__":
    main()
