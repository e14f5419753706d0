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
from typing import Iterator

from ..checks import as_bool, as_int, image_seeds
from ..drafts import default_mode
from ..tree_size import pipeline_num_nodes
from .base import DEFAULT_NUM_NODES, PipelineOutput, PromptRows, _prompt_length, _stack


def stream_images(pipe, prompts=None, batch_size: int = 1, mode: str | None = None, size=None, cfg_scale=None,
                  temperature=None, top_k=None, seed: int | list[int] = 0, num_nodes="auto", top_p=None,
                  fill: bool = False, input_ids=None, pixels: bool = True) -> Iterator[tuple[list[int], PipelineOutput]]:
    """Text `prompts` (or `input_ids` rows) through one session of `batch_size` rows -> yields (prompt indices,
    their PipelineOutput) as images finish, in the order they finish. Arguments as ImagePipeline.generate's; fill:
    fewer prompts than batch_size still run batch_size rows (repeats of its last prompt, dropped), so
    a compiled step keeps one shape; pixels: decode the images (False: tokens only, as generate_tokens). Every
    argument is checked before any model work."""
    mode = default_mode(pipe.heads is not None) if mode is None else mode
    batch_size = as_int("batch_size", batch_size, 1)
    as_bool("fill", fill)
    if as_bool("pixels", pixels):
        pipe.checked_decode_batch()
    grid, sampling = pipe._prepare(mode, size, cfg_scale, temperature, top_k, top_p)
    rows = pipe.prompt_rows(prompts, input_ids, grid)
    pipe._check_context(rows, grid)
    seeds = image_seeds("seed", seed, len(rows.conditional))
    queue = list(range(len(rows.conditional)))  # prompt indices in the order they take rows
    width = batch_size if fill else min(batch_size, len(queue))
    room = _prompt_length(rows, queue, sampling.uses_cfg)  # the longest prompt fits every refill
    nodes = pipeline_num_nodes(pipe, mode, grid, num_nodes, width, sampling, DEFAULT_NUM_NODES, room,
                               continuous=True)
    decoder = pipe._decoder_of_size(mode, grid, nodes)
    for members, out, seconds in _run_session(pipe, decoder, rows, queue, seeds, sampling, width, room):
        res = pipe._collect([out], members, rows, seconds)
        if pixels:
            res.pixels = pipe.decode_pixels(res.codes)
            res.images = None if res.pixels is None else pipe.to_images(res.pixels)
        res.num_nodes, res.mode = [decoder.tree.num_nodes] * len(members), mode
        yield sorted(members), res


def _run_session(pipe, decoder, rows: PromptRows, queue: list[int], seeds: list[int], sampling, width: int,
               room: int):
    """-> (prompt indices, their HawkOutput, seconds since the previous images finished) as images finish."""
    first = queue[:width] + [queue[min(width, len(queue)) - 1]] * max(0, width - len(queue))
    holder = {row: (i if row < len(queue) else None) for row, i in enumerate(first)}  # None: a filler row
    waiting = list(queue[width:])
    ids, mask, negative, negative_mask = _stack(rows, first, sampling.uses_cfg, pipe.device)
    clock = time.perf_counter()
    session = decoder.start(ids, negative, sampling.cfg_scale, sampling.temperature, sampling.top_k,
                            sampling.top_p, seed=[seeds[i] for i in first], attention_mask=mask,
                            max_prompt_length=room, negative_attention_mask=negative_mask)
    idle_steps, body = 0, decoder.grid.num_body_tokens
    while any(i is not None for i in holder.values()):
        done = session.finished_rows()
        if not done:
            session.check()  # a NaN target law is named as such, not as a stall
            if idle_steps > body:  # every step commits >= 1 token per unfinished row
                raise RuntimeError(f"generate: the decode steps made no progress for {idle_steps} steps")
            steps = decoder.sync_every if session.graphed else 1
            session.run(steps)
            idle_steps += steps
            continue
        idle_steps = 0
        real = [row for row in done if holder[row] is not None]
        if len(real) < len(done):
            session.take([row for row in done if holder[row] is None])  # fillers: freed, never reported
        if real:
            now = time.perf_counter()
            yield [holder[row] for row in real], session.take(real), now - clock
            clock = now
        new, waiting = waiting[: len(done)], waiting[len(done):]
        refill = done[: len(new)]
        holder.update({row: None for row in done})
        if new:  # the freed rows take the next prompts (seconds: counted in the next images' share)
            ids, mask, negative, negative_mask = _stack(rows, new, sampling.uses_cfg, pipe.device)
            decoder.refill(session, refill, ids, negative, seed=[seeds[i] for i in new], attention_mask=mask,
                           negative_attention_mask=negative_mask)
            holder.update(zip(refill, new))
