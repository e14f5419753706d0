"""StepRunner: runs a decode step eagerly, or captures it once as a CUDA graph and replays it.

The step (engine/step.py) has fixed shapes, updates its state in place and never syncs with the host, so one
capture serves every later step of a generate() call: a replay costs one launch instead of hundreds of
kernel launches and Python dispatches (docs/method.md §3: a transformers eager decode step of a 7B model is
~5x its bandwidth floor, almost all of it overhead).

Protocol: the first step runs eagerly on a side stream (it is a real step: lazy inits, cuBLAS workspaces
and Triton compilations happen here, not during capture), the second is captured (capture records, it does
not run) and then replayed; every step after that is a replay. Capture can fail (a model that syncs inside
forward, a backend that is not graph-safe such as the PyTorch reference of accept_reject): with
cuda_graphs="auto" the runner warns and stays eager, with cuda_graphs=True it raises.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch


def captures(cuda_graphs, device) -> bool:
    """Whether a runner with this cuda_graphs word tries to capture the step on `device` (True, "auto": on CUDA)."""
    return cuda_graphs in (True, "auto") and torch.device(device).type == "cuda"


class StepRunner:
    def __init__(self, step: Callable[[], None], device: torch.device, cuda_graphs: bool | str = "auto"):
        self.step, self.device = step, torch.device(device)
        self.mode = cuda_graphs
        self.graph: torch.cuda.CUDAGraph | None = None
        self.steps_run = 0
        self.fallback_reason: str | None = None
        if cuda_graphs is True and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True: the model is on {self.device}, CUDA graphs need a CUDA device")
        self.wants_graph = captures(cuda_graphs, self.device)

    @property
    def graphed(self) -> bool:
        return self.graph is not None

    def run(self, count: int = 1) -> None:
        for _ in range(count):
            if self.wants_graph and self.graph is None:
                if self.steps_run == 0:
                    self._warm_up()  # a real step, eager, on a side stream
                    self.steps_run += 1
                    continue
                self._capture()  # records only; on failure wants_graph turns False and we run eagerly
            if self.graph is not None:
                self.graph.replay()
            else:
                self.step()
            self.steps_run += 1

    def _warm_up(self) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.device(self.device), torch.cuda.stream(side):
            self.step()
        torch.cuda.current_stream(self.device).wait_stream(side)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(self.device)
            # on the step's own device: torch.cuda.graph captures on a stream of the CURRENT device, and a model on
            # cuda:1 with cuda:0 current would record an empty graph (every replay a no-op)
            with torch.cuda.device(self.device), torch.cuda.graph(graph):
                self.step()
        except Exception as exc:  # capture failed: nothing ran, the state is as before the attempt
            self.fallback_reason = f"{type(exc).__name__}: {exc}"
            self.wants_graph = False
            if self.mode is True:
                raise RuntimeError(f"cuda_graphs=True: capturing the decode step failed ({self.fallback_reason})") from exc
            warnings.warn(f"hawk_kernels: CUDA-graph capture of the decode step failed, running eagerly "
                          f"({self.fallback_reason})", RuntimeWarning, stacklevel=3)
            return
        self.graph = graph
