"""ops.philox_uniforms and DeviceRNG: stateless Philox4x32-10 uniforms keyed by (seed, offset, stream), with
seed and offset held in device tensors (docs/method.md §4). Spec: reference/philox.py. The seed and the offset
are each one value for the whole draw (shape () or (1,)) or one value per row (shape (R,), R == shape[0]): row r
of a per-row draw is then the draw of (seed_r, offset_r) alone over shape[1:], whatever the other rows and R are.

Nothing here reads seed or offset on the host, so a CUDA graph that captures `rng.uniforms(...)` and
`rng.advance()` replays with fresh numbers: the advance is an in-place add on the device tensor.
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch

from . import _backend
from ..checks import as_int
from ._checks import INDEX, check_tensor
from .reference.philox import MAX_NUMEL, per_row

# One stream per purpose, so no two purposes ever share a number (docs/method.md §4):
STREAM_ACCEPT = 1  # the accept test of each node (uniforms[..., 0] of accept_reject)
STREAM_RESIDUAL = 2  # the bonus / residual sample at each node (uniforms[..., 1])
STREAM_FIRST_DRAFT = 16  # draft law i draws its candidates from stream STREAM_FIRST_DRAFT + i


def _check_rows(name: str, t, shape: tuple[int, ...], one: str) -> None:
    """t (seed or offset): shape () or (1,) (`one` for the draw) or (R,) with R == shape[0] (`one` per row)."""
    rows = f"(R,) with R == shape[0] = {shape[0]}" if shape else "(R,) with R == shape[0]"
    if t.dim() > 1 or (per_row(t) and shape and t.shape[0] != shape[0]):
        raise ValueError(f"{name}: expected an int64 tensor of shape () or (1,) ({one}) or {rows} ({one} per "
                         f"row), got shape {tuple(t.shape)}")
    if per_row(t) and not shape:
        raise ValueError(f"{name}: a per-row {name} of shape {tuple(t.shape)} needs a shape with at least one "
                         f"dimension (R == shape[0]), got shape ()")


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


def _check_stream(stream) -> int:
    return as_int("stream", stream, 0, 2**32 - 1)


def philox_uniforms(seed: torch.Tensor, offset: torch.Tensor, shape: Sequence[int], stream: int = 0,
                    backend: str = "auto") -> torch.Tensor:
    """float32 uniforms of `shape` on seed.device, in [0, 1 - 2**-24]; a pure function of
    (seed, offset, stream, shape). seed, offset: int64 tensors on one device, each of shape () or (1,) (one for
    the draw) or (R,) with R == shape[0] (one per row: row r is the draw of (seed_r, offset_r) alone)."""
    check_tensor("seed", seed, dtypes=INDEX)
    shape = _check_shape(shape)
    _check_rows("seed", seed, shape, "one key")
    check_tensor("offset", offset, dtypes=INDEX, device=seed.device)
    _check_rows("offset", offset, shape, "one offset")
    stream = _check_stream(stream)
    return _backend.bind("philox_uniforms", seed.device, backend)(seed, offset, shape, stream)


def _as_int64_bits(name: str, value) -> int:
    """An int in [-2**63, 2**64) as the signed int64 with the same low 64 bits."""
    value = as_int(name, value, -2**63, 2**64 - 1)
    return value - 2**64 if value >= 2**63 else value


def _held(name: str, value, device, what: str) -> torch.Tensor:
    """A DeviceRNG seed or offset as a contiguous copy on `device`: an int (its int64 bits) or an int64 tensor of
    shape () or (1,) as a 0-d tensor (one `what` for the draw); a sequence of ints or an int64 (R,) tensor as an
    (R,) tensor (one `what` per row)."""
    if isinstance(value, torch.Tensor):
        check_tensor(name, value, dtypes=INDEX)
        if value.dim() > 1 or value.numel() == 0:
            raise ValueError(f"{name}: expected an int64 tensor of shape () or (1,) (one {what}) or (R,) with R >= 1 "
                             f"(one {what} per row), got shape {tuple(value.shape)}")
        value = value.detach().to(device=device)
        return (value if per_row(value) else value.reshape(())).clone(memory_format=torch.contiguous_format)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        bits = [_as_int64_bits(f"{name}[{i}]", v) for i, v in enumerate(value)]
        return torch.tensor(bits, dtype=torch.int64, device=device)
    return torch.tensor(_as_int64_bits(name, value), dtype=torch.int64, device=device)


def _held_seed(seed, device) -> torch.Tensor:
    """DeviceRNG's seed: a 0-d tensor (one key) or an (R,) tensor (one key per row, R >= 1)."""
    if isinstance(seed, Sequence) and not isinstance(seed, (str, bytes)) and len(seed) == 0:
        raise ValueError("seed: expected at least one per-row seed, got an empty sequence")
    return _held("seed", seed, device, "key")


def _held_offset(offset, device, rows: int | None) -> torch.Tensor:
    """DeviceRNG's offset: a 0-d tensor (one offset) or, with `rows` per-row seeds, an (R,) tensor (one offset
    per row, R == rows)."""
    held = _held("offset", offset, device, "offset")
    if held.dim() == 1 and held.shape[0] != rows:
        seeds = "one key" if rows is None else f"{rows} per-row seeds"
        raise ValueError(f"offset: one offset per row needs as many per-row seeds; got {held.shape[0]} offsets "
                         f"for {seeds}")
    return held


class DeviceRNG:
    """seed and offset as int64 tensors on `device`; never read on the host.

    seed: one key (an int in [-2**63, 2**64), or an int64 tensor of shape () or (1,)), held as a 0-d tensor; or
    one key per row (a sequence of such ints, or an int64 tensor of shape (R,)), held as an (R,) tensor, so row
    r of every draw depends on seed[r] alone (ints are stored as their int64 bits, see _as_int64_bits).
    offset: one offset (an int, or an int64 tensor of shape () or (1,)), held as a 0-d tensor; or, with R
    per-row seeds, one offset per row (a sequence of R ints, or an int64 tensor of shape (R,)), held as an (R,)
    tensor, so rows can be at different decoding steps.
    uniforms(shape, stream) draws philox_uniforms(seed, offset, shape, stream) with the kernel bound once here
    (`backend`, "auto" by default; `.backend` says which ran); with R > 1 per-row seeds shape[0] must be R.
    advance(steps) adds to the offset (every row's) in place (graph-safe). One offset per decoding step, one
    stream per purpose (STREAM_*).

    Both tensors are held, never replaced, so a caller may write their rows in place and a captured CUDA graph
    sees the writes at its next replay: `rng.offset[rows] = 0` restarts those rows' step count (per-row offsets
    only) and `rng.seed[rows] = keys` gives them new keys (per-row seeds), e.g. for a row refilled with a new
    image mid-batch, which then draws exactly what that image draws decoded alone."""

    def __init__(self, seed: int | Sequence[int] | torch.Tensor, device=None,
                 offset: int | Sequence[int] | torch.Tensor = 0, backend: str = "auto"):
        if device is None:
            device = seed.device if isinstance(seed, torch.Tensor) else "cpu"
        device = torch.device(device)
        self.seed = _held_seed(seed, device)
        self.offset = _held_offset(offset, device, self.rows)
        self._philox = _backend.bind("philox_uniforms", device, backend)

    @property
    def rows(self) -> int | None:
        """R for per-row seeds (an (R,) seed tensor; a per-row offset has R rows too), None for one key (a 0-d
        seed tensor, and then a 0-d offset)."""
        return self.seed.shape[0] if self.seed.dim() == 1 else None

    @property
    def device(self) -> torch.device:
        return self.seed.device

    @property
    def backend(self) -> str:
        return self._philox.backend

    def uniforms(self, shape: Sequence[int], stream: int = 0) -> torch.Tensor:
        """philox_uniforms(seed, offset, shape, stream) through the bound kernel (host-side checks only)."""
        shape = _check_shape(shape)
        if per_row(self.seed) and (not shape or shape[0] != self.seed.shape[0]):
            raise ValueError(f"shape: this DeviceRNG holds {self.seed.shape[0]} per-row seeds, so shape[0] must be "
                             f"{self.seed.shape[0]}, got shape {shape}")
        return self._philox(self.seed, self.offset, shape, _check_stream(stream))

    def advance(self, steps: int = 1) -> None:
        """offset += steps (every row's, for per-row offsets), in place on the device (a captured graph replays
        it)."""
        self.offset.add_(steps)

    def __repr__(self) -> str:
        rows = "" if self.rows is None else f", rows={self.rows}"
        return f"DeviceRNG(device={self.device}{rows}, backend={self.backend!r})"
