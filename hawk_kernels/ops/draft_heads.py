"""ops.draft_heads: all draft heads' ResBlocks + projection + log-softmax in one op. Spec: reference/draft_heads.py."""
from __future__ import annotations

from . import _backend
from ._checks import FLOATS, check_tensor


def draft_heads(hidden, res_weight, res_bias, proj_weight, inv_temperature: float = 1.0, backend: str = "auto"):
    """hidden [T, d], res_weight [H, L, d, d], res_bias [H, L, d], proj_weight [P, V, d] with P in (1, H)
    -> draft_logq [T, H, V] float32 (float64 for float64 inputs)."""
    check_tensor("hidden", hidden, ndim=2, dtypes=FLOATS)
    tokens, width = hidden.shape
    dev = hidden.device
    check_tensor("res_weight", res_weight, ndim=4, dtypes=(hidden.dtype,), device=dev, shape=(None, None, width, width))
    heads, layers = res_weight.shape[:2]
    check_tensor("res_bias", res_bias, ndim=3, dtypes=(hidden.dtype,), device=dev, shape=(heads, layers, width))
    check_tensor("proj_weight", proj_weight, ndim=3, dtypes=(hidden.dtype,), device=dev, shape=(None, None, width))
    if proj_weight.shape[0] not in (1, heads):
        raise ValueError(f"proj_weight: expected 1 (shared) or {heads} projections, got {proj_weight.shape[0]}")
    if not inv_temperature > 0:
        raise ValueError(f"inv_temperature: expected > 0, got {inv_temperature}")
    run = _backend.bind("draft_heads", dev, backend, hidden.dtype)
    return run(hidden, res_weight, res_bias, proj_weight, float(inv_temperature))
