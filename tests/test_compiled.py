"""The compiled step (engine/compiled.py): torch.compile's inductor backend, fullgraph, over the whole step (the
backbone forward included) gives the eager step's tokens; a failed compile falls back where asked and says so.
Compiling costs about a minute per (mode, sampling) on 2 CPU cores, so CI compiles the two configurations the
issue names (ar and hawk+jacobi, greedy and sampled, batch 2, CFG on); the full matrix is `slow`."""
import pytest
import torch
from torch._dynamo.utils import counters

import hawk_kernels as hk
from benchmarks import step_ops
from hawk_kernels.drafts import needs_heads
from tests.test_decoder import _exact_image_law
from tests.test_verify import _chi2_pvalue
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPT = torch.tensor([[1, 5, 6, 4]])


def _decoders(mode, **kw):
    model, grid = tiny_backbone(), tiny_grid()
    heads = tiny_heads() if needs_heads(mode) else None
    make = lambda compile: hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=8, compile=compile, **kw)
    return make(True), make(False)


def _compiled_equals_eager(mode, batch, temperatures):
    """Returns the decoders (compiled, eager), compiled for every sampling configuration here."""
    compiled, eager = _decoders(mode)
    counters.clear()
    for temperature in temperatures:
        kw = dict(cfg_scale=2.0, temperature=temperature, seed=3, top_k=None if temperature == 0 else 20)
        got = compiled.generate(PROMPT.repeat(batch, 1), **kw)
        want = eager.generate(PROMPT.repeat(batch, 1), **kw)
        assert got.compiled and not want.compiled and got.fallbacks == {}, got.step_engine
        assert got.step_engine == "compiled"
        assert torch.equal(got.sequences, want.sequences), (mode, temperature)
        assert got.accepted_lengths == want.accepted_lengths
    assert dict(counters["graph_break"]) == {}  # fullgraph: one graph per configuration, no break
    return compiled, eager


@pytest.mark.parametrize("mode", ["ar", "hawk+jacobi"])
def test_compiled_step_equals_eager(mode):
    """... and runs far fewer operator calls per step (benchmarks/step_ops.py counts them; no new compile: the
    same shapes and sampling as above)."""
    compiled, eager = _compiled_equals_eager(mode, batch=2, temperatures=(0.0, 1.0))
    kw = dict(cfg_scale=2.0, temperature=1.0, seed=3, top_k=20)
    fused, plain = step_ops.count(compiled, PROMPT.repeat(2, 1), **kw), step_ops.count(eager, PROMPT.repeat(2, 1), **kw)
    assert 0 < fused < plain / 3, (fused, plain)


@pytest.mark.cuda
def test_cuda_compiled_step_is_captured_in_a_graph():
    """On CUDA compile="auto" compiles and the compiled step is captured in a CUDA graph (the hawk:: ops' fake
    kernels keep it one graph): the replays give the compiled step's eager tokens bit for bit, hawk+jacobi sampled,
    batch 2, CFG on, with no fallback. One configuration: each decoder compiles (tens of seconds on a GPU host).
    (Compiled vs uncompiled tokens: the float64 CPU tests above; in float32 a fused reduction may round
    differently. The 7B compiled + graphed steps: scripts/gpu_check.sh's e2e_7b.)"""
    model, grid = tiny_backbone(dtype=torch.float32).cuda(), tiny_grid()
    heads = tiny_heads(dtype=torch.float32).cuda()
    make = lambda graphs: hk.HawkDecoder(model, heads, grid, mode="hawk+jacobi", num_nodes=8, cuda_graphs=graphs)
    kw = dict(cfg_scale=2.0, temperature=1.0, seed=3, top_k=20)
    prompts = PROMPT.repeat(2, 1).cuda()
    got, want = make(True).generate(prompts, **kw), make(False).generate(prompts, **kw)
    assert got.step_engine == "compiled + CUDA graph" and want.step_engine == "compiled", got.step_engine
    assert torch.equal(got.sequences, want.sequences) and got.accepted_lengths == want.accepted_lengths


@pytest.mark.slow
@pytest.mark.parametrize("mode", hk.MODES)
@pytest.mark.parametrize("batch", [1, 4])
def test_compiled_step_equals_eager_every_mode(mode, batch):
    _compiled_equals_eager(mode, batch=batch, temperatures=(0.0, 1.0))


def test_a_failed_compile_falls_back_and_says_why(monkeypatch):
    compiled, _ = _decoders("hawk")

    def fails(plan, state):
        raise torch._dynamo.exc.Unsupported("a construct dynamo cannot trace")

    monkeypatch.setattr(compiled.compiled_step, "_compiled", fails)
    with pytest.raises(RuntimeError, match="compile=True: compiling the decode step failed"):
        compiled.generate(PROMPT, temperature=0)
    compiled.compiled_step.required = False  # what compile="auto" builds
    compiled.compiled_step.fallback_reason = None
    out = compiled.generate(PROMPT, temperature=0)
    eager = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk", num_nodes=8).generate(
        PROMPT, temperature=0)
    assert not out.compiled and torch.equal(out.sequences, eager.sequences)
    assert "a construct dynamo cannot trace" in out.fallbacks["compile"] and out.step_engine.startswith("eager (")
    with pytest.raises(ValueError, match="compile"):
        hk.HawkDecoder(tiny_backbone(), None, tiny_grid(), mode="ar", compile="yes")
    assert hk.HawkDecoder(tiny_backbone(), None, tiny_grid(), mode="ar").compiled_step is None  # auto: not on CPU


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hawk", "hawk+jacobi"])
def test_compiled_images_follow_the_exact_ar_law(mode):
    """The end-to-end law test of test_decoder / test_jacobi, through the compiled step. Negative control: the
    same test rejects the compiled step's images sampled at temperature 1.3."""
    model = tiny_backbone()
    grid = hk.ImageGrid(height=2, width=2, row_end_token=3, image_token_range=(45, 48))
    sampling = hk.SamplingConfig(cfg_scale=2.0)
    probs, images = _exact_image_law(model, grid, sampling)
    heads = tiny_heads(num_horizontal=3, vertical_depth=1)
    dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=8, compile=True)
    index = {img: i for i, img in enumerate(images)}
    counts = {1.0: torch.zeros(len(images), dtype=torch.int64), 1.3: torch.zeros(len(images), dtype=torch.int64)}
    for temperature, tally in counts.items():
        for seed in range(5):
            out = dec.generate(PROMPT.expand(400, -1), cfg_scale=2.0, temperature=temperature,
                               seed=seed * 400)  # disjoint image seeds
            assert out.compiled
            for img in (out.image_tokens.reshape(400, -1) - 45).tolist():
                tally[index[tuple(img)]] += 1
    assert _chi2_pvalue(counts[1.0], probs, bins=12) > 1e-4
    assert _chi2_pvalue(counts[1.3], probs, bins=12) < 1e-6


def test_the_pipelines_take_the_same_word():
    """load_pipeline / load_demo_pipeline(compile=...) reach every decoder the pipeline builds."""
    pipe = hk.load_demo_pipeline(device="cpu", compile=False)
    assert pipe.compile is False and pipe.decoder("hawk", num_nodes=8).compiled_step is None
    pipe.compile = True  # a decoder per word: the eager one above is not reused
    assert pipe.decoder("hawk", num_nodes=8).compiled_step is not None
    with pytest.raises(ValueError, match="compile"):
        hk.load_demo_pipeline(device="cpu", compile="fast")
