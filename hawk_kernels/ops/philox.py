"""ops.philox_uniforms and DeviceRNG: stateless Philox4x32-10 uniforms keyed by (seed, offset, stream), with
seed and offset held in device tensors (DESIGN.md §4). Spec: reference/philox.py.

Nothing here reads seed or offset on the host, so a CUDA graph that captures `rng.uniforms(...)` and
`rng.advance()` replays with fresh numbers: the advance is an in-place add on the device tensor.
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch

from . import _backend
from ._checks import INDEX, check_tensor
from .reference import philox as _reference_module
from .reference.philox import philox_uniforms as _reference

STREAM_DRAFT, STREAM_ACCEPT, STREAM_RESIDUAL = 0, 1, 2
MAX_NUMEL = _reference_module.MAX_NUMEL


def _check_scalar_tensor(name: str, t, device=None):
    check_tensor(name, t, dtypes=INDEX, device=device)
    if t.dim() > 1 or t.numel() != 1:
        raise ValueError(f"{name}: expected an int64 tensor of shape () or (1,), got shape {tuple(t.shape)}")


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"shape: expected a sequence of non-negative ints, got {type(shape).__name__}")
    out = []
    for size in shape:
        if isinstance(size, bool) or isinstance(size, float):
            raise TypeError(f"shape: expected non-negative ints, got {shape!r}")
        try:
            size = operator.index(size)
        except TypeError:
            raise TypeError(f"shape: expected non-negative ints, got {shape!r}") from None
        if size < 0:
            raise ValueError(f"shape: expected non-negative ints, got {tuple(shape)}")
        out.append(size)
    numel = 1
    for size in out:
        numel *= size
    if numel > MAX_NUMEL:
        raise ValueError(f"shape: at most 2**34 elements per draw, got {numel} for shape {tuple(out)}")
    return tuple(out)


def _as_int(name: str, value, low: int, high: int, what: str) -> int:
    """value as a Python int in [low, high), or a TypeError / ValueError naming `name`."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected {what}, got {type(value).__name__}") from None
    if not low <= value < high:
        raise ValueError(f"{name}: expected {what}, got {value}")
    return value


def _check_stream(stream) -> int:
    return _as_int("stream", stream, 0, 2**32, "an int in [0, 2**32)")


def philox_uniforms(seed: torch.Tensor, offset: torch.Tensor, shape: Sequence[int], stream: int = STREAM_DRAFT,
                    backend: str = "auto") -> torch.Tensor:
    """float32 uniforms of `shape` on seed.device, in [0, 1 - 2**-24]; a pure function of
    (seed, offset, stream, shape). seed, offset: int64 tensors of shape () or (1,) on one device."""
    _check_scalar_tensor("seed", seed)
    _check_scalar_tensor("offset", offset, device=seed.device)
    shape = _check_shape(shape)
    stream = _check_stream(stream)
    chosen = _backend.pick("philox_uniforms", seed.device, backend)
    if chosen == "reference":
        return _reference(seed, offset, shape, stream)
    if chosen == "triton":
        from .triton.philox import philox_uniforms as triton_impl

        return triton_impl(seed, offset, shape, stream)
    return torch.ops.hawk.philox_uniforms(seed, offset, list(shape), stream)


def _as_int64_bits(name: str, value) -> int:
    """An int in [-2**63, 2**64) as the signed int64 with the same low 64 bits."""
    value = _as_int(name, value, -2**63, 2**64, "an int in [-2**63, 2**64) or an int64 tensor")
    return value - 2**64 if value >= 2**63 else value


class DeviceRNG:
    """seed and offset as int64 0-d tensors on `device`; never read on the host.

    uniforms(shape, stream) draws philox_uniforms(seed, offset, shape, stream); advance(steps) adds to the
    offset in place (graph-safe). One offset per decoding step, one stream per purpose (STREAM_*)."""

    def __init__(self, seed: int | torch.Tensor, device=None, offset: int | torch.Tensor = 0):
        if isinstance(seed, torch.Tensor):
            _check_scalar_tensor("seed", seed)
            device = torch.device(device) if device is not None else seed.device
            self.seed = seed.detach().to(device=device).reshape(()).clone()
        else:
            device = torch.device(device) if device is not None else torch.device("cpu")
            self.seed = torch.tensor(_as_int64_bits("seed", seed), dtype=torch.int64, device=device)
        if isinstance(offset, torch.Tensor):
            _check_scalar_tensor("offset", offset)
            self.offset = offset.detach().to(device=device).reshape(()).clone()
        else:
            self.offset = torch.tensor(_as_int64_bits("offset", offset), dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self.seed.device

    def uniforms(self, shape: Sequence[int], stream: int = STREAM_DRAFT, backend: str = "auto") -> torch.Tensor:
        return philox_uniforms(self.seed, self.offset, shape, stream, backend=backend)

    def advance(self, steps: int = 1) -> None:
        """offset += steps, in place on the device (a captured graph replays it)."""
        self.offset.add_(steps)

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of (seed, offset), still on the device."""
        return self.seed.clone(), self.offset.clone()

    def set_state(self, state: tuple[torch.Tensor, torch.Tensor]) -> None:
        """In-place copy of (seed, offset) from state(), so graphs holding these tensors see it."""
        seed, offset = state
        self.seed.copy_(seed.reshape(()))
        self.offset.copy_(offset.reshape(()))

    def copy_(self, other: "DeviceRNG") -> "DeviceRNG":
        self.set_state((other.seed, other.offset))
        return self

    def __repr__(self) -> str:
        return f"DeviceRNG(device={self.device})"
