"""The three families at their released configurations (tests/real_shapes.py, issue 22), loaded through
`load_pipeline(directory)` as a user loads them: 2 layers and hidden 64, everything else released (vocabulary
sizes, special-token ids, prompt templates, processors, layouts, position ranges).

In CI: the released ids, prompts and layouts at the full-resolution grids; prompt -> PNG in `ar` and
`hawk+jacobi`, greedy, computed in float64 (weights stored bf16, so near-ties cannot flip an argmax), equal to
the family's own transformers generation (Janus, Emu3) or to each other (Lumina-mGPT: transformers has no
Chameleon image generation). Janus runs its full 24 x 24 image; Emu3 and Lumina-mGPT run the first rows of their
full-width layouts (2 x 90 and 4 x 48: same row stride, row-end and end tokens, size prompt), and their VQ
decoders are the released ones with 32 base channels (`vq="reduced"`: same codebooks, levels and attention).

`slow` (outside CI): the full images (Emu3 720 px = 8,190 tokens, Lumina-mGPT 768 px = 2,352), compared the same
way, with the released VQ decoders for Janus and Lumina-mGPT (Emu3's takes ~20 GB and ~25 min per image on a
CPU: benchmarks/real_shapes.py --decode-memory measures it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hawk_kernels.pipelines import load_pipeline
from tests.real_shapes import RELEASED_GRIDS, build
from tests.transformers_reference import janus_image_generate

PROMPTS = ["a red fox in the snow"]
MODES = ("ar", "hawk+jacobi")
CI_SIZES = {"janus": None, "emu3": (16, 720), "chameleon": (64, 768)}  # full width, first rows
FULL_SIZES = {"janus": None, "emu3": 720, "chameleon": 768}
CFG = {"janus": 5.0, "emu3": 3.0, "chameleon": 3.0}  # the families' defaults
HEADS = dict(num_horizontal=1, vertical_depth=1)  # untrained (see _generate): the test is exactness, not speed
NODES = 6  # a small tree: each step's heads and pool work scale with the real vocabularies


@pytest.fixture(scope="module")
def reduced_dirs(tmp_path_factory):
    return {family: build(family, tmp_path_factory.mktemp(f"real_{family}"), vq="reduced").directory
            for family in ("janus", "emu3", "chameleon")}


def _pipe(directory):
    """The checkpoint in float64. Random weights make greedy images cycle through a few codes, which no
    untrained draft predicts; Emu3's and Lumina-mGPT's image-token embeddings are scaled by 0.1 so the
    prediction leans on the prompt and the image comes out piecewise constant (Janus's already is), which the
    untrained heads of _generate draft: the verifier then accepts drafts and the Jacobi chain below them."""
    pipe = load_pipeline(directory, dtype="float64")
    if pipe.family != "janus":
        lo, hi = pipe.layout(None).image_token_range
        with torch.no_grad():
            pipe.model.get_input_embeddings().weight[lo:hi] *= 0.1
    return pipe


def _generate(pipe, family, size, tmp_path):
    """prompt -> PNG in `ar`, then in `hawk+jacobi`, greedy; returns {mode: PipelineOutput} (PNGs under tmp_path).
    Heads are untrained (HEADS): shared-lm_head heads start as the lm_head (they draft "the next code again"),
    Janus's own projections are set to draft the AR image's most common code (_constant_heads), so that in these
    piecewise-constant images (_pipe) the drafts are accepted and the Jacobi chain below them is verified."""
    outs = {}
    for mode in MODES:
        if mode != "ar":
            heads = pipe.make_heads(**HEADS)
            if heads.proj_weight is not None:
                _constant_heads(heads, int(outs["ar"].codes.flatten().mode().values))
            pipe.set_heads(heads)
        out = pipe.generate(PROMPTS, mode=mode, size=size, temperature=0, cfg_scale=CFG[family], num_nodes=NODES)
        path = tmp_path / f"{family}_{mode}.png"
        out.images[0].save(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        outs[mode] = out
    assert outs["hawk+jacobi"].tokens_per_pass > 1.05, "the drafts were hardly accepted: little deep was verified"
    assert outs["hawk+jacobi"].outputs[0].accepted_by_source.get("jacobi", 0) > 0
    return outs


def _constant_heads(heads, code: int) -> None:
    """Head-owned projections that draft `code` everywhere: the ResBlock adds 8 along one axis, which only the
    projection row of `code` reads."""
    with torch.no_grad():
        heads.res_weight.zero_()
        heads.res_bias.zero_()
        heads.res_bias[:, :, 0] = 8.0
        heads.proj_weight.zero_()
        heads.proj_weight[:, code, 0] = 1.0


# --- the released configuration --------------------------------------------------------------------------------
def test_released_ids_prompts_and_layouts(reduced_dirs):
    """What each family's loader reads from a released checkpoint: vocabulary sizes, special ids, the layout at
    the released resolution, and the prompt rows the pipelines build from text."""
    janus = load_pipeline(reduced_dirs["janus"])
    assert janus.model.config.text_config.vocab_size == 102400 and janus.model.dtype == torch.bfloat16
    assert (janus.bos_id, janus.pad_id, janus.boi_id) == (100000, 100002, 100016)
    assert janus.image_size == 384 and janus.layout(None).num_body_tokens == 576
    assert janus.layout(None).image_token_range == (0, 16384)
    rows = janus.prompt_rows(PROMPTS, None, janus.layout(None))
    text = janus.processor.tokenizer.decode(rows.conditional[0])
    assert text == "<｜begin▁of▁sentence｜><|User|>: a red fox in the snow\n\n<|Assistant|>:<begin_of_image>"
    assert set(rows.unconditional[0][1:-1]) == {100002} and rows.unconditional[0][0] == 100000

    emu3 = load_pipeline(reduced_dirs["emu3"])
    grid = emu3.layout(None)  # the processor's default area: 720 x 720 px
    assert (grid.height, grid.width, grid.row_end_token, grid.image_end_token) == (90, 90, 151846, 151847)
    assert grid.image_token_range == (151854, 151854 + 32768) and grid.num_body_tokens == 8190
    assert emu3.model.config.text_config.vocab_size == 184622
    row = emu3.prompt_rows(PROMPTS, None, grid).conditional[0]
    assert row[0] == 151849 and row[-1] == 151851  # BOS ... <|image token|>
    assert emu3.processor.tokenizer.decode(row[len(row) - 7:]) == "<|image start|>90*90<|image token|>"
    assert grid.num_body_tokens + len(row) + 3 <= emu3.model.config.text_config.max_position_embeddings

    lumina = load_pipeline(reduced_dirs["chameleon"])
    grid = lumina.layout(None)
    assert (grid.height, grid.width, grid.row_end_token, grid.image_end_token) == (48, 48, 8803, 8196)
    assert grid.image_token_range == (4, 8196) and grid.num_body_tokens == 2352
    row = lumina.prompt_rows(PROMPTS, None, grid).conditional[0]
    assert row[0] == 0 and row[-4:] == [8710, 8197, 8828, 8828]  # <reserved08706>, image start, 48 and 48 cells
    assert lumina.processor.decode(row[1:-4]) == ("Generate an image of 768x768 according to the following "
                                                 "prompt:\na red fox in the snow")
    assert lumina.vqgan_path.relative_to(reduced_dirs["chameleon"]) == Path("chameleon/tokenizer/vqgan.ckpt")
    codes = lumina.codes(torch.arange(4, 8196).view(1, 1, -1))
    assert torch.equal(codes.flatten(), torch.arange(8192))  # Chameleon's ids hold the codes in order
    for family, pipe in (("janus", janus), ("emu3", emu3), ("chameleon", lumina)):
        released = RELEASED_GRIDS[family]
        grid = pipe.layout(released["size"])
        assert (grid.height, grid.width, grid.row_end_token, grid.num_image_codes) == (
            released["height"], released["width"], released["row_end"], released["codes"]), family


# --- prompt -> PNG, greedy = the family's own generation ----------------------------------------------------------
def _janus_reference(pipe, cfg):
    rows = pipe.prompt_rows(PROMPTS, None, pipe.layout(None))
    ids = torch.tensor(rows.conditional)
    return janus_image_generate(pipe.model, ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                guidance_scale=cfg)


def _check_janus(pipe, tmp_path):
    expected = _janus_reference(pipe, CFG["janus"])
    outs = _generate(pipe, "janus", None, tmp_path)
    for mode, out in outs.items():
        assert torch.equal(out.image_tokens.flatten(1), expected), mode
        assert out.images[0].size == (384, 384)


def _check_emu3(pipe, size, tmp_path):
    from tests.test_pipelines import _emu3_reference

    height, width = (size, size) if isinstance(size, int) else size
    grid = pipe.layout(size)
    rows = pipe.prompt_rows(PROMPTS, None, grid)
    expected = _emu3_reference(pipe, rows.conditional[0], rows.unconditional[0], CFG["emu3"], grid.height,
                               grid.width)
    outs = _generate(pipe, "emu3", size, tmp_path)
    for mode, out in outs.items():
        got = out.sequences[0][len(rows.conditional[0]):]
        assert got.tolist() == expected[:-2].tolist(), mode  # ours stop at end-of-frame
        assert out.images[0].size == (width, height)


def _check_lumina(pipe, size, tmp_path):
    height, width = (size, size) if isinstance(size, int) else size
    grid = pipe.layout(size)
    outs = _generate(pipe, "chameleon", size, tmp_path)
    ar, jac = outs["ar"], outs["hawk+jacobi"]
    assert torch.equal(ar.sequences[0], jac.sequences[0]) and int(ar.sequences[0][-1]) == grid.image_end_token
    body = ar.sequences[0][-grid.num_body_tokens - 1:-1].view(grid.height, grid.row_stride)
    assert (body[:, -1] == grid.row_end_token).all()
    assert ar.images[0].size == (width, height) and torch.equal(ar.pixels, jac.pixels)


def test_janus_pro_384px_greedy_equals_transformers_generate(reduced_dirs, tmp_path):
    _check_janus(_pipe(reduced_dirs["janus"]), tmp_path)


def test_emu3_gen_full_width_rows_greedy_equal_transformers_generate(reduced_dirs, tmp_path):
    _check_emu3(_pipe(reduced_dirs["emu3"]), CI_SIZES["emu3"], tmp_path)


def test_lumina_mgpt_full_width_rows_prompt_to_png(reduced_dirs, tmp_path):
    _check_lumina(_pipe(reduced_dirs["chameleon"]), CI_SIZES["chameleon"], tmp_path)


def test_pixels_are_decoded_in_chunks_of_decode_batch(reduced_dirs):
    """The VQ decoders' peak memory grows with their batch (measured at the released configurations, float32 on
    the CPU: Lumina-mGPT 1.65 -> 3.16 GB for 1 -> 2 images of 768 px, Janus 0.48 -> 0.72 GB at 384 px, Emu3 20.9 GB
    for ONE 720 px image), so a batch of images is decoded `decode_batch` at a time: every decoder call gets at
    most that many, and the pixels are those of one call over the whole batch."""
    for family, size in CI_SIZES.items():
        pipe = load_pipeline(reduced_dirs[family], dtype="float32")
        grid = pipe.layout(size)
        codes = torch.randint(0, grid.num_image_codes, (2, grid.height, grid.width),
                              generator=torch.Generator().manual_seed(0))
        pipe.decode_batch = 2
        whole = pipe.decode_pixels(codes)  # one call
        owner, name = {"janus": lambda: (pipe.model, "decode_image_tokens"),
                       "emu3": lambda: (pipe.model.model.vqmodel, "decode"),
                       "chameleon": lambda: (pipe.vqgan, "forward")}[family]()
        original, calls = getattr(owner, name), []

        def counting(x, *args, _original=original, **kwargs):
            calls.append(x.shape[0])
            return _original(x, *args, **kwargs)

        setattr(owner, name, counting)
        pipe.decode_batch = 1
        chunked = pipe.decode_pixels(codes)
        assert calls == [1, 1], family
        # float32 convolutions of batch 1 and 2 may take different algorithms (by CPU and torch version): up to 3.6e-5
        # apart on Lumina-mGPT's VQGAN, values up to 4; a chunking error moves pixels by O(1)
        assert chunked.shape == whole.shape and torch.allclose(chunked, whole, atol=2e-4, rtol=0), family
    from hawk_kernels.pipelines.emu3 import Emu3Pipeline
    from hawk_kernels.pipelines.janus import JanusPipeline
    from hawk_kernels.pipelines.lumina import LuminaPipeline

    assert (JanusPipeline.decode_batch, Emu3Pipeline.decode_batch, LuminaPipeline.decode_batch) == (16, 1, 4)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_full_resolution(family, tmp_path):
    """Outside CI: the full images (Janus 384 px, Emu3 720 px = 8,190 tokens, Lumina-mGPT 768 px = 2,352),
    compared as in CI, with the released VQ decoders for Janus and Lumina-mGPT. Emu3's released decoder (256
    base channels, 4 frames at 720 px: about 15 TFLOP per image) would take hours in float64 on a CPU, so Emu3
    decodes with vq="reduced" here too; benchmarks/real_shapes.py runs the released one."""
    vq = "reduced" if family == "emu3" else "full"
    pipe = _pipe(build(family, tmp_path / "model", vq=vq).directory)
    check = {"janus": lambda: _check_janus(pipe, tmp_path),
             "emu3": lambda: _check_emu3(pipe, FULL_SIZES["emu3"], tmp_path),
             "chameleon": lambda: _check_lumina(pipe, FULL_SIZES["chameleon"], tmp_path)}[family]
    check()


# --- the benchmark's CPU smoke run --------------------------------------------------------------------------------
def test_benchmark_smoke(tmp_path):
    """benchmarks/real_shapes.py --smoke: the code path of the --full GPU run (build, every mode, seconds and peak
    memory per image, transformers generate; LlamaGen-XL and -3B with upstream's generate on the same weights, and
    LlamaGen-XL t2i from a text prompt beside upstream's caption path + generate) on the reduced models, in a
    subprocess as a user starts it."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "benchmarks/real_shapes.py", "--smoke", "--out", str(tmp_path)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    report = json.loads((tmp_path / "real_shapes_smoke_cpu.json").read_text())
    assert report["smoke"] is True and report["seconds"] < 120  # ~25 s of CPU on 2 idle cores
    assert list(report["families"]) == ["janus", "chameleon", "emu3", "llamagen", "llamagen_3b",
                                        "llamagen_t2i"]  # 7B ones first
    for family in report["families"]:
        runs = report["families"][family]["runs"]
        assert {r["mode"] for r in runs} >= {"ar", "hawk", "hawk+jacobi"}, family
        for run in runs:
            assert run["seconds_per_image"] > 0 and run["peak_memory_bytes"] > 0, run
            assert (tmp_path / run["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(report["families"]["emu3"]["transformers"]["ms_per_token"])
    assert np.isfinite(report["families"]["janus"]["transformers"]["ms_per_token"])  # on transformers 5.17 too
    for family in ("llamagen", "llamagen_3b"):  # a class label; upstream's own loop beside our modes
        result = report["families"][family]
        assert result["prompt"] == 207 and result["grid"]["image_codes"] == 16384, family
        assert result["upstream"]["tokens"] == 16 and result["upstream"]["pixels"] == [64, 64], family
        assert result["upstream"]["seconds_per_image"] > 0 and result["upstream"]["peak_memory_bytes"] > 0, family
    t2i = report["families"]["llamagen_t2i"]  # a text prompt through T5; upstream's caption path + generate beside
    assert t2i["prompt"] == report["prompt"] and t2i["grid"]["image_codes"] == 16384
    assert t2i["upstream"]["tokens"] == 16 and t2i["upstream"]["pixels"] == [64, 64]
    assert t2i["upstream"]["seconds_per_image"] > 0 and "caption embeddings" in t2i["upstream"]["what"]


def test_a_failing_family_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    """benchmarks/real_shapes.py on the GPU runs three 7B families in one call: a family that raises (a real-shape
    bug, memory) is recorded with its error, the next family runs, the JSON is written and the run exits 1; a
    failure inside transformers' own generation is recorded beside our rows."""
    from benchmarks import real_shapes as bench

    def fake_family(family, *args):
        result = args[-1]
        result.update(released=bench.NAMES[family], runs=[dict(mode="ar", seconds_per_image=1.0)])
        if family == "janus":  # after its first mode
            raise RuntimeError("a bug at the real shape")
        return result

    monkeypatch.setattr(bench, "bench_family", fake_family)
    assert bench.main(["--smoke", "--out", str(tmp_path), "--families", "janus,chameleon"]) == 1
    report = json.loads((tmp_path / "real_shapes_smoke_cpu.json").read_text())
    janus = report["families"]["janus"]
    assert janus["failed"] == "RuntimeError: a bug at the real shape"
    assert janus["runs"] == [dict(mode="ar", seconds_per_image=1.0)]  # the row it finished first is kept
    assert any("fake_family" in line for line in janus["traceback"])
    assert report["families"]["chameleon"] == dict(released=bench.NAMES["chameleon"],
                                                   runs=[dict(mode="ar", seconds_per_image=1.0)])
    assert bench._guarded(lambda: 1 / 0, bench.Budget(None), 1.0) == {"failed": "ZeroDivisionError: division by zero"}
    assert "FAILED: janus" in capsys.readouterr().out


def test_a_memory_batch_that_does_not_fit_is_a_row_not_a_failed_family(monkeypatch):
    """A batch of 16 images that runs out of device memory (or that the decoder refuses as too big) is the memory target's measured miss: recorded as a row
    (mode, batch, the error) and the family's next rows still run."""
    from benchmarks import real_shapes as bench

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(bench, "run_memory_batch", out_of_memory)
    row = bench.memory_batch_row(None, "hawk", None, 16, 4, torch.device("cpu"), None)
    assert row == dict(mode="hawk", batch=16, rows=32, steps=4, device_total_bytes=None,
                       failed="out of memory: CUDA out of memory. Tried to allocate 2.00 GiB")
    from hawk_kernels.memory import CacheDoesNotFit

    def refused(*args):
        raise CacheDoesNotFit("input_ids: 16 images (32 rows with CFG) need a KV cache of 90.1 GB")

    monkeypatch.setattr(bench, "run_memory_batch", refused)  # the decoder's own check, before the allocator's
    assert bench.memory_batch_row(None, "ar", None, 16, 4, torch.device("cpu"), None)["failed"] == (
        "out of memory: input_ids: 16 images (32 rows with CFG) need a KV cache of 90.1 GB")
    monkeypatch.setattr(bench, "run_memory_batch", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # anything else is the family's failure, as before
        bench.memory_batch_row(None, "hawk", None, 16, 4, torch.device("cpu"), None)


def test_a_timeout_keeps_the_rows_finished_and_a_short_budget_starts_no_family(tmp_path, monkeypatch):
    """gpu_check's step limit ends the run with SIGTERM: the JSON is still written, with the rows of the family under
    way and why it stopped; a budget too short for a build and one image starts no family (each recorded)."""
    import signal

    from benchmarks import real_shapes as bench

    def stopped_half_way(family, *args):
        args[-1].update(released=bench.NAMES[family], runs=[dict(mode="ar", seconds_per_image=1.0)])
        os.kill(os.getpid(), signal.SIGTERM)  # the timeout, during the family's next image

    monkeypatch.setattr(bench, "bench_family", stopped_half_way)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit, match="stopped by signal"):
            bench.main(["--smoke", "--out", str(tmp_path), "--families", "janus,chameleon"])
    finally:
        signal.signal(signal.SIGTERM, handler)
    report = json.loads((tmp_path / "real_shapes_smoke_cpu.json").read_text())
    assert report["families"]["janus"]["runs"] == [dict(mode="ar", seconds_per_image=1.0)]
    assert "stopped by signal" in report["stopped"] and "chameleon" not in report["families"]

    monkeypatch.setattr(bench, "bench_family", lambda *a: pytest.fail("a family started with 1 s of budget"))
    try:
        assert bench.main(["--smoke", "--out", str(tmp_path), "--budget-s", "1"]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    report = json.loads((tmp_path / "real_shapes_smoke_cpu.json").read_text())
    assert all(r["skipped"].startswith("budget: ") for r in report["families"].values())
    assert list(report["families"]) == list(bench.ORDER)
