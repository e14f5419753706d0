"""A run-time guard for code that must stay graph-capturable: inside `forbid_host_touch()` every operation is
checked as it runs (a TorchDispatchMode sees each aten op the code dispatches, whatever line or library it
comes from, the backbone's forward included), and touching the host raises `HostTouch`:

  * a read of a tensor's value on the host: `.item()`, `bool(t)`, `int(t)`, `float(t)` (aten._local_scalar_dense),
    `.tolist()` / `.numpy()` (patched: on the CPU they read memory without dispatching an op), `torch.equal`,
    and every op whose output shape depends on values (nonzero, masked_select, unique, boolean-mask indexing);
  * host data copied or index-put into the step's tensors: any tensor that enters through `aten.lift_fresh`
    (torch.tensor / as_tensor / from_numpy / new_tensor, indexing with a list, and a Python number written
    through indexing, which PyTorch turns into a 0-dim host tensor: `t[i] = 0.5`, the bug of drafts/jacobi.py)
    used by any op. On CUDA each of these is a synchronizing host-to-device copy, and under graph capture an
    error ("Cannot copy between CPU and CUDA tensors during CUDA graph capture").
  * an explicit copy across devices (`.to(other)`, `copy_` between devices).

Allowed: a Python scalar as an op argument (`fill_(x)`, `masked_fill(m, x)`, `torch.where(c, t, x)`, `t + x`),
and a slice filled with a Python number (`t[a:b] = x` is `fill_` with a 0-dim value, which CUDA reads as a
kernel argument). What a CPU run cannot see: a tensor left on the host before the step and moved to the
device inside it (`.to("cuda")` is no op on the CPU); the cuda-marked tests run the step under torch's sync
debug mode for that.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten


class HostTouch(AssertionError):
    pass


# ops that return a host value, or whose output shape depends on tensor values (a sync on CUDA)
_HOST_READS = {
    aten._local_scalar_dense.default, aten.equal.default, aten.is_nonzero.default,
    aten.nonzero.default, aten.nonzero_static.default, aten.masked_select.default, aten.bincount.default,
    aten._unique.default, aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor, aten.argwhere.default,
}
# ops whose 0-dim host tensor argument is read as a kernel argument, not copied (t[a:b] = x)
_SCALAR_VALUE_OPS = {aten.fill_.Tensor, aten.fill.Tensor}
_INDEX_OPS = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


class _HostTouchMode(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.host_made: dict[int, torch.Tensor] = {}  # id -> the tensor (kept alive so ids are not reused)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.name()
        if func in _HOST_READS:
            raise HostTouch(f"a host read inside the step: {name} (item/bool/int/float/equal or a value-dependent "
                            "shape)")
        flat, _ = tree_flatten((args, kwargs))
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        if func in _INDEX_OPS and any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
            raise HostTouch(f"a host read inside the step: {name} with a boolean mask (a value-dependent shape)")
        for i, t in enumerate(tensors):
            if id(t) in self.host_made and not (func in _SCALAR_VALUE_OPS and i == 1 and t.dim() == 0):
                raise HostTouch(f"host data copied into the step: {name} reads a tensor made on the host "
                                f"(shape {tuple(t.shape)}: torch.tensor/as_tensor/from_numpy, list indexing, or a "
                                "Python number written through indexing)")
        _check_devices(func, name, args, kwargs, tensors)
        out = func(*args, **kwargs)
        if func is aten.lift_fresh.default or func is aten.lift_fresh_copy.default:
            self.host_made[id(out)] = out
        return out


def _check_devices(func, name, args, kwargs, tensors) -> None:
    if func is aten._to_copy.default and kwargs.get("device") is not None:
        if torch.device(kwargs["device"]) != args[0].device:
            raise HostTouch(f"a copy across devices inside the step: {name} {args[0].device} -> {kwargs['device']}")
    if func is aten.copy_.default and args[0].device != args[1].device:
        raise HostTouch(f"a copy across devices inside the step: copy_ from {args[1].device} into {args[0].device}")


@contextlib.contextmanager
def forbid_host_touch():
    """Raise HostTouch at the first operation inside the block that reads a value on the host or brings host
    data in (module docstring)."""
    patched = {}

    def forbid(name):
        patched[name] = getattr(torch.Tensor, name)

        def guarded(self, *args, **kwargs):
            raise HostTouch(f"a host read inside the step: Tensor.{name}")

        setattr(torch.Tensor, name, guarded)

    for name in ("tolist", "numpy", "__array__"):
        forbid(name)
    try:
        with _HostTouchMode():
            yield
    finally:
        for name, original in patched.items():
            setattr(torch.Tensor, name, original)
