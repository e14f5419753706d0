"""Reference (the spec) of the fused draft-head projection.

For every head h and token t:  z = hidden[t]; for each layer l: z = z + SiLU(z @ res_weight[h,l].T + res_bias[h,l])
logits = z @ proj_weight[h or 0].T   (proj_weight has 1 row block when the backbone's lm_head is shared)
draft_logq[t, h] = log_softmax(logits * inv_temperature)   (float32 out; exact residuals need whole rows)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def draft_heads(hidden, res_weight, res_bias, proj_weight, inv_temperature: float = 1.0,
                compute_dtype: torch.dtype | None = None):
    """hidden [T, d], res_weight [H, L, d, d], res_bias [H, L, d], proj_weight [P, V, d] (P = 1 or H)
    -> draft_logq [T, H, V] (float32, or float64 when computed in float64)."""
    dtype = compute_dtype or hidden.dtype
    num_heads, num_layers = res_weight.shape[:2]
    out = []
    for head in range(num_heads):
        z = hidden.to(dtype)
        for layer in range(num_layers):
            z = z + F.silu(z @ res_weight[head, layer].to(dtype).T + res_bias[head, layer].to(dtype))
        proj = proj_weight[head if proj_weight.shape[0] > 1 else 0].to(dtype)
        logits = (z @ proj.T).to(torch.float64 if dtype == torch.float64 else torch.float32)
        out.append(torch.log_softmax(logits * inv_temperature, dim=-1))
    return torch.stack(out, dim=1)
