"""Continuous batching for many images: one decoder session of `batch_size` rows, in which a row whose image is
finished is given the next prompt at once (HawkDecoder.refill) instead of waiting for the batch's slowest row.

In a drafting mode rows finish after different numbers of passes (bundled model, jacobi at 16 nodes, batch 16:
the slowest row took 1.45x the mean row's passes), so a fixed batch spends the tail of every batch stepping rows
that are done. Each image decodes exactly as it would alone with its seed and the session's tree size (every row
keeps its own seed, Philox offsets, cache rows and draft memory: engine/state.py), so the images do not depend on
the order in which rows free up. Prompts of any lengths share the session (each branch left-padded and masked).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Iterator

from ..acceptance import record
from ..checks import as_bool, as_int, image_seeds
from ..drafts import default_mode
from ..progress import progress_bar
from ..tree_size import pipeline_num_nodes
from .rows import DEFAULT_NUM_NODES, PipelineOutput, PromptRows, probe_batch, prompt_width, stack_rows

# "auto" chose from a probe alone (no whole image counted): a call of at least SETTLE_MIN_IMAGES_PER_ROW images per
# row decodes SETTLE_IMAGES_PER_ROW images per row first, then re-chooses from their counts (_sessions)
SETTLE_IMAGES_PER_ROW = 2
SETTLE_MIN_IMAGES_PER_ROW = 8


def stream_images(pipe, prompts=None, batch_size: int = 1, mode: str | None = None, size=None, cfg_scale=None,
                  temperature=None, top_k=None, seed: int | list[int] = 0, num_nodes="auto", top_p=None,
                  fill: bool = False, input_ids=None, pixels: bool = True,
                  negative_prompt=None) -> Iterator[tuple[list[int], PipelineOutput]]:
    """Text `prompts` (or `input_ids` rows) through one session of `batch_size` rows -> yields (prompt indices,
    their PipelineOutput) as images finish, in the order they finish. Arguments as ImagePipeline.generate's; fill:
    fewer prompts than batch_size still run batch_size rows (repeats of the last prompt, dropped), so a
    compiled step keeps one shape; pixels: decode the images (False: tokens only, as generate_tokens). Every
    argument is checked before any model work."""
    if as_bool("pixels", pixels):
        pipe.checked_decode_batch()
    call = _open(pipe, prompts, input_ids, batch_size, mode, size, cfg_scale, temperature, top_k, seed, num_nodes,
                 top_p, fill, negative_prompt)
    for members, out, seconds, _, part in _sessions(pipe, call):
        res = pipe._collect([out], members, call.rows, seconds)
        if pixels:
            res.pixels = pipe.decode_pixels(res.codes)
            res.images = None if res.pixels is None else pipe.to_images(res.pixels)
        res.num_nodes, res.mode = [part.decoder.tree.num_nodes] * len(members), call.mode
        res.tree_rates = part.size_choice.rates_from
        yield sorted(members), res


def generate_in_session(pipe, batch_size: int, prompts=None, input_ids=None, mode=None, size=None, cfg_scale=None,
                        temperature=None, top_k=None, seed: int | list[int] = 0, num_nodes="auto", top_p=None,
                        progress: bool = False, negative_prompt=None) -> PipelineOutput:
    """generate_tokens(batch_size=k): every image through one session of k rows, a finished row taking the next
    prompt, collected in prompt order. Each image is the one a batch of all the prompts makes with the same tree
    size (up to batched matmuls' rounding); total_forward_passes counts the session's passes."""
    as_bool("progress", progress)  # before _open, which may time steps ("auto")
    call = _open(pipe, prompts, input_ids, batch_size, mode, size, cfg_scale, temperature, top_k, seed, num_nodes,
                 top_p, False, negative_prompt)
    bar = progress_bar(len(call.rows.conditional), "images", unit="img") if progress else None
    outputs, order, passes, start, nodes, rates_from = [], [], 0, time.perf_counter(), {}, {}
    for members, out, _, passes, part in _sessions(pipe, call):
        outputs.append(out)
        order.extend(members)
        nodes.update(dict.fromkeys(members, part.decoder.tree.num_nodes))
        rates_from[part.size_choice.rates_from] = None
        if bar is not None:
            bar.update(len(members))
    if bar is not None:
        bar.close()
    res = pipe._collect(outputs, order, call.rows, time.perf_counter() - start)
    res.total_forward_passes = passes
    res.num_nodes, res.mode = [nodes[i] for i in range(len(order))], call.mode
    res.tree_rates = None if None in rates_from else ", then ".join(rates_from)
    return res


@dataclass
class _Call:
    """A checked call: its prompt rows, seeds and sampling, the session's width and prompt room, its decoder."""

    rows: PromptRows  # prompt i takes a row in turn (i = 0, 1, ...)
    seeds: list[int]
    sampling: object  # target.SamplingConfig
    width: int  # the session's rows
    room: int  # prompt tokens per row the session's cache holds: the longest prompt fits every refill
    decoder: object  # HawkDecoder
    mode: str
    size_choice: object  # tree_size.SizeChoice: where the acceptance it weighed came from, where counts go


def _open(pipe, prompts, input_ids, batch_size, mode, size, cfg_scale, temperature, top_k, seed, num_nodes, top_p,
          fill, negative_prompt) -> _Call:
    """Every argument checked and the tree size chosen, before any model work."""
    mode = default_mode(pipe.heads is not None) if mode is None else mode
    batch_size = as_int("batch_size", batch_size, 1)
    as_bool("fill", fill)
    grid, sampling = pipe._prepare(mode, size, cfg_scale, temperature, top_k, top_p)
    rows = pipe.call_rows(prompts, input_ids, grid, sampling, negative_prompt)
    seeds = image_seeds("seed", seed, len(rows.conditional))
    width = batch_size if fill else min(batch_size, len(rows.conditional))
    room = prompt_width(rows, range(len(rows.conditional)), sampling.uses_cfg)
    def probe():  # the call's first prompts, built only where a probe runs (acceptance.py)
        return probe_batch(rows, range(len(seeds)), seeds, sampling.uses_cfg, pipe.device)

    choice = pipeline_num_nodes(pipe, mode, grid, num_nodes, width, sampling, DEFAULT_NUM_NODES, room,
                                continuous=True, probe=probe)
    return _Call(rows, seeds, sampling, width, room, pipe._decoder_of_size(mode, grid, choice.num_nodes), mode,
                 choice)


def _sessions(pipe, call: _Call):
    """-> (prompt indices, their HawkOutput, seconds since the previous images finished, the call's passes so far,
    the _Call of the session that made them) as images finish: one session, or two where "auto" weighed the tree
    size by a probe's counts alone (acceptance.py: the first rows of two images) and the call is long (at least
    SETTLE_MIN_IMAGES_PER_ROW images per row). Then the first session decodes SETTLE_IMAGES_PER_ROW images per row
    and the rest run at the size re-chosen with those whole images' counts: a 100k-image job does not run at a size
    weighed by its first images' top rows. The first session's last images finish without refills (a fixed
    batch's tail, once)."""
    order = list(range(len(call.rows.conditional)))
    split = call.width * SETTLE_IMAGES_PER_ROW
    settle = call.size_choice.probe_only and len(order) >= call.width * SETTLE_MIN_IMAGES_PER_ROW
    done_passes, part = 0, call
    for k, queue in enumerate([order[:split], order[split:]] if settle else [order]):
        if k:  # the first images' whole-image counts are in the table now
            part = _rechosen(pipe, call)
        passes = 0
        for members, out, seconds, passes in _run_session(pipe, part, queue):
            yield members, out, seconds, done_passes + passes, part
        done_passes += passes


def _rechosen(pipe, call: _Call) -> _Call:
    """`call` with its tree size chosen again from the acceptance counted since (num_nodes="auto", no probe)."""
    grid = call.decoder.grid
    choice = pipeline_num_nodes(pipe, call.mode, grid, "auto", call.width, call.sampling, DEFAULT_NUM_NODES,
                                call.room, continuous=True)
    return replace(call, decoder=pipe._decoder_of_size(call.mode, grid, choice.num_nodes), size_choice=choice)


def _run_session(pipe, call: _Call, queue: list[int] | None = None):
    """-> (prompt indices, their HawkOutput, seconds since the previous images finished, the session's passes so
    far) as images finish. queue: the prompts it decodes, in turn (default: all of the call's)."""
    decoder, rows, seeds, sampling, width = call.decoder, call.rows, call.seeds, call.sampling, call.width
    queue = list(range(len(rows.conditional))) if queue is None else list(queue)
    first = queue[:width] + [queue[min(width, len(queue)) - 1]] * max(0, width - len(queue))
    holder = {row: (i if row < len(queue) else None) for row, i in enumerate(first)}  # None: a filler row
    waiting = list(queue[width:])
    ids, mask, negative, negative_mask = stack_rows(rows, first, sampling.uses_cfg, pipe.device)
    clock = time.perf_counter()
    session = decoder.start(ids, negative, sampling.cfg_scale, sampling.temperature, sampling.top_k,
                            sampling.top_p, seed=[seeds[i] for i in first], attention_mask=mask,
                            max_prompt_length=call.room, negative_attention_mask=negative_mask)
    idle_steps, passes, body = 0, 0, decoder.grid.num_body_tokens
    while any(i is not None for i in holder.values()):
        done = session.finished_rows()
        if not done:
            session.check()  # a NaN target law is named as such, not as a stall
            if idle_steps > body:  # every step commits >= 1 token per unfinished row
                raise RuntimeError(f"generate: the decode steps made no progress for {idle_steps} steps")
            steps = decoder.sync_every if session.graphed else 1
            session.run(steps)
            idle_steps, passes = idle_steps + steps, passes + steps
            continue
        idle_steps = 0
        real = [row for row in done if holder[row] is not None]
        if len(real) < len(done):
            session.take([row for row in done if holder[row] is None])  # fillers: freed, never reported
        if real:
            now, out = time.perf_counter(), session.take(real)
            record(call.size_choice.acceptance_key, [out], len(real))  # teaches later "auto" calls (acceptance.py)
            yield [holder[row] for row in real], out, now - clock, passes
            clock = now
        new, waiting = waiting[: len(done)], waiting[len(done):]
        refill = done[: len(new)]
        holder.update({row: None for row in done})
        if new:  # the freed rows take the next prompts (seconds: counted in the next images' share)
            ids, mask, negative, negative_mask = stack_rows(rows, new, sampling.uses_cfg, pipe.device)
            decoder.refill(session, refill, ids, negative, seed=[seeds[i] for i in new], attention_mask=mask,
                           negative_attention_mask=negative_mask)
            holder.update(zip(refill, new))
