"""ops.accept_reject: exact multi-draft tree verification (checks, then one backend). Spec: reference/accept_reject.py."""
from __future__ import annotations

import torch

from . import _backend
from ._checks import FLOATS, INDEX, check_tensor
from .tree_mask import validate_parents


def accept_reject(
    target_logits: torch.Tensor,  # [B, N, V] processed target logits per node
    draft_logits: torch.Tensor,  # [B, Q, V] processed draft logits, one row per draft law
    node_tokens: torch.Tensor,  # [B, N] int64
    node_parent: torch.Tensor,  # [N] int64, topological, node 0 the root
    node_law: torch.Tensor,  # [B, N] int64: the row of draft_logits (draft law) each node was drawn from
    uniforms: torch.Tensor,  # [B, N, 2] in [0, 1]
    rule: str = "rejection",
    backend: str = "auto",
    validate: bool = True,
):
    """Returns (accept_len [B] int64, path [B, N] int64 (-1 padded, path[:, 0] == 0), bonus [B] int64).

    bonus is -1 only where a visited target row had a NaN or no finite entry. validate=True also checks
    values (uniforms in [0, 1], parents topological); that reads the device, so the decoder's kernels, bound
    once (_backend.bind_kernels), skip it."""
    check_tensor("target_logits", target_logits, ndim=3, dtypes=FLOATS)
    batch, num_nodes, vocab = target_logits.shape
    dev = target_logits.device
    check_tensor("draft_logits", draft_logits, ndim=3, dtypes=(target_logits.dtype,), device=dev,
                 shape=(batch, None, vocab))
    check_tensor("node_tokens", node_tokens, dtypes=INDEX, device=dev, shape=(batch, num_nodes), ndim=2)
    check_tensor("node_parent", node_parent, dtypes=INDEX, device=dev, shape=(num_nodes,), ndim=1)
    check_tensor("node_law", node_law, dtypes=INDEX, device=dev, shape=(batch, num_nodes), ndim=2)
    check_tensor("uniforms", uniforms, dtypes=(torch.float32, torch.float64), device=dev,
                 shape=(batch, num_nodes, 2), ndim=3)
    if rule not in ("rejection", "match"):
        raise ValueError(f"rule: expected 'rejection' or 'match', got {rule!r}")
    if num_nodes == 0 or vocab == 0:
        raise ValueError(f"target_logits: expected at least one node and one vocabulary entry, got {tuple(target_logits.shape)}")
    if validate:
        _check_values(node_parent, uniforms)
    run = _backend.bind("accept_reject", dev, backend, target_logits.dtype)
    return run(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms, rule)


def _check_values(node_parent: torch.Tensor, uniforms: torch.Tensor) -> None:
    validate_parents(node_parent)
    outside = (uniforms < 0) | (uniforms > 1) | torch.isnan(uniforms)
    if bool(outside.any()):
        raise ValueError(f"uniforms: expected values in [0, 1], got {float(uniforms[outside][0])}")
