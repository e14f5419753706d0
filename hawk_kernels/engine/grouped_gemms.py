"""One GEMM for the projections that read the same input, in the compiled step: q, k and v; gate and up.

Why: a transformers decoder layer runs q_proj, k_proj and v_proj (and the MLP's gate_proj and up_proj) as separate
linears on the same hidden states. At a decode step's few rows each is a weight-streaming GEMV, and a separate
launch: 7 GEMMs per layer, 226 of a 7B AR step's ~430 launches (benchmarks/cuda_codegen.py, inductor's sm_90 code).
One GEMM over the concatenated weights reads the same bytes in 3 launches per layer, with wider N for the GEMV.

How, without changing the model's code or its values:
1. `adjacent_projections(model)`: each group's weights are moved into one contiguous buffer, each Linear's weight
   becoming a row slice of it (`weight.data`: the same Parameter objects, values and state_dict; eager calls
   still run each Linear alone, on the same bytes). Done at the construction of a decoder that compiles the whole
   step, and only while no session of the model is alive: a session's CUDA graph reads the weights where they
   were when it was captured.
2. `MergeAdjacentGemms`, an inductor post-grad pass (passed to this compile only): mm nodes that read the same
   input, with weights that are graph inputs lying back to back in one storage, become one mm over a view of the
   whole buffer, and each original result a contiguous slice of it. A group whose weights are not adjacent (a
   model moved or cast since, a tied or quantised weight) is left alone: the pass only fuses what it can prove.

The merged code reads past q's own weight into k's and v's, so it must never run on another layout. Neither
dynamo's guards nor inductor's on-disk cache look at how inputs share storage, hence:
- the pass is built for one `layout` (which groups are adjacent), and its uuid, part of inductor's cache key,
  names it: a compile for another layout never reuses its code;
- CompiledStep checks the layout before each eager call and compiles anew if it changed (a regional decoder built
  since on the same model separates the weights);
- weights move only while no session of the model is alive: a captured CUDA graph replays without any check.
compile="regional" does without (`separate_projections` at its construction): dynamo traces no region whose inputs
alias one another (higher-order ops refuse aliasing). Where a live session keeps the weights grouped, the region
fails and the whole step compiles (`regional_failure` says so). Eager decoders leave the layout as it is.
"""
from __future__ import annotations

import contextlib
import gc
import weakref
from collections import defaultdict

import torch
import torch.utils._pytree as pytree
from torch._guards import detect_fake_mode
from torch._inductor.custom_graph_pass import CustomGraphPass
from torch.multiprocessing.reductions import StorageWeakRef

# attribute names of the Linear groups that read one input, in transformers' decoder layers (Llama, Chameleon,
# Emu3, Janus's language model)
GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
aten = torch.ops.aten


# model -> its live sessions: a session's CUDA graph holds the weights' addresses, so weights move only while none
# is alive (a dropped session's graph is freed with it)
_LIVE_SESSIONS: "weakref.WeakKeyDictionary[torch.nn.Module, weakref.WeakSet]" = weakref.WeakKeyDictionary()


def note_session(language_model, session) -> None:
    """Called for every session (engine/session.py): while it lives, this model's weights stay where they are."""
    if isinstance(language_model, torch.nn.Module):
        _LIVE_SESSIONS.setdefault(language_model, weakref.WeakSet()).add(session)


def _movable(model: torch.nn.Module) -> bool:
    """Whether no session of `model` is alive (one found is looked at again after a collection: dynamo's tracing
    leaves cycles that can hold a finished session a while)."""
    live = _LIVE_SESSIONS.get(model)
    if live:
        gc.collect()
    return not live


def adjacent_projections(model: torch.nn.Module | None) -> int:
    """Moves each GROUPS group of bias-free Linears of one module into one buffer (see the module docstring), unless
    a session of `model` is alive (then the step keeps separate GEMMs: slower, never wrong). Returns the number of
    groups adjacent (0 for None: an adapter without a transformers stack)."""
    groups = weight_groups(model)
    apart = [weights for weights in groups if not _adjacent(weights)]
    if apart and _movable(model):
        with torch.no_grad():
            for weights in apart:
                fused = torch.cat([w.detach() for w in weights])
                start = 0
                for w in weights:
                    w.data = fused[start:start + w.shape[0]]
                    start += w.shape[0]
    return sum(layout_of(groups))


def separate_projections(model: torch.nn.Module | None) -> None:
    """Undoes adjacent_projections (each weight its own storage again), unless a session of `model` is alive: for
    compile="regional", whose region dynamo cannot trace with inputs that alias one another."""
    together = [weights for weights in weight_groups(model) if _adjacent(weights)]
    if together and _movable(model):
        with torch.no_grad():
            for weights in together:
                for w in weights:
                    w.data = w.detach().clone()


def layout_of(groups: list) -> tuple[bool, ...]:
    """Which of `groups` (weight_groups') are adjacent now (CompiledStep asks before each eager call: ~3 us per
    group, a storage comparison per weight)."""
    return tuple(_adjacent(weights) for weights in groups)


def weight_groups(model: torch.nn.Module | None) -> list:
    """The GROUPS groups' weights (Parameter objects: they keep their identity when the layout changes)."""
    return list(_groups(model))


def _groups(model: torch.nn.Module | None):
    """Each GROUPS group's weights: bias-free Linears of one module, of one input size, dtype and device."""
    for module in model.modules() if model is not None else ():
        for names in GROUPS:
            linears = [getattr(module, name, None) for name in names]
            if all(isinstance(l, torch.nn.Linear) and l.bias is None for l in linears):
                weights = [l.weight for l in linears]
                if len({(w.shape[1], w.dtype, w.device) for w in weights}) == 1:
                    yield weights


def _adjacent(weights) -> bool:
    """Whether the 2-D weights are contiguous row blocks of one storage, in order, the first at its start."""
    first = weights[0]
    if first.storage_offset() != 0 or any(not w.is_contiguous() for w in weights):
        return False
    storage, offset = StorageWeakRef(first.untyped_storage()), 0
    for w in weights:
        if StorageWeakRef(w.untyped_storage()) != storage or w.storage_offset() != offset:
            return False
        offset += w.numel()
    return True


_VIEWS = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)


class MergeAdjacentGemms(CustomGraphPass):
    """inductor's post-grad pass (`post_grad_custom_post_pass`) for one layout of the weights (see the module
    docstring): `layout` is layout_of(model) when the step compiles."""

    def __init__(self, layout: tuple[bool, ...]):
        self.layout = tuple(layout)

    def __call__(self, graph: torch.fx.Graph) -> None:
        # (the input's source node, its 2-D shape, the weight's storage) -> [(mm node, weight node)]
        groups = defaultdict(list)
        for node in graph.nodes:
            weight = _weight_of(node)
            if weight is not None:
                storage = StorageWeakRef(weight.meta["val"].untyped_storage())
                groups[(*_input_key(node.args[0]), storage)].append((node, weight))
        for mms in groups.values():
            mms.sort(key=lambda pair: pair[1].meta["val"].storage_offset())
            if len(mms) > 1 and _adjacent([w.meta["val"] for _, w in mms]):
                _merge(graph, mms)

    def uuid(self) -> str:
        return "hawk_kernels.MergeAdjacentGemms.2:" + "".join("1" if adjacent else "0" for adjacent in self.layout)


def _weight_of(node: torch.fx.Node) -> torch.fx.Node | None:
    """The weight of `mm(x, permute(weight, [1, 0]))` with `weight` a 2-D graph input, else None."""
    if node.op != "call_function" or node.target is not aten.mm.default:
        return None
    rhs = node.args[1]
    if not (isinstance(rhs, torch.fx.Node) and rhs.target is aten.permute.default and list(rhs.args[1]) == [1, 0]):
        return None
    weight = rhs.args[0]
    value = weight.meta.get("val") if isinstance(weight, torch.fx.Node) else None
    return weight if weight.op == "placeholder" and isinstance(value, torch.Tensor) and value.dim() == 2 else None


def _input_key(node: torch.fx.Node):
    """Each linear flattens its input with a view of its own: their common source, and the 2-D shape."""
    shape = tuple(node.meta["val"].shape)
    while node.op == "call_function" and node.target in _VIEWS:
        node = node.args[0]
    return node, shape


def _merge(graph: torch.fx.Graph, mms: list) -> None:
    """One mm over the weights' whole buffer; each original result a contiguous column block of it."""
    first = min((mm for mm, _ in mms), key=lambda n: list(graph.nodes).index(n))
    x, weight0 = first.args[0], mms[0][1]
    rows = [w.meta["val"].shape[0] for _, w in mms]
    k = weight0.meta["val"].shape[1]
    with graph.inserting_before(first):
        whole = _call(graph, aten.as_strided.default, weight0, [sum(rows), k], [k, 1], 0)
        fused = _call(graph, aten.mm.default, x, _call(graph, aten.permute.default, whole, [1, 0]))
        start = 0
        for (mm, _), n in zip(mms, rows):
            block = _call(graph, aten.slice.Tensor, fused, 1, start, start + n)
            mm.replace_all_uses_with(_call(graph, aten.clone.default, block, memory_format=torch.contiguous_format))
            start += n
    for mm, _ in mms:
        permute = mm.args[1]
        graph.erase_node(mm)
        if not permute.users:
            graph.erase_node(permute)


def _call(graph: torch.fx.Graph, target, *args, **kwargs) -> torch.fx.Node:
    """A new node with its fake value (inductor lowers from node.meta["val"])."""
    node = graph.call_function(target, args, kwargs)
    value_args, value_kwargs = torch.fx.node.map_arg((args, kwargs), lambda a: a.meta["val"])
    tensors = [v for v in pytree.tree_leaves((value_args, value_kwargs)) if isinstance(v, torch.Tensor)]
    with detect_fake_mode(tensors) or contextlib.nullcontext():
        node.meta["val"] = target(*value_args, **value_kwargs)
    return node
