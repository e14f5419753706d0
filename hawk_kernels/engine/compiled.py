"""CompiledStep: the decode step (step.py, the backbone forward included) compiled by torch.compile's inductor
backend with fullgraph=True, so its many small kernels (norms, rotary, masks, sampling) fuse into few.

It composes with CUDA-graph capture (graphs.py): the runner's first step runs the compiled function eagerly
(compilation happens there, never during capture), and the capture then records the compiled kernels. The
hawk:: ops have fake kernels (ops/_library.py), so they stay inside the graph.

Each decoder compiles its own copy of the step function: dynamo caches compiled code per code object, with a
recompile limit, so decoders of many modes and shapes would otherwise evict each other. Inside one decoder a new
sampling configuration (greedy vs sampled) compiles once more; a new session with the same shapes reuses the
compiled code. Where compiling fails, "auto" runs the eager step and keeps the reason (HawkOutput.fallbacks
["compile"], printed by the CLI summaries); compile=True raises.
"""
from __future__ import annotations

import types

import torch

from . import step as step_module


class CompiledStep:
    def __init__(self, required: bool):
        self.required = required
        self.fallback_reason: str | None = None
        step = step_module.step
        fresh = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, step.__defaults__,
                                   step.__closure__)
        self._compiled = torch.compile(fresh, backend="inductor", fullgraph=True)

    @property
    def active(self) -> bool:
        return self.fallback_reason is None

    def __call__(self, plan, state) -> None:
        if self.fallback_reason is not None:
            return step_module.step(plan, state)
        try:
            return self._compiled(plan, state)
        except torch._dynamo.exc.TorchDynamoException as exc:  # compiling failed: nothing ran yet
            self.fallback_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if self.required:
                raise RuntimeError(f"compile=True: compiling the decode step failed ({self.fallback_reason})") from exc
            return step_module.step(plan, state)
