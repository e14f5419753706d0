"""CompiledStep: the decode step (step.py, the backbone forward included) compiled by torch.compile's inductor
backend with fullgraph=True, so its many small kernels (norms, rotary, masks, sampling) fuse into few.

It composes with CUDA-graph capture (graphs.py): the runner's first step runs the compiled function eagerly
(compilation happens there, never during capture), and the capture then records the compiled kernels. The
hawk:: ops have fake kernels (ops/_library.py), so they stay inside the graph.

Compile time vs step time: a 7B model's 32 decoder layers are one layer's code 32 times, and inductor lowers
each copy anew (about 1.8 s per layer on the CPU: ~70 s per decoder at 32 layers, and every tree size and mode
is a decoder; INDUCTOR_OPTIONS below keeps inductor's fusion pass from growing quadratically with the layers).
compile="regional" marks the layers' forward as one `torch.compiler.nested_compile_region`
(`mark_repeated_layers`: an instance attribute `forward` on each layer, a no-op outside torch.compile): dynamo
still traces each call, inductor compiles the layer once and reuses it (32 layers on the CPU: 77 s -> 44 s).
The price is at run time: inductor cannot fuse across a region's edge (the last residual add of a layer with
the next layer's norm), about two more kernels per layer, and on the CPU a step of a 32-layer toy model took
3.84 ms instead of 3.36 (benchmarks/NOTES.md). So the default (True, "auto") compiles the whole step, the
fastest step; "regional" is for compiling many decoders quickly. Where the marked compile fails, the marks are
removed, the whole step compiles, and `regional_failure` keeps why.

Each decoder compiles its own copy of the step function: dynamo caches compiled code per code object, with a
recompile limit, so decoders of many modes and shapes would otherwise evict each other. Inside one decoder, what
changes the step's code compiles once more, statically (dynamic=False): greedy vs sampled, temperature 1 vs
other, CFG on/off, top-k's k, top-p on/off, a new batch size or cache size (capacity rounds to 128 slots).
Temperatures, CFG scales and top-p values are tensors (target.StepSampling) and reuse the compiled code; a new
session with the same shapes does too. Past torch's recompile limit (8 per function; fullgraph raises), the step
starts a fresh copy. Where compiling fails, "auto" runs the eager step and keeps the reason
(HawkOutput.fallbacks["compile"], printed by the CLI summaries); compile=True raises.
"""
from __future__ import annotations

import gc
import time
import types

import torch
from torch._dynamo.utils import counters

from . import step as step_module
from .grouped_gemms import MergeAdjacentGemms, layout_of, weight_groups

# raised under fullgraph once a function has compiled torch._dynamo.config.recompile_limit versions (() if a torch
# version has no such class: `except ()` matches nothing)
_RECOMPILE_LIMIT_HIT = getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", ())
# inductor's fusion pass pairs each node with up to this many later nodes that read a buffer it reads (default 64).
# Over the step's many layers that pass grows about quadratically: 2.3 / 8.8 / 24.7 s of a cold CPU compile at 8 /
# 16 / 32 layers. At 8 it takes 7.0 s at 32 layers (82.6 s -> 68.0 s in all) and the generated code is the same,
# kernel for kernel (the fusions worth making are between nearby nodes); tests/test_compiled.py checks it.
INDUCTOR_OPTIONS = {"max_fusion_buffer_group_pairwise_attempts": 8}
_REGION_OF_CLASS: dict[type, types.FunctionType] = {}  # layer class -> its marked forward (one region per class)
_REGION_FAILED: dict[type, str] = {}  # layer class -> why its marked compile failed (not tried again: a failed
#                                        attempt costs a trace of every layer, per decoder)


def inductor_options(layout: tuple[bool, ...] = ()) -> dict:
    """What the step's compile passes to inductor: INDUCTOR_OPTIONS (those this torch knows: torch.compile raises on
    an unknown one, and the GPU host runs an older torch) and, where some projection group's weights lie in one
    buffer (`layout`: grouped_gemms.layout_of), the pass that makes each such group one GEMM."""
    options = {k: v for k, v in INDUCTOR_OPTIONS.items() if hasattr(torch._inductor.config, k)}
    if any(layout) and hasattr(torch._inductor.config, "post_grad_custom_post_pass"):
        options["post_grad_custom_post_pass"] = MergeAdjacentGemms(layout)
    return options


def compiles(compile, device) -> bool:
    """Whether a decoder with this compile word compiles its step on `device` ("auto": on CUDA only)."""
    return compile is True or compile == "regional" or (compile == "auto" and torch.device(device).type == "cuda")


def _graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process (it counts each new one)."""
    return counters["stats"]["unique_graphs"]


def mark_repeated_layers(layers) -> bool:
    """Marks every layer of `layers` (a transformers stack's decoder layers, all of one class) as one nested
    compile region. Returns whether they are marked (False: fewer than 2 layers, mixed classes, a forward
    already overridden on an instance by someone else, or a torch without nested_compile_region)."""
    mark = getattr(torch.compiler, "nested_compile_region", None)
    if mark is None or not isinstance(layers, torch.nn.ModuleList) or len(layers) < 2:
        return False
    classes = {type(layer) for layer in layers}
    if len(classes) != 1:
        return False
    cls = classes.pop()
    if cls in _REGION_FAILED:
        return False
    marked = _REGION_OF_CLASS.get(cls)
    if marked is None:  # a copy of the class's forward: marking sets an attribute on the function it is given
        f = cls.forward
        marked = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        marked.__kwdefaults__, marked.__dict__ = f.__kwdefaults__, dict(f.__dict__)
        marked = _REGION_OF_CLASS.setdefault(cls, mark(marked))
    own = [vars(layer).get("forward") for layer in layers]
    if any(f is not None and getattr(f, "__func__", None) is not marked for f in own):
        return False
    for layer in layers:
        layer.forward = types.MethodType(marked, layer)
    return True


def unmark_layers(layers) -> None:
    for layer in layers or ():
        if getattr(vars(layer).get("forward"), "__func__", None) in _REGION_OF_CLASS.values():
            del layer.forward


class CompiledStep:
    def __init__(self, required: bool, layers=None, language_model=None):
        """layers: the backbone's decoder layers, compiled as one repeated region where they allow it.
        language_model: the transformers stack, whose projection groups with weights in one buffer compile to one
        GEMM each (grouped_gemms.py)."""
        self.required = required
        self._weight_groups = weight_groups(language_model)
        self.layout = layout_of(self._weight_groups)  # the layout the compiled code is for
        self.fallback_reason: str | None = None
        self.layers = layers
        self.regional = mark_repeated_layers(layers)
        self.regional_failure: str | None = _REGION_FAILED.get(type(layers[0])) if layers else None
        self.fresh_starts = 0  # times torch's recompile limit (8 per function) made this step start a fresh copy
        self.compile_seconds = 0.0  # wall time of the calls that compiled (a new graph): what users wait for once
        self._compiled = self._fresh()

    def _fresh(self):
        step = step_module.step
        fresh = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, step.__defaults__,
                                   step.__closure__)
        # dynamic=False: a new shape (batch size, cache bucket, top-k) compiles a static version of its own
        # rather than one symbolic-shape version that every later call would use, whatever its shape
        return torch.compile(fresh, backend="inductor", fullgraph=True, dynamic=False,
                             options=inductor_options(self.layout))

    @property
    def active(self) -> bool:
        return self.fallback_reason is None

    def __call__(self, plan, state) -> None:
        """One step. Only the eager calls land here (a CUDA graph replays without Python), so timing each call on
        the host costs nothing that counts; a call that made a new graph is time spent compiling."""
        if self.fallback_reason is not None:
            return step_module.step(plan, state)
        graphs, began = _graphs_compiled(), time.perf_counter()
        try:
            return self._call(plan, state)
        finally:
            if _graphs_compiled() != graphs:
                # dynamo's tracing leaves reference cycles that hold the example inputs, this session's whole
                # state (a KV cache of tens of GB at batch 16 on a 7B model) until Python's cyclic collector
                # happens to run: num_nodes="auto" would stack one per timed size. Collect them now (~0.1 s,
                # once per compile).
                gc.collect()
                self.compile_seconds += time.perf_counter() - began

    def _call(self, plan, state) -> None:
        layout = layout_of(self._weight_groups)
        if layout != self.layout:  # the weights moved since: code for this layout
            self.layout = layout
            self._compiled = self._fresh()
        try:
            return self._compiled(plan, state)
        except _RECOMPILE_LIMIT_HIT:  # 8 configurations compiled: start a fresh copy
            self.fresh_starts += 1
            self._compiled = self._fresh()
            return self._compiled(plan, state)
        except torch._dynamo.exc.TorchDynamoException as exc:  # compiling failed: nothing ran yet
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if self.regional:  # once more, unmarked: the whole step as one graph
                self.regional, self.regional_failure = False, reason
                _REGION_FAILED[type(self.layers[0])] = reason
                unmark_layers(self.layers)
                self._compiled = self._fresh()
                return self._call(plan, state)
            self.fallback_reason = reason
            if self.required:
                raise RuntimeError(f"compile={'regional' if self.layers is not None else True}: compiling the "
                                   f"decode step failed ({self.fallback_reason})") from exc
            return step_module.step(plan, state)
