"""Loads hawk_kernels._C (schemas live in csrc/ops.cpp) and registers fake kernels for every hawk:: op.

The fake (meta) kernels only compute output shapes and dtypes, so torch.compile and CUDA-graph capture can
trace through the ops without running them. The Triton ops (hawk::*_triton) are declared with
torch.library.triton_op in ops/triton/ and need no fake kernel here.
"""
from __future__ import annotations

import torch

_error: str | None = None
try:
    from .. import _C  # noqa: F401
except ImportError as exc:  # the reference path stays usable without the extension
    _C = None
    _error = str(exc)


def compiled_available() -> bool:
    return _C is not None


def load_error() -> str | None:
    return _error


def has_kernel(op: str, dispatch_key: str) -> bool:
    if _C is None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"hawk::{op}", dispatch_key)
    except RuntimeError:
        return False


if _C is not None:

    @torch.library.register_fake("hawk::accept_reject")
    def _accept_reject_fake(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms, match_rule):
        batch, num_nodes = target_logits.shape[:2]
        make = lambda *shape: node_tokens.new_empty(shape, dtype=torch.int64)
        return make(batch), make(batch, num_nodes), make(batch)

    @torch.library.register_fake("hawk::tree_mask")
    def _tree_mask_fake(node_parent, max_depth):
        num_nodes = node_parent.shape[0]
        return (node_parent.new_empty((num_nodes, num_nodes), dtype=torch.bool),
                node_parent.new_empty((num_nodes,), dtype=torch.int64),
                node_parent.new_empty((num_nodes, max_depth + 1), dtype=torch.int64))

    @torch.library.register_fake("hawk::draft_heads")
    def _draft_heads_fake(hidden, res_weight, res_bias, proj_weight, inv_temperature):
        out_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        return hidden.new_empty((hidden.shape[0], res_weight.shape[0], proj_weight.shape[1]), dtype=out_dtype)

    @torch.library.register_fake("hawk::philox_uniforms")
    def _philox_uniforms_fake(seed, offset, shape, stream):
        return seed.new_empty(shape, dtype=torch.float32)
