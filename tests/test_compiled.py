"""The compiled step (engine/compiled.py): torch.compile's inductor backend, fullgraph, over the whole step (the
backbone forward included) gives the eager step's tokens; a failed compile falls back where asked and says so.
Compiling costs about a minute per (mode, sampling) on 2 CPU cores, so CI compiles the two configurations the
issue names (ar and hawk+jacobi, greedy and sampled, batch 2, CFG on); the full matrix is `slow`."""
import re

import pytest
import torch
from torch._dynamo.utils import counters
from torch._inductor.utils import run_and_get_code
from transformers import LlamaConfig, LlamaForCausalLM

import hawk_kernels as hk
from benchmarks import step_ops
from benchmarks.cuda_codegen import state_buffers, whole_buffer_copies
from hawk_kernels.drafts import needs_heads
from hawk_kernels.engine import compiled as compiled_module
from tests.test_decoder import _exact_image_law
from tests.test_verify import _chi2_pvalue
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPT = torch.tensor([[1, 5, 6, 4]])


def _decoders(mode, compile=True, **kw):
    model, grid = tiny_backbone(), tiny_grid()
    heads = tiny_heads() if needs_heads(mode) else None
    make = lambda compile: hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=8, compile=compile, **kw)
    return make(compile), make(False)


def _state_copies(decoder, code: list[str], prompts, **kw) -> list[tuple]:
    """whole_buffer_copies of the code `decoder` compiled, against the state buffers of a session like it."""
    return whole_buffer_copies("\n".join(code), state_buffers(decoder.start(prompts, **kw)))


def test_the_copy_check_catches_a_scatter_into_an_input():
    """Negative control of whole_buffer_copies (it fails if inductor's output no longer matches its pattern): a
    scatter_ into an input compiles to a whole-buffer copy, the index_put_ the engine uses does not."""
    buf, where, values = torch.zeros(4, 8, 32), torch.tensor([[1], [3], [5], [7]]), torch.ones(4, 1, 32)

    def by_scatter(buf, where, values):
        buf.scatter_(1, where[..., None].expand(-1, -1, 32), values)

    def by_index_put(buf, where, values):
        buf.index_put_((torch.arange(4)[:, None], where), values)

    for fn, copies in ((by_scatter, [((4, 8, 32), "float32")]), (by_index_put, [])):
        torch._dynamo.reset()
        _, code = run_and_get_code(torch.compile(fn, fullgraph=True), buf, where, values)
        assert whole_buffer_copies("\n".join(code), [buf]) == copies, fn.__name__


def _compiled_equals_eager(mode, batch, temperatures):
    """Returns the decoders (compiled, eager), compiled for every sampling configuration here. The compiled
    step writes its state in place: no whole-buffer copy of the KV cache, body or any source's state."""
    compiled, eager = _decoders(mode)
    counters.clear()
    for temperature in temperatures:
        kw = dict(cfg_scale=2.0, temperature=temperature, seed=3, top_k=None if temperature == 0 else 20)
        got, code = run_and_get_code(compiled.generate, PROMPT.repeat(batch, 1), **kw)
        assert _state_copies(compiled, code, PROMPT.repeat(batch, 1), **kw) == [], (mode, temperature)
        want = eager.generate(PROMPT.repeat(batch, 1), **kw)
        assert got.compiled and not want.compiled and got.fallbacks == {}, got.step_engine
        assert got.compile_seconds > 0 and want.compile_seconds == 0  # each configuration here compiles once
        assert not compiled.compiled_step.regional  # the default: the whole step, the fastest step
        assert got.step_engine == "compiled"
        assert torch.equal(got.sequences, want.sequences), (mode, temperature)
        assert got.accepted_lengths == want.accepted_lengths
    assert dict(counters["graph_break"]) == {}  # fullgraph: one graph per configuration, no break
    # each graph went through AOT once: no analysis restarted (a 0-d float64 CPU tensor in the state made dynamo
    # trace the whole step twice, to specialise the symbolic float it gave the tensor's value)
    assert counters["aot_autograd"]["total"] == counters["stats"]["unique_graphs"], dict(counters["aot_autograd"])
    return compiled, eager


@pytest.mark.parametrize("mode", ["ar", "hawk+jacobi"])
def test_compiled_step_equals_eager(mode):
    """... and runs far fewer operator calls per step (benchmarks/step_ops.py counts them; no new compile: the
    same shapes and sampling as above)."""
    compiled, eager = _compiled_equals_eager(mode, batch=2, temperatures=(0.0, 1.0))
    kw = dict(cfg_scale=2.0, temperature=1.0, seed=3, top_k=20)
    # nothing recompiles for a longer prompt (the cache capacity rounds to the same size), another CFG scale
    # (a tensor), or, without heads, another temperature (with heads: temperature 1 vs other)
    counters.clear()
    longer = torch.tensor([[1, 5, 6, 7, 8, 4]]).repeat(2, 1)
    again = dict(kw, cfg_scale=3.5, temperature=0.7 if mode == "ar" else 1.0)
    outs = compiled.generate(longer, **kw), compiled.generate(PROMPT.repeat(2, 1), **again)
    assert all(out.compiled and out.compile_seconds == 0 for out in outs)
    assert dict(counters["stats"]).get("unique_graphs", 0) == 0, dict(counters["stats"])
    fused, plain = step_ops.count(compiled, PROMPT.repeat(2, 1), **kw), step_ops.count(eager, PROMPT.repeat(2, 1), **kw)
    assert 0 < fused < plain / 3, (fused, plain)


def _generated_code(decoder, prompts, **kw) -> str:
    """The code inductor generated for `decoder`'s step (one step of a fresh session), without file paths and
    graph counters."""
    _, code = run_and_get_code(decoder.start(prompts, **kw).run, 1)
    return re.sub(r"/tmp/\S+|# kernel path: .*|# AOT ID: .*", "", "\n".join(code))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_the_fusion_pass_limit_changes_no_kernel(device, monkeypatch):
    """compiled.INDUCTOR_OPTIONS caps the fusion pass's pairing (a third of a 32-layer compile at inductor's
    default): the generated code is the same as at the default, hawk+jacobi, sampled, CFG on, 4 layers."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=2))
    model = model.to(device, torch.float32).eval()
    heads = tiny_heads(dtype=torch.float32).to(device)
    kw = dict(cfg_scale=2.0, temperature=1.0, seed=3, top_k=20)
    codes = []
    for options in (compiled_module.INDUCTOR_OPTIONS, {}):
        monkeypatch.setattr(compiled_module, "INDUCTOR_OPTIONS", options)
        dec = hk.HawkDecoder(model, heads, tiny_grid(), mode="hawk+jacobi", num_nodes=8, compile=True,
                             cuda_graphs=False)
        codes.append(_generated_code(dec, PROMPT.repeat(2, 1).to(device), **kw))
    assert codes[0] == codes[1]
    assert compiled_module.INDUCTOR_OPTIONS == {}  # (the negative control: the patch took effect)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_a_compile_leaves_nothing_holding_the_state(device):
    """dynamo's tracing leaves reference cycles holding its example inputs, the session's whole state: at 7B and
    batch 16 a KV cache of tens of GB per compile, kept until Python's cyclic collector runs (num_nodes="auto"
    compiles one decoder per timed size). With the collector off, the state of a session whose step compiled (and,
    on CUDA, was captured in a graph and replayed) is freed as soon as the session is dropped."""
    import gc
    import weakref

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = tiny_backbone(dtype=torch.float32 if device == "cuda" else torch.float64).to(device)
    compiled = hk.HawkDecoder(model, None, tiny_grid(), mode="ar", compile=True)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        session = compiled.start(PROMPT.repeat(3, 1).to(device), cfg_scale=2.0, seed=3)
        session.run(3)  # the first step compiles (on CUDA the second captures, the third replays)
        assert compiled.compiled_step.compile_seconds > 0
        state = weakref.ref(session.state)
        del session
        assert state() is None
    finally:
        if was_enabled:
            gc.enable()


def test_an_inductor_option_this_torch_lacks_is_left_out(monkeypatch):
    """torch.compile raises at once on an option its inductor does not know (the GPU host runs an older torch than
    CI): such an option is left out, and the decoder is built."""
    monkeypatch.setattr(compiled_module, "INDUCTOR_OPTIONS", {"an_option_no_torch_has": 1})
    assert _decoders("ar")[0].compiled_step.active


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


def test_regional_compile_equals_eager():
    """compile="regional": the decoder layers compile once as one region (faster to compile); the step gives the
    eager step's tokens, greedy and sampled, and writes its state in place like the whole-step compile."""
    compiled, eager = _decoders("ar", compile="regional")
    for temperature in (0.0, 1.0):
        kw = dict(cfg_scale=2.0, temperature=temperature, seed=3)
        got, code = run_and_get_code(compiled.generate, PROMPT.repeat(2, 1), **kw)
        step = compiled.compiled_step
        assert step.regional and step.regional_failure is None and got.step_engine == "compiled"
        assert all("forward" in vars(layer) for layer in step.layers)  # marked
        assert any("subgraph" in c for c in code)  # the layer compiled as a region
        assert _state_copies(compiled, code, PROMPT.repeat(2, 1), **kw) == []
        assert torch.equal(got.sequences, eager.generate(PROMPT.repeat(2, 1), **kw).sequences)


@torch._dynamo.config.patch(recompile_limit=1)  # not monkeypatch: torch 2.11's config loses the entry on its undo
def test_past_the_recompile_limit_the_step_starts_fresh():
    """Under fullgraph, torch raises once a function has compiled recompile_limit versions (8); the step then
    starts a fresh compiled copy instead of failing the generation (here the limit is 1: greedy, then sampled)."""
    compiled, eager = _decoders("ar")
    for temperature in (0.0, 1.0):
        got, want = (dec.generate(PROMPT, temperature=temperature, seed=3) for dec in (compiled, eager))
        assert got.compiled and torch.equal(got.sequences, want.sequences)
    assert compiled.compiled_step.fresh_starts == 1


def test_a_failed_compile_falls_back_and_says_why(monkeypatch):
    compiled, _ = _decoders("hawk", compile="regional")
    step = compiled.compiled_step
    assert step.regional  # the tiny backbone's two layers: one marked region

    def fails(plan, state):
        raise torch._dynamo.exc.Unsupported("a construct dynamo cannot trace")

    # the marked compile fails -> the marks go and the whole step compiles once more; that fails too -> eager
    monkeypatch.setattr(compiled_module, "_REGION_FAILED", {})  # this test's failure is forgotten after it
    monkeypatch.setattr(step, "_compiled", fails)
    monkeypatch.setattr(step, "_fresh", lambda: fails)
    with pytest.raises(RuntimeError, match="compiling the decode step failed"):
        compiled.generate(PROMPT, temperature=0)
    assert not step.regional and "a construct dynamo cannot trace" in step.regional_failure
    assert all("forward" not in vars(layer) for layer in step.layers)  # the model is as it came
    # a later decoder of the same layer class does not try the region again (a failed try traces every layer)
    later = hk.HawkDecoder(tiny_backbone(), None, tiny_grid(), mode="ar", compile="regional")
    assert not later.compiled_step.regional
    assert "a construct dynamo cannot trace" in later.compiled_step.regional_failure
    out = later.generate(PROMPT, temperature=0)  # compiled whole, and the user sees why not regional
    assert out.compiled and "the layers as one region failed" in out.fallbacks["compile"], out.fallbacks
    step.required = False  # what compile="auto" builds
    step.fallback_reason = None
    out = compiled.generate(PROMPT, temperature=0)
    eager = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk", num_nodes=8).generate(
        PROMPT, temperature=0)
    assert not out.compiled and torch.equal(out.sequences, eager.sequences)
    assert "a construct dynamo cannot trace" in out.fallbacks["compile"] and out.step_engine.startswith("eager (")
    with pytest.raises(ValueError, match="compile"):
        hk.HawkDecoder(tiny_backbone(), None, tiny_grid(), mode="ar", compile="yes")
    assert hk.HawkDecoder(tiny_backbone(), None, tiny_grid(), mode="ar").compiled_step is None  # auto: not on CPU


@pytest.mark.slow
@pytest.mark.parametrize("verify", ["coupled", "rejection"])
@pytest.mark.parametrize("mode", ["hawk", "hawk+jacobi"])
def test_compiled_images_follow_the_exact_ar_law(mode, verify):
    """The end-to-end law test of test_decoder / test_jacobi, through the compiled step, under both verification
    rules. Negative control: the same test rejects the compiled step's images sampled at temperature 1.3."""
    model = tiny_backbone()
    grid = hk.ImageGrid(height=2, width=2, row_end_token=3, image_token_range=(45, 48))
    sampling = hk.SamplingConfig(cfg_scale=2.0)
    probs, images = _exact_image_law(model, grid, sampling)
    heads = tiny_heads(num_horizontal=3, vertical_depth=1)
    dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=8, compile=True, verify=verify)
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
    assert pipe.compile_seconds == 0  # nothing compiled yet; then the sum over the pipeline's compiled decoders:
    pipe.decoder("hawk", num_nodes=8).compiled_step.compile_seconds = 2.5
    pipe.decoder("ar", num_nodes=1).compiled_step.compile_seconds = 1.0
    assert pipe.compile_seconds == 3.5
    with pytest.raises(ValueError, match="compile"):
        hk.load_demo_pipeline(device="cpu", compile="fast")
