"""Tensor checks shared by the op wrappers: every message names the argument and what was expected (scalar
checks: hawk_kernels/checks.py)."""
from __future__ import annotations

import torch


def check_tensor(name: str, t, *, ndim: int | None = None, dtypes=None, device=None, shape=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        want = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: expected dtype in ({want}), got {str(t.dtype).replace('torch.', '')}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: expected device {device}, got {t.device}")
    if shape is not None:
        for i, (want, got) in enumerate(zip(shape, t.shape)):
            if want is not None and want != got:
                raise ValueError(f"{name}: expected shape {tuple('*' if w is None else w for w in shape)}, "
                                 f"got {tuple(t.shape)} (dimension {i})")


FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX = (torch.int64,)
