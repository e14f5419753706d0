"""Janus, Emu3 and Lumina-mGPT pipelines on tiny random checkpoints loaded the way a user loads them:
greedy decoding in every mode equals the family's own generation (transformers' generate for Janus and Emu3,
a plain loop for Lumina-mGPT), sampled images follow the exact law (and a wrong law fails the same test),
heads train on each adapter's hidden states, save, load and decode, and bad input fails early and clearly."""
import itertools
import os

import numpy as np
import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.drafts import MODES
from hawk_kernels.pipelines import load_pipeline
from hawk_kernels.cli.generate import run as generate_command
from hawk_kernels.training import TensorSequences, TrainConfig, evaluate_heads, train_heads
from tests.test_verify import _chi2_pvalue
from tests.tiny_families import build_chameleon, build_emu3, build_janus
from tests.transformers_reference import janus_image_generate

PROMPTS = ["a red cat", "dog on the grass"]  # different lengths: Janus groups CFG rows by length
SIZES = {"janus": None, "emu3": 32, "chameleon": 64}  # 4 x 4 codes each
LAW_SIZES = {"janus": None, "emu3": 16, "chameleon": 32}  # 2 x 2 codes each
BUILDERS = {"janus": build_janus, "emu3": build_emu3, "chameleon": build_chameleon}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """family -> checkpoint directory (16 codes, 4 x 4 images)."""
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def pipes(model_dirs):
    out = {}
    for name, directory in model_dirs.items():
        pipe = load_pipeline(directory)
        pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=2))
        out[name] = pipe
    return out


def _all_modes(pipe, size, **kw):
    return {mode: pipe.generate(PROMPTS, mode=mode, size=size, temperature=0, **kw) for mode in MODES}


# --- seeds -----------------------------------------------------------------------------------------------
def test_each_image_gets_its_own_seed_whatever_its_batch(pipes):
    """Image i is sampled with seed + i (or seed[i]) in one decoder batch although Janus's prompts (and so its
    unconditional CFG prompts) differ in length: each image equals itself decoded alone with its seed."""
    pipe = pipes["janus"]
    rows = pipe.prompt_rows(PROMPTS, None, pipe.layout(None))
    assert len({len(row) for row in rows.unconditional}) == 2  # both CFG branches left-padded in one batch
    both = pipe.generate_tokens(PROMPTS, mode="ar", seed=7)
    assert len(both.outputs) == 1
    for i, prompt in enumerate(PROMPTS):
        alone = pipe.generate_tokens([prompt], mode="ar", seed=7 + i)
        assert torch.equal(alone.image_tokens[0], both.image_tokens[i]), i
    swapped = pipe.generate_tokens(PROMPTS[::-1], mode="ar", seed=[8, 7])
    assert torch.equal(swapped.image_tokens, both.image_tokens.flip(0))


# --- greedy = the family's own generation ----------------------------------------------------------------
def test_janus_greedy_equals_transformers_generate(pipes):
    pipe, cfg = pipes["janus"], 5.0
    rows = pipe.prompt_rows(PROMPTS, None, pipe.layout(None))
    expected = []
    for row in rows.conditional:  # transformers builds the pad-masked CFG rows itself
        ids = torch.tensor([row])
        expected.append(janus_image_generate(pipe.model, ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                             guidance_scale=cfg)[0])
    expected = torch.stack(expected)
    outs = _all_modes(pipe, None, cfg_scale=cfg)
    for mode, out in outs.items():
        assert torch.equal(out.image_tokens.flatten(1), expected), mode
        assert torch.equal(out.codes, out.image_tokens)  # Janus image tokens are the codes
    assert outs["hawk"].total_forward_passes <= outs["ar"].total_forward_passes
    decoded = pipe.model.decode_image_tokens(expected)  # [B, h, w, 3]
    assert torch.equal(outs["hawk"].pixels, decoded.permute(0, 3, 1, 2).float())
    reference = pipe.processor.postprocess(list(decoded.float().permute(0, 3, 1, 2)), return_tensors="PIL.Image.Image")
    for ours, theirs in zip(outs["hawk"].images, reference["pixel_values"]):
        assert np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int)).max() <= 1
        assert ours.size == (64, 64)


def _emu3_reference(pipe, row, negative, cfg, height, width):
    """transformers generate as Emu3's docs run it: a prefix constraint (end-of-line after every row, then
    end-of-frame / end-of-image / EOS) and CFG from the negative prompt (UnbatchedClassifierFreeGuidance)."""
    tokenizer = pipe.processor.tokenizer
    wrapper = tokenizer.convert_tokens_to_ids(tokenizer.image_wrapper_token)
    visual = pipe.model.vocabulary_mapping.image_tokens
    ids = lambda name: [tokenizer.convert_tokens_to_ids(name)]  # noqa: E731
    tail = [ids("<|extra_201|>"), ids(tokenizer.eoi_token), [tokenizer.eos_token_id]]

    def allowed(batch_id, input_ids):
        offset = input_ids.shape[0] - int(torch.nonzero(input_ids == wrapper)[0, 0])
        last = (width + 1) * height
        if offset <= last:
            return ids("<|extra_200|>") if offset % (width + 1) == 0 else visual
        return tail[offset - last - 1] if offset - last - 1 < 3 else [tokenizer.pad_token_id]

    prompt, neg = torch.tensor([row]), torch.tensor([negative])
    out = pipe.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=(width + 1) * height + 3,
                              do_sample=False, prefix_allowed_tokens_fn=allowed, guidance_scale=cfg,
                              negative_prompt_ids=neg, negative_prompt_attention_mask=torch.ones_like(neg))
    return out[0, len(row):]


def test_emu3_greedy_equals_transformers_generate(pipes):
    pipe, cfg = pipes["emu3"], 3.0
    grid = pipe.layout(32)
    rows = pipe.prompt_rows(PROMPTS, None, grid)
    expected = [_emu3_reference(pipe, r, u, cfg, 4, 4) for r, u in zip(rows.conditional, rows.unconditional)]
    outs = _all_modes(pipe, 32, cfg_scale=cfg)
    for mode, out in outs.items():
        for got, prompt, want in zip(out.sequences, rows.conditional, expected):
            assert got[len(prompt):].tolist() == want[:-2].tolist(), mode  # ours stop at end-of-frame
    assert outs["hawk"].total_forward_passes <= outs["ar"].total_forward_passes
    pixels = pipe.model.decode_image_tokens(image_tokens=torch.stack(expected), height=4, width=4)
    assert torch.equal(outs["hawk"].pixels, pixels.float())
    assert outs["hawk"].images[0].size == (32, 32)


def _lumina_reference(pipe, row, prefix, cfg, grid):
    """A plain loop without cache: every step re-reads both branches, takes image-token logits from the lm_head
    rows (transformers' forward suppresses them), combines CFG, forces row ends, and takes the argmax."""
    lo, hi = grid.image_token_range
    head = pipe.model.lm_head.weight
    body = []
    for offset in range(grid.num_body_tokens):
        if offset % grid.row_stride == grid.width:
            body.append(grid.row_end_token)
            continue
        logits = [pipe.model.model(input_ids=torch.tensor([p + body])).last_hidden_state[0, -1] @ head[lo:hi].T
                  for p in (row, prefix)]
        body.append(lo + int((logits[1] + cfg * (logits[0] - logits[1])).argmax()))
    return body


def test_lumina_greedy_equals_a_plain_loop(pipes):
    pipe, cfg = pipes["chameleon"], 3.0
    grid = pipe.layout(64)
    rows = pipe.prompt_rows(PROMPTS, None, grid)
    assert rows.unconditional[0] == rows.conditional[0][-3:]  # image start + size tokens, no text
    with torch.no_grad():
        expected = [_lumina_reference(pipe, r, u, cfg, grid) for r, u in zip(rows.conditional, rows.unconditional)]
    outs = _all_modes(pipe, 64, cfg_scale=cfg)
    for mode, out in outs.items():
        for got, prompt, want in zip(out.sequences, rows.conditional, expected):
            assert got[len(prompt):-1].tolist() == want, mode
            assert int(got[-1]) == grid.image_end_token
    out = outs["hawk"]
    mapping = pipe.model.model.vocabulary_mapping.bpe2img
    assert out.codes.flatten().tolist() == [mapping[int(t)] for t in out.image_tokens.flatten()]
    assert out.pixels.shape == (2, 3, 64, 64) and out.images[1].size == (64, 64)


# --- sampled images follow the exact law -------------------------------------------------------------------
def _image_logits(pipe, prompt: list[int], body: torch.Tensor, grid) -> torch.Tensor:
    """[N, body] ids -> logits over the image codes at every body position (the family's own modules, full
    forward, no cache)."""
    model, n = pipe.model, body.shape[0]
    prompt_ids = torch.tensor([prompt]).expand(n, -1)
    if pipe.family == "janus":
        embeds = torch.cat([model.get_input_embeddings()(prompt_ids),
                            model.prepare_embeddings_for_image_generation(body)], 1)
        hidden = model.model.language_model(inputs_embeds=embeds).last_hidden_state
        return model.model.generation_head(hidden[:, len(prompt) - 1: -1])
    stack = model.model.text_model if pipe.family == "emu3" else model.model
    hidden = stack(input_ids=torch.cat([prompt_ids, body], 1)).last_hidden_state[:, len(prompt) - 1: -1]
    lo, hi = grid.image_token_range
    return hidden @ model.lm_head.weight[lo:hi].T


def _exact_law(pipe, rows, grid, cfg, temperature, top_k):
    """The probability of every image under CFG -> layout -> top-k -> temperature, by teacher forcing."""
    images = torch.tensor(list(itertools.product(range(grid.num_image_codes), repeat=grid.height * grid.width)))
    body = images.view(-1, grid.height, grid.width) + grid.image_token_range[0]
    if grid.row_end_token is not None:
        body = torch.cat([body, torch.full((len(images), grid.height, 1), grid.row_end_token)], -1)
    body = body.flatten(1)
    image_positions = body != (-1 if grid.row_end_token is None else grid.row_end_token)
    with torch.no_grad():
        cond = _image_logits(pipe, rows.conditional[0], body, grid)
        uncond = _image_logits(pipe, rows.unconditional[0], body, grid)
    logits = (uncond + cfg * (cond - uncond))[image_positions].view(len(images), -1, grid.num_image_codes)
    kth = logits.topk(top_k, -1).values[..., -1:]
    logp = torch.log_softmax(logits.masked_fill(logits < kth, float("-inf")) / temperature, -1)
    return logp.gather(-1, images[..., None])[..., 0].sum(-1).exp(), images


@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_sampled_images_follow_the_exact_law(family, tmp_path):
    pipe = load_pipeline(BUILDERS[family](tmp_path, codes=3, **({"side": 2} if family == "janus" else {})))
    pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=1))
    size, sampling = LAW_SIZES[family], dict(cfg_scale=2.0, temperature=1.0, top_k=2)
    grid = pipe.layout(size)
    rows = pipe.prompt_rows(["a red cat"], None, grid)
    probs, images = _exact_law(pipe, rows, grid, sampling["cfg_scale"], sampling["temperature"], 2)
    assert abs(float(probs.sum()) - 1) < 1e-9
    index = {tuple(img): i for i, img in enumerate(images.tolist())}
    counts = torch.zeros(len(images), dtype=torch.int64)
    for seed in range(4):
        out = pipe.generate_tokens(input_ids=torch.tensor(rows.conditional * 400), mode="hawk", size=size,
                                   num_nodes=32, seed=seed * 400, **sampling)  # disjoint image seeds
        for img in (out.image_tokens.flatten(1) - grid.image_token_range[0]).tolist():
            counts[index[tuple(img)]] += 1
    assert int(counts[probs == 0].sum()) == 0  # top-k: nothing outside the two best codes
    assert _chi2_pvalue(counts, probs, bins=12) > 1e-4
    assert out.tokens_per_pass > 1.0
    wrong, _ = _exact_law(pipe, rows, grid, 1.0, sampling["temperature"], 2)  # negative control: no CFG
    assert _chi2_pvalue(counts, wrong, bins=12) < 1e-6


# --- heads: train on the adapter's hidden states, save, load, decode ----------------------------------------
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_heads_train_save_load_and_decode(family, model_dirs, pipes, tmp_path):
    pipe, size = pipes[family], SIZES[family]
    grid = pipe.layout(size)
    sampled = pipe.generate_tokens(["a red cat"] * 48, mode="ar", size=size, seed=1).outputs[0]
    body_start = sampled.sequences.shape[1] - sampled.generated.shape[1]
    backbone = pipe.backbone(grid)
    heads = pipe.make_heads(num_horizontal=2, vertical_depth=1)
    assert heads.config.family == family and heads.config.shared_lm_head == (family != "janus")
    data = TensorSequences(sampled.sequences, body_start)
    before = evaluate_heads(backbone, heads, data, grid)
    train_heads(backbone, heads, data, grid, TrainConfig(epochs=3, lr=3e-2, batch_size=16, eval_fraction=0),
                progress=False)
    after = evaluate_heads(backbone, heads, data, grid)
    assert sum(after.loss) < sum(before.loss)
    heads.save_pretrained(tmp_path)
    loaded = load_pipeline(model_dirs[family], heads=tmp_path)
    assert loaded.heads.config == heads.config
    ar = loaded.generate_tokens(PROMPTS, mode="ar", size=size, temperature=0)
    # a fixed tree: "auto" may rightly take AR steps for heads this weak (its choice depends on the machine's timings)
    hawk = loaded.generate_tokens(PROMPTS, mode="hawk", size=size, temperature=0, num_nodes=16)
    assert torch.equal(hawk.image_tokens, ar.image_tokens)
    assert hawk.total_forward_passes < ar.total_forward_passes


def test_heads_saved_before_the_family_field_still_load(tmp_path):
    heads = hk.DraftHeads(32, 80, 2, 1)
    heads.save_pretrained(tmp_path)
    config = (tmp_path / "draft_heads_config.json").read_text().replace(',\n  "family": null', "")
    assert "family" not in config
    (tmp_path / "draft_heads_config.json").write_text(config)
    assert hk.DraftHeads.from_pretrained(tmp_path).config.family is None


# --- the CLI --------------------------------------------------------------------------------------------------
class _Args:
    def __init__(self, **kw):
        defaults = dict(heads=None, mode=None, seed=0, cfg=None, temperature=None, top_k=None, size=None,
                        nodes=None, device=None, dtype=None)
        self.__dict__.update({**defaults, **kw})


def test_cli_writes_one_png_per_prompt(model_dirs, tmp_path, capsys):
    out = tmp_path / "pngs"
    assert generate_command(_Args(model=str(model_dirs["janus"]), prompts=PROMPTS, out=str(out))) == 0
    names = sorted(name for name in os.listdir(out) if name.endswith(".png"))  # beside them: manifest.jsonl
    assert names == ["000_a-red-cat.png", "001_dog-on-the-grass.png"]
    printed = capsys.readouterr().out
    assert "passes" in printed and "tokens per pass" in printed and "seconds" in printed


# --- bad input ----------------------------------------------------------------------------------------------
def test_bad_input_fails_early_and_names_the_argument(model_dirs, pipes, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4)).save_pretrained(tmp_path / "llama")
    with pytest.raises(ValueError, match="model_type='llama'.*janus, emu3, chameleon"):
        load_pipeline(tmp_path / "llama")
    with pytest.raises(FileNotFoundError, match="model_dir"):
        load_pipeline(tmp_path / "nowhere")
    chameleon, janus, emu3 = pipes["chameleon"], pipes["janus"], pipes["emu3"]
    with pytest.raises(ValueError, match="hidden_size"):
        chameleon.set_heads(hk.DraftHeads(16, 112))
    with pytest.raises(ValueError, match="vocab_size"):
        chameleon.set_heads(hk.DraftHeads(32, 80, image_token_range=(64, 80)))  # Emu3's vocabulary, same width
    with pytest.raises(ValueError, match="family"):
        chameleon.set_heads(emu3.make_heads())
    with pytest.raises(ValueError, match="prompts: prompt 0 has .* max_position_embeddings=256"):
        janus.generate(["a " * 300], mode="ar")
    for pipe, size in ((janus, 512), (emu3, 30), (chameleon, 100), (chameleon, 2048)):
        with pytest.raises(ValueError, match="size"):
            pipe.generate(PROMPTS, mode="ar", size=size)
    with pytest.raises(ValueError, match="prompts, input_ids"):
        janus.generate(PROMPTS, input_ids=torch.tensor([[1, 5]]))
    with pytest.raises(ValueError, match="input_ids: row 0 must end with the begin-of-image token"):
        janus.generate(input_ids=torch.tensor([[1, 9, 10]]), mode="ar")
    with pytest.raises(ValueError, match="heads: mode='hawk' needs draft heads"):
        load_pipeline(model_dirs["emu3"]).generate(PROMPTS, size=32, mode="hawk")


def test_a_call_without_a_mode_decodes_in_the_exact_mode_with_the_most_tokens_per_pass(model_dirs):
    """mode None (the pipelines' default; `hawk generate` without --mode): jacobi without heads (it needs none),
    hawk+jacobi with them; the output says which."""
    pipe = load_pipeline(model_dirs["chameleon"])
    kw = dict(size=SIZES["chameleon"], seed=0, num_nodes=8)
    without = pipe.generate_tokens(PROMPTS[:1], **kw)
    assert without.mode == "jacobi"
    assert torch.equal(without.image_tokens, pipe.generate_tokens(PROMPTS[:1], mode="jacobi", **kw).image_tokens)
    pipe.set_heads(pipe.make_heads())
    assert pipe.generate_tokens(PROMPTS[:1], **kw).mode == "hawk+jacobi"


def test_text_prompts_without_a_processor_and_output_dir_errors(model_dirs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (bare / name).write_bytes((model_dirs["chameleon"] / name).read_bytes())
    with pytest.warns(RuntimeWarning, match="no Chameleon VQGAN checkpoint"):
        pipe = load_pipeline(bare)
    assert pipe.processor is None and not pipe.has_pixel_decoder  # no tokenizer, no vqgan.ckpt
    with pytest.raises(ValueError, match="prompts: text prompts need the processor"):
        pipe.generate(PROMPTS, mode="ar", size=64)
    ids = torch.tensor([[1, 9, 10, 7]])  # input_ids still work: the image prefix is appended for `size`
    assert pipe.generate(input_ids=ids, mode="ar", size=64).images is None
    with pytest.raises(FileNotFoundError, match="pixel decoder"), pytest.warns(RuntimeWarning):
        generate_command(_Args(model=str(bare), prompts=PROMPTS, out=str(tmp_path / "never")))
    assert not (tmp_path / "never").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="--out"):
        generate_command(_Args(model=str(model_dirs["janus"]), prompts=PROMPTS, out=str(tmp_path / "file")))
    with pytest.raises(ValueError, match="size"):  # checked before anything is generated or written
        generate_command(_Args(model=str(model_dirs["janus"]), prompts=PROMPTS, out=str(tmp_path / "o"), size=8))
    assert not (tmp_path / "o").exists()


@pytest.mark.cuda
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
@pytest.mark.parametrize("mode", ["ar", "hawk", "hawk+jacobi"])
def test_family_pipelines_replay_cuda_graphs_like_eager(family, mode, model_dirs):
    """On a GPU every family's steps are captured once and replayed (no silent eager fallback), sampling with
    the family's defaults and CFG, and give the eager run's tokens."""
    import warnings

    pipe, size = load_pipeline(model_dirs[family], device="cuda", dtype="float32", compile=False), SIZES[family]
    pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=2))
    decoder = pipe.decoder(mode, pipe.layout(size), 16)
    runs = {}
    for graphed in (False, True):
        decoder.cuda_graphs = graphed
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            runs[graphed] = pipe.generate_tokens(PROMPTS * 2, mode=mode, size=size, seed=3, num_nodes=16)
    assert all(out.cuda_graph for out in runs[True].outputs)
    assert not any(out.cuda_graph for out in runs[False].outputs)
    assert torch.equal(runs[True].image_tokens, runs[False].image_tokens)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
@pytest.mark.parametrize("compile", [True, "regional"])
def test_family_steps_compile_and_equal_eager(family, compile, model_dirs):
    """compile=True on each family's backbone (what compile="auto" does on a GPU), and "regional" (its decoder
    layers as one region): the step compiles in one graph and samples the eager step's tokens (hawk+jacobi, the
    family's defaults, CFG on; the same heads on both: Janus' heads have their own random projection)."""
    runs = {}
    for word in (False, compile):
        pipe = load_pipeline(model_dirs[family], compile=word)
        torch.manual_seed(0)
        pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=2))
        runs[word] = pipe.generate_tokens(PROMPTS, mode="hawk+jacobi", size=SIZES[family], seed=3, num_nodes=16)
        step = pipe.decoder("hawk+jacobi", pipe.layout(SIZES[family]), 16).compiled_step
        assert (step is None) == (word is False)
        if word == "regional":
            assert step.regional and step.regional_failure is None
    assert all(out.step_engine == "compiled" for out in runs[compile].outputs)
    assert torch.equal(runs[compile].image_tokens, runs[False].image_tokens)
