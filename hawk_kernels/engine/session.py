"""DecodeSession: one generation in flight (a plan, its state, a step runner), and its HawkOutput."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import step as step_module
from ..checks import as_int
from .compiled import CompiledStep
from .graphs import StepRunner
from .grouped_gemms import note_session
from .plan import StepPlan
from .state import DecodeState


@dataclass
class HawkOutput:
    image_tokens: torch.Tensor  # [B, H, W] global image code ids
    sequences: torch.Tensor  # [B, L_prompt + body (+ image_end)] the (padded) prompt then generated ids
    generated: torch.Tensor  # [B, body (+ image_end)]
    num_forward_passes: int  # target passes after prefill
    accepted_lengths: list[list[int]]  # per step, per row: tokens committed by that pass
    accepted_by_source: dict[str, int] = field(default_factory=dict)  # accepted tree tokens per source (+ 'layout')
    cuda_graph: bool = False  # whether the steps replayed a captured CUDA graph
    compiled: bool = False  # whether the steps ran the torch.compile'd step (engine/compiled.py)
    rank_tried: list[list[int]] = field(default_factory=list)  # [depth][rank]: node tried (parent accepted)
    rank_accepted: list[list[int]] = field(default_factory=list)  # [depth][rank]: node accepted
    # what was asked for but not used, and why: {"cuda_graphs": "capture failed: ...", "compile": "..."}
    fallbacks: dict[str, str] = field(default_factory=dict)
    compile_seconds: float = 0.0  # wall time of this generation's steps that compiled the step (first use of a shape)

    @property
    def step_engine(self) -> str:
        """How the steps ran, for summaries: "compiled + CUDA graph", "eager", ..., with the reason of any
        fallback: "eager (cuda_graphs: capture failed, ran eagerly (...))"."""
        kind = " + ".join(k for k, on in (("compiled", self.compiled), ("CUDA graph", self.cuda_graph)) if on)
        kind = kind or "eager"
        reasons = "; ".join(f"{what}: {why}" for what, why in self.fallbacks.items())
        return f"{kind} ({reasons})" if reasons else kind

    @property
    def mean_accepted_length(self) -> float:
        """Tokens committed per target pass, per image: every row's committed tokens over the passes that row
        took part in (a finished row waiting for the batch does not count; the prefill's token neither)."""
        total = sum(sum(step) for step in self.accepted_lengths)
        row_passes = sum(sum(1 for n in step if n > 0) for step in self.accepted_lengths)
        return total / max(1, row_passes)


class DecodeSession:
    """A generation after prefill: run(n) takes n steps (eagerly, or as CUDA-graph replays after the first
    two on CUDA); output() collects the result. Steps after every row finished are no-ops.

    Continuous batching: a row whose image is finished (finished_rows()) can be taken (take(rows): its output)
    and given to a new image (HawkDecoder.refill), which then decodes beside the others exactly as it would alone,
    so a many-image run does not wait for the slowest row of each batch."""

    def __init__(self, plan: StepPlan, state: DecodeState, cuda_graphs: bool | str = "auto",
                 compiled: CompiledStep | None = None):
        """compiled: the decoder's compiled step (None: the eager step)."""
        self.plan, self.state, self.compiled = plan, state, compiled
        note_session(getattr(plan.backbone, "language_model", None), self)  # weights stay put (grouped_gemms.py)
        self._compile_seconds_before = compiled.compile_seconds if compiled is not None else 0.0
        # the step module is looked up at every call, so tests can wrap `step` in a guard
        self.runner = StepRunner(lambda: (compiled or step_module.step)(plan, state), plan.backbone.device,
                                 cuda_graphs)
        self.taken: set[int] = set()  # rows whose finished image take() returned (free for a refill)

    @property
    def graphed(self) -> bool:
        return self.runner.graphed

    @torch.no_grad()
    def run(self, steps: int = 1) -> None:
        self.runner.run(as_int("steps", steps, 0))

    def least_committed(self) -> int:
        """Body tokens committed by the slowest row (reads the device: call between steps)."""
        return int(self.state.committed.min())

    def finished_rows(self) -> list[int]:
        """Rows whose image is complete and not yet taken (reads the device: call between steps)."""
        done = (self.state.committed >= self.plan.grid.num_body_tokens).nonzero()[:, 0].tolist()
        return [row for row in done if row not in self.taken]

    def take(self, rows) -> HawkOutput:
        """The output of finished rows `rows` (a list of row indices), as a generation of those images alone
        would report it; the rows are then free for HawkDecoder.refill."""
        rows = self._rows("rows", rows)
        self.check()
        committed = self.state.committed[rows].tolist()  # one read of the device for all rows
        unfinished = [r for r, n in zip(rows, committed) if n < self.plan.grid.num_body_tokens]
        if unfinished:
            raise ValueError(f"rows: rows {unfinished} are not finished (finished_rows() lists those that are)")
        self.taken.update(rows)
        return self._output(rows)

    def free_rows(self, rows) -> list[int]:
        """`rows` checked: distinct row indices whose images were taken (else ValueError: they would be lost)."""
        rows = self._rows("rows", rows)
        kept = [r for r in rows if r not in self.taken]
        if kept:
            raise ValueError(f"rows: rows {kept} hold images not taken yet (take(rows) first, or they are lost)")
        return rows

    def replace_rows(self, rows, fresh: DecodeState) -> None:
        """Rows `rows` (taken) become the images of `fresh` (HawkDecoder.refill prepares it)."""
        rows = self.free_rows(rows)
        if fresh.batch != len(rows):
            raise ValueError(f"fresh: a state of {fresh.batch} rows for {len(rows)} rows")
        index = torch.tensor(rows, dtype=torch.int64, device=self.state.committed.device)
        self.state.replace_rows(self.plan, index, fresh)
        self.taken.difference_update(rows)

    def _rows(self, name: str, rows) -> list[int]:
        batch = self.state.batch
        if isinstance(rows, (int, str, bytes)) or not all(isinstance(r, int) and not isinstance(r, bool)
                                                          for r in rows):
            raise TypeError(f"{name}: expected a list of row indices (ints), got {rows!r:.60}")
        rows = list(rows)
        if not rows or len(set(rows)) != len(rows) or not all(0 <= r < batch for r in rows):
            raise ValueError(f"{name}: expected distinct row indices in [0, {batch}), at least one, got {rows}")
        return rows

    def check(self) -> None:
        if bool(self.state.bad_rows.any()):
            raise FloatingPointError("target logits: a target row was NaN or had no finite entry (check the "
                                     "model's dtype/weights, cfg_scale and the token range)")

    def output(self) -> HawkOutput:
        """The finished generation (every row's image complete: run() until least_committed() reaches the body)."""
        self.check()
        body, least = self.plan.grid.num_body_tokens, self.least_committed()
        if least < body:
            raise RuntimeError(f"output(): the image is not finished: a row has committed {least} of its {body} "
                               f"tokens; run() more steps first (until least_committed() == {body})")
        return self._output(list(range(self.state.batch)))

    def _output(self, rows: list[int]) -> HawkOutput:
        fallbacks = {}
        if self.runner.fallback_reason is not None:
            fallbacks["cuda_graphs"] = f"capture failed, ran eagerly ({self.runner.fallback_reason})"
        if self.compiled is not None and not self.compiled.active:
            fallbacks["compile"] = f"compiling failed, ran the eager step ({self.compiled.fallback_reason})"
        elif self.compiled is not None and self.compiled.layers is not None and not self.compiled.regional:
            fallbacks["compile"] = ("the layers as one region failed, compiled the whole step "
                                    f"({self.compiled.regional_failure})")
        compiled = self.compiled is not None and self.compiled.active
        compile_seconds = self.compiled.compile_seconds - self._compile_seconds_before if self.compiled else 0.0
        self._compile_seconds_before += compile_seconds  # each output reports the compiling since the last one
        return collect_output(self.plan, self.state, self.graphed, compiled, fallbacks, compile_seconds, rows)


def collect_output(plan: StepPlan, state: DecodeState, cuda_graph: bool, compiled: bool = False,
                   fallbacks: dict | None = None, compile_seconds: float = 0.0,
                   rows: list[int] | None = None) -> HawkOutput:
    """The HawkOutput of `rows` (default all): each row's steps counted from its own image's start."""
    rows = list(range(state.batch)) if rows is None else rows
    grid, stats = plan.grid, state.stats
    generated = plan.backbone.token_ids(state.body[rows, : grid.num_body_tokens])
    image_tokens = grid.image_tokens(generated)
    if grid.image_end_token is not None:
        end = torch.full((generated.shape[0], 1), grid.image_end_token, dtype=torch.int64, device=generated.device)
        generated = torch.cat([generated, end], dim=1)
    sequences = torch.cat([state.prompt[rows].to(generated), generated], dim=1)
    history = stats.history[:-1, rows]
    steps = history[history.sum(1) > 0].tolist()  # real passes: some row committed a token
    by_source = {name: n for name, n in zip(plan.pool.source_names, stats.source_counts[rows].sum(0).tolist()) if n}
    shape = (plan.tree.template.max_depth + 1, plan.tree.template.max_rank)
    return HawkOutput(image_tokens, sequences, generated, len(steps), steps, by_source, cuda_graph=cuda_graph,
                      compiled=compiled, rank_tried=stats.rank_tried[rows].sum(0).view(shape).tolist(),
                      rank_accepted=stats.rank_accepted[rows].sum(0).view(shape).tolist(),
                      fallbacks=dict(fallbacks or {}), compile_seconds=compile_seconds)
