"""Continuous batching: a finished row of a DecodeSession is taken and given to a new image (HawkDecoder.refill),
which then decodes beside the others exactly as it would alone -- its tokens and its statistics -- because every
row keeps its own seed, Philox offset, cache rows, draft memory and counts. The tiny model runs in float64, so
batched matmul rounding cannot flip a draw."""
import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.drafts import needs_heads
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPTS = [torch.tensor(p) for p in ([1, 5, 6, 4], [2, 7, 9, 4], [1, 1, 3, 4], [3, 6, 2, 8, 5, 4], [2, 4])]
SAMPLED = dict(cfg_scale=2.0, temperature=1.0, top_k=20)


def _decoder(mode, **kw):
    return hk.HawkDecoder(tiny_backbone(), tiny_heads() if needs_heads(mode) else None, tiny_grid(), mode=mode,
                          num_nodes=8, **kw)


def _run_with_refills(dec, batch: int, sampling: dict, seeds: list[int], device="cpu"):
    """Every prompt of PROMPTS through `batch` rows, a finished row refilled with the next prompt (all rows that
    finished at a step in one refill) -> ({prompt index: its output}, the session)."""
    session = dec.start(torch.stack(PROMPTS[:batch]).to(device), seed=seeds[:batch], max_prompt_length=8,
                        **sampling)
    holder = dict(enumerate(range(batch)))  # row -> prompt index
    waiting, outputs = list(range(batch, len(PROMPTS))), {}
    for _ in range(200):
        session.run(1)
        done = session.finished_rows()
        for row in done:
            outputs[holder.pop(row)] = session.take([row])
        refill = done[: len(waiting)]
        if refill:
            new, waiting = waiting[: len(refill)], waiting[len(refill):]
            ids, mask = _left_padded([PROMPTS[i] for i in new])
            dec.refill(session, refill, ids.to(device), seed=[seeds[i] for i in new], attention_mask=mask.to(device))
            holder.update(zip(refill, new))
        if len(outputs) == len(PROMPTS):
            return outputs, session
    raise AssertionError("the refilled session did not finish")


def _left_padded(prompts):
    width = max(len(p) for p in prompts)
    ids = torch.stack([torch.nn.functional.pad(p, (width - len(p), 0)) for p in prompts])
    mask = torch.stack([torch.arange(width) >= width - len(p) for p in prompts]).long()
    return ids, mask


@pytest.mark.parametrize("mode", ["ar", "hawk", "jacobi", "hawk+jacobi"])
@pytest.mark.parametrize("greedy", [False, True])
def test_a_refilled_image_is_the_image_decoded_alone(mode, greedy):
    dec = _decoder(mode)
    sampling = dict(SAMPLED, temperature=0.0) if greedy else SAMPLED
    seeds = [7, 8, 9, 10, 11]
    outputs, _ = _run_with_refills(dec, 2, sampling, seeds)
    for i, prompt in enumerate(PROMPTS):
        alone = dec.generate(prompt[None], seed=seeds[i], **sampling)
        got = outputs[i]
        assert torch.equal(got.image_tokens, alone.image_tokens), (mode, i)
        assert got.sequences[0, -alone.sequences.shape[1]:].tolist() == alone.sequences[0].tolist()
        assert got.num_forward_passes == alone.num_forward_passes
        assert got.accepted_lengths == alone.accepted_lengths
        assert got.accepted_by_source == alone.accepted_by_source
        assert got.rank_tried == alone.rank_tried and got.rank_accepted == alone.rank_accepted


def test_refills_save_passes_when_rows_finish_apart():
    """The point of it: with jacobi (rows finish after different numbers of passes), 5 images through 2 rows take
    fewer session steps than 3 fixed batches of 2, 2 and 1, each waiting for its slowest row."""
    dec = _decoder("jacobi")
    seeds = [7, 8, 9, 10, 11]
    ids, mask = _left_padded(PROMPTS)
    batches = [dec.generate(ids[i:i + 2], seed=seeds[i:i + 2], attention_mask=mask[i:i + 2], **SAMPLED)
               for i in range(0, 5, 2)]
    fixed = sum(out.num_forward_passes for out in batches)
    _, session = _run_with_refills(dec, 2, SAMPLED, seeds)
    assert int(session.state.stats.step_index) < fixed, (int(session.state.stats.step_index), fixed)


def test_refill_arguments():
    dec = _decoder("jacobi")
    session = dec.start(torch.stack(PROMPTS[:2]), seed=[1, 2], **SAMPLED)
    with pytest.raises(ValueError, match=r"rows: rows \[0\] hold images not taken"):
        dec.refill(session, [0], PROMPTS[2][None])
    with pytest.raises(ValueError, match=r"rows: rows \[0\] are not finished"):
        session.take([0])
    with pytest.raises(ValueError, match=r"rows: expected distinct row indices in \[0, 2\)"):
        session.take([0, 0])
    with pytest.raises(TypeError, match=r"rows: expected a list of row indices"):
        session.take(0)
    while len(session.finished_rows()) < 2:
        session.run(1)
    session.take([0, 1])
    with pytest.raises(ValueError, match=r"input_ids: 1 prompts for 2 rows"):
        dec.refill(session, [0, 1], PROMPTS[2][None])
    too_long = torch.ones(1, session.state.cache.capacity, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"input_ids: prompts of .* do not fit the session's cache"):
        dec.refill(session, [1], too_long)
    with pytest.raises(ValueError, match=r"session: expected a DecodeSession started by this decoder"):
        _decoder("jacobi").refill(session, [1], PROMPTS[2][None])
    dec.refill(session, [1], PROMPTS[2][None], seed=5)
    assert session.finished_rows() == []  # row 0 was taken and stays free; row 1 decodes its new image


@pytest.mark.parametrize("fill", [False, True])
def test_stream_images_gives_each_image_as_generate_does_alone(fill):
    """The pipelines' continuous batching (pipelines/continuous.py), on the bundled model: 5 prompts through 2
    rows (fill: 4 rows for 5 prompts, then rows idle), each image's tokens and passes equal to generate()'s for that
    prompt alone with its seed and the same tree size."""
    from hawk_kernels.pipelines import stream_images

    pipe = hk.load_demo_pipeline()
    prompts = [f"a handwritten digit {word}" for word in ("three", "seven", "zero", "one", "eight")]
    got = {}
    for members, res in stream_images(pipe, prompts, 4 if fill else 2, mode="jacobi", seed=[3, 4, 5, 6, 7],
                                      num_nodes=8, fill=fill):
        assert members == sorted(members) and len(res.images) == len(members)
        got.update({i: (res.image_tokens[k], res.num_forward_passes[k], res.num_nodes[k])
                    for k, i in enumerate(members)})
    assert sorted(got) == list(range(5))
    for i, prompt in enumerate(prompts):
        alone = pipe.generate_tokens([prompt], mode="jacobi", seed=3 + i, num_nodes=8)
        assert torch.equal(got[i][0], alone.image_tokens[0]), i
        assert got[i][1] == alone.num_forward_passes[0] and got[i][2] == alone.num_nodes[0]


def test_generate_with_a_batch_size_streams_the_prompts_through_its_rows():
    """generate(batch_size=2): 5 prompts through a session of 2 rows, returned in prompt order, each image (tokens,
    its passes, its tree size) as generate() makes it alone; the call counts the session's passes; bad sizes and a
    decoder beside batch_size are refused by name before any model work."""
    pipe = hk.load_demo_pipeline()
    prompts = [f"a handwritten digit {word}" for word in ("three", "seven", "zero", "one", "eight")]
    out = pipe.generate(prompts, mode="hawk+jacobi", seed=[3, 4, 5, 6, 7], num_nodes=8, batch_size=2)
    assert len(out.images) == 5 and out.image_tokens.shape[0] == 5 and out.mode == "hawk+jacobi"
    for i, prompt in enumerate(prompts):
        alone = pipe.generate_tokens([prompt], mode="hawk+jacobi", seed=3 + i, num_nodes=8)
        assert torch.equal(out.image_tokens[i], alone.image_tokens[0]), i
        assert torch.equal(out.sequences[i], alone.sequences[0]), i
        assert out.num_forward_passes[i] == alone.num_forward_passes[0] and out.num_nodes[i] == alone.num_nodes[0]
    # 2 rows for 5 images: more passes than the slowest image, fewer than the images' passes one after another
    assert max(out.num_forward_passes) < out.total_forward_passes < sum(out.num_forward_passes)
    for kwargs, error, match in [(dict(batch_size=0), ValueError, "batch_size"),
                                 (dict(batch_size=2.5), TypeError, "batch_size"),
                                 (dict(batch_size=2, num_nodes="many"), TypeError, "num_nodes"),
                                 (dict(batch_size=2, decoder=pipe.decoder("ar")), ValueError, "decoder: not with")]:
        with pytest.raises(error, match=match):
            pipe.generate(prompts, **kwargs)


@pytest.mark.slow
def test_a_compiled_session_refills_without_compiling_again():
    """compile=True (inductor, the whole step): refills write the state in place, so the compiled step runs on
    without a recompile, and every image still equals the eager decode of it alone."""
    dec = _decoder("hawk+jacobi", compile=True)
    seeds = [7, 8, 9, 10, 11]
    outputs, session = _run_with_refills(dec, 2, SAMPLED, seeds)
    assert dec.compiled_step.active and session.state.stats.step_index > 0
    compiled_once = dec.compiled_step.compile_seconds
    eager = _decoder("hawk+jacobi")
    for i, prompt in enumerate(PROMPTS):
        alone = eager.generate(prompt[None], seed=seeds[i], **SAMPLED)
        assert torch.equal(outputs[i].image_tokens, alone.image_tokens), i
    _run_with_refills(dec, 2, SAMPLED, seeds)  # a second run: the same shapes, nothing compiles
    assert dec.compiled_step.compile_seconds == compiled_once


@pytest.mark.cuda
def test_a_graphed_session_refills_in_place():
    """On CUDA the steps replay one captured graph; refills write the captured buffers in place, so the replays
    decode the new images: the same tokens as the same refills stepped without graphs (float32 on both sides; not
    compiled, to keep this in tests_cuda's minutes: the compiled session's refills are the slow CPU test above)."""
    model, grid = tiny_backbone(dtype=torch.float32).cuda(), tiny_grid()
    heads = tiny_heads(dtype=torch.float32).cuda()
    seeds = [7, 8, 9, 10, 11]
    runs = {}
    for graphs in (True, False):
        dec = hk.HawkDecoder(model, heads, grid, mode="hawk+jacobi", num_nodes=8, cuda_graphs=graphs, compile=False)
        outputs, session = _run_with_refills(dec, 2, SAMPLED, seeds, device="cuda")
        assert session.graphed == graphs
        runs[graphs] = outputs
    for i in range(len(PROMPTS)):
        assert torch.equal(runs[True][i].image_tokens, runs[False][i].image_tokens), i
        assert runs[True][i].accepted_lengths == runs[False][i].accepted_lengths


def test_a_refill_holds_the_new_prompts_not_a_second_cache(monkeypatch):
    """A refill prefills its new images in a cache of their prompts' size and copies those slots: in AR every row
    finishes at the same step, and a whole-capacity cache for all of them would double a 7B batch's KV memory at
    each refill."""
    import hawk_kernels.decoder as decoder_module

    made, new_state = [], decoder_module.new_state

    def recording(plan, sampling, batch, capacity, *args):
        made.append((batch, capacity))
        return new_state(plan, sampling, batch, capacity, *args)

    dec = _decoder("ar")
    session = dec.start(torch.stack(PROMPTS[:2]), seed=[1, 2], max_prompt_length=300, **SAMPLED)
    while len(session.finished_rows()) < 2:
        session.run(1)
    session.take([0, 1])
    monkeypatch.setattr(decoder_module, "new_state", recording)
    dec.refill(session, [0, 1], torch.stack(PROMPTS[:2]), seed=[3, 4])
    assert made == [(2, 128)] and session.state.cache.capacity == 384
    while len(session.finished_rows()) < 2:
        session.run(1)
    out = session.take([0, 1])
    assert torch.equal(out.image_tokens, dec.generate(torch.stack(PROMPTS[:2]), seed=[3, 4], **SAMPLED).image_tokens)
