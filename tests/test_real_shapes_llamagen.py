"""LlamaGen at its released configurations (tests/real_shapes_llamagen.py, issue 22), loaded through
`load_pipeline(directory)` from the directory `convert_llamagen` writes from upstream-format files.

In CI: the released shapes (LlamaGen-XL and -3B: sizes, parameter counts, the config read back from the weights),
and LlamaGen-XL reduced (2 layers of 2 heads of the released 64-dim heads; everything else released: 16384 codes,
1001 class rows, the 24 x 24 grid, the full-channel VQ-16): class label -> 384 x 384 px PNG in `ar` and
`hawk+jacobi`, greedy, computed in float64, equal to upstream's own `generate` (tests/llamagen_reference.py)
loaded from the released-format file c2i_XL_384.pt; LlamaGen-3B's own features (100-dim heads, the bare FSDP
state dict) the same way on a 4 x 4 grid. Peak memory and seconds per image are the benchmark's
(benchmarks/real_shapes.py; its CPU smoke run is test_benchmark_smoke in tests/test_real_shapes.py).

`slow` (outside CI): both releases (3B: 100-dim heads, 25 rotary frequencies per axis, the FSDP bare-state-dict
file) in every mode, CFG off and on, each equal to upstream's generate, and a PNG per release.

Text-to-image (LlamaGen-XL stage 2, t2i_XL_stage2_512.pt, "llamagen_t2i"): in CI its released shapes (GPT, 120
caption positions of flan-t5-xl's width 2048, flan-t5-xl's encoder config) and, reduced (2 layers of 2 64-dim
heads; a 1-layer T5 encoder of the released layer shape and vocabulary, with a word-level stand-in for its
SentencePiece tokenizer), written as upstream's files + a flan-t5-xl directory and converted with `t5=` (loaded
at 512 px: the 32 x 32 grid, VQ-16, the T5 encoder and tokenizer): a text prompt -> PNG in `ar` and
`hawk+jacobi`, greedy in float64, equal to upstream's `generate` fed by upstream's caption path
(`caption_embeddings`: the same tokenizer and T5 loaded from the flan-t5-xl directory, left-padded, with its
emb_masks), on a shorter grid of the same layout (16 x 16, 256 px: the same files converted at 256 px, as
sample_t2i.py --image-size 256 runs them); the whole 32 x 32 grid in float64 in two modes and two 512 px decodes
would cost CI ~30 s. `slow`: the 32 x 32 grid, every mode, CFG off and on, two prompts of different caption
lengths in one batch, 512 x 512 PNGs in ar and hawk+jacobi.
"""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, T5EncoderModel

from hawk_kernels.backbones.llamagen_gpt import GPT_SIZES, LlamaGenModel
from hawk_kernels.drafts import MODES
from hawk_kernels.pipelines import load_pipeline
from hawk_kernels.pipelines.llamagen import read_config
from hawk_kernels.pipelines.llamagen_convert import convert_llamagen
from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQConfig
from tests import llamagen_reference as upstream
from tests import llamagen_reference_vq as upstream_vq
from tests.real_shapes_llamagen import (C2I_FAMILIES, CAPTION_DIM, CAPTION_TOKENS, CLASS_LABELS, CODES, IMAGE_SIZE,
                                        NUM_CLASSES, RELEASES, SIDE, T2I_PROMPTS, T5_DIR, T5_XL, VQ_FILE,
                                        build_llamagen, released_config, released_t5_config)

LABEL = CLASS_LABELS[0]  # 207, upstream sample_c2i.py's first class label
CFG = 4.0  # upstream sample_c2i.py's default
HEADS = dict(num_horizontal=1, vertical_depth=1)  # untrained: the test is exactness, not speed
NODES = 6  # a small tree: each step's heads and pool work scale with the 16384 codes
EMBEDDING_SCALE = 0.1  # see _pipe


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    """LlamaGen-XL reduced, written through upstream-format files (kept in release/) and convert_llamagen."""
    root = tmp_path_factory.mktemp("llamagen_xl")
    build_llamagen("llamagen", root / "model", release_dir=root / "release")
    return root


def _pipe(directory):
    """The converted checkpoint in float64, with untrained heads. Random weights make greedy images cycle through a
    few codes, which no untrained draft predicts; the code embeddings are scaled by EMBEDDING_SCALE (here and in
    the reference: the same weights) so the prediction leans on the class and the image comes out piecewise
    constant, which the heads (shared output rows: "the next code again") draft: the verifier then accepts drafts
    and the Jacobi chain below them."""
    pipe = load_pipeline(directory, device="cpu", dtype="float64")
    with torch.no_grad():
        pipe.model.tok_embeddings.weight.mul_(EMBEDDING_SCALE)
    pipe.set_heads(pipe.make_heads(**HEADS))
    return pipe


def _upstream_codes(release_dir, family, label: int, cfg_scale: float, side: int = SIDE) -> torch.Tensor:
    """Upstream's generate, greedy, float64, on upstream's Transformer loaded (strictly) from the released-format
    file as upstream's sample_c2i.py reads it (DDP {"model": ...}; FSDP: the bare state dict)."""
    config, release = released_config(family, "reduced", side), RELEASES[family]
    loaded = torch.load(release_dir / release.gpt_file, map_location="cpu", weights_only=True)
    assert ("model" not in loaded) == release.fsdp
    model = upstream.Transformer(upstream.ModelArgs(dim=config.dim, n_layer=config.n_layer, n_head=config.n_head,
                                                    num_classes=NUM_CLASSES, vocab_size=CODES,
                                                    block_size=config.block_size))
    model.load_state_dict(loaded if release.fsdp else loaded["model"], strict=True)
    model = model.double().eval()
    with torch.no_grad():
        model.tok_embeddings.weight.mul_(EMBEDDING_SCALE)
    return upstream.generate(model, torch.tensor([label]), config.block_size, cfg_scale=cfg_scale,
                             sample_logits=False)


# --- the released configuration --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", C2I_FAMILIES)
def test_released_sizes_are_upstreams(family, tmp_path):
    """README's sizes (XL 775M, 3B 3.1B) from upstream's GPT_XL / GPT_3B at 16384 codes, 1000 classes and 576
    tokens; the full-scale builder (on the meta device: shapes only) writes the config convert_llamagen reads
    from such weights."""
    config, release = released_config(family), RELEASES[family]
    assert (config.n_layer, config.n_head, config.dim) == GPT_SIZES[release.gpt_model]
    with torch.device("meta"):
        ours = LlamaGenModel(config).state_dict()
        theirs = upstream.Transformer(upstream.ModelArgs(dim=config.dim, n_layer=config.n_layer, n_head=config.n_head,
                                                         num_classes=NUM_CLASSES, vocab_size=CODES,
                                                         block_size=SIDE * SIDE)).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    parameters = sum(v.numel() for v in ours.values())
    assert abs(parameters / release.parameters - 1) < 0.01, parameters
    assert ours["cls_embedding.embedding_table.weight"].shape == (NUM_CLASSES + 1, config.dim)
    built = build_llamagen(family, tmp_path / "model", scale="full", vq="reduced", save_weights=False, device="meta")
    gpt, vq = read_config(built.directory)
    assert gpt == config and vq == LlamaGenVQConfig(ch=32)
    assert sorted(p.name for p in built.directory.iterdir()) == ["config.json", "real_shapes.json",
                                                                 "vq_model.safetensors"]


def test_released_layout_files_and_prompts(xl):
    """What load_pipeline reads from the converted directory: the released vocabulary, class table, grid, VQ-16
    and image size; the released-format files load strictly into upstream's own modules."""
    pipe = load_pipeline(xl / "model", device="cpu")
    config = pipe.model.config
    assert pipe.family == "llamagen" and pipe.model.dtype == torch.float32  # the release's own dtype
    assert (config.vocab_size, config.num_classes, config.block_size, config.dim // config.n_head) == (
        CODES, NUM_CLASSES, SIDE * SIDE, 64)
    assert pipe.model.cls_embedding.embedding_table.weight.shape[0] == NUM_CLASSES + 1
    assert pipe.vq_model.config == LlamaGenVQConfig() and pipe.vq_model.pixels_per_code == 16
    assert pipe.image_size == IMAGE_SIZE
    grid = pipe.layout(None)
    assert (grid.height, grid.width, grid.image_token_range, grid.row_end_token) == (SIDE, SIDE, (0, CODES), None)
    assert pipe.layout(IMAGE_SIZE) == grid and pipe.layout((IMAGE_SIZE, IMAGE_SIZE)) == grid
    rows = pipe.prompt_rows([LABEL, "360"], None, grid)
    assert rows.conditional == [[LABEL], [360]] and rows.unconditional == [[NUM_CLASSES], [NUM_CLASSES]]
    vq_file = torch.load(xl / "release" / VQ_FILE, map_location="cpu", weights_only=True)
    assert set(vq_file) == {"model"} and "quantize.codebook_used" in vq_file["model"]
    upstream_vq.VQModel(upstream_vq.ModelArgs()).load_state_dict(vq_file["model"], strict=True)
    assert json.loads((xl / "model" / "real_shapes.json").read_text())["released"] == \
        "LlamaGen-XL 384 px (c2i_XL_384.pt)"


# --- class label -> PNG, greedy = upstream's generate ----------------------------------------------------------------
def _check(pipe, family, release_dir, tmp_path, modes, cfg_scale=CFG, png_modes=None, side=SIDE):
    """Each mode's greedy image equals upstream's generate; `png_modes` (default all) go to PNGs (384 px at the
    released side)."""
    expected = _upstream_codes(release_dir, family, LABEL, cfg_scale, side)
    return _check_modes(pipe, family, [LABEL], expected, tmp_path, modes, cfg_scale, png_modes, side)


def _check_modes(pipe, name, prompts, expected, tmp_path, modes, cfg_scale, png_modes, side):
    """Each mode's greedy images of `prompts` equal `expected` (upstream's codes); `png_modes` (None: all) go to
    PNGs of 16 * side px; hawk+jacobi's drafts, Jacobi's included, must be accepted."""
    outs = {}
    for mode in modes:
        if png_modes is None or mode in png_modes:
            out = pipe.generate(prompts, mode=mode, temperature=0, cfg_scale=cfg_scale, num_nodes=NODES)
            for i, image in enumerate(out.images):
                path = tmp_path / f"{name}_{mode}_cfg{cfg_scale:g}_{i}.png"
                image.save(path)
                assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.size == (16 * side, 16 * side)
        else:
            out = pipe.generate_tokens(prompts, mode=mode, temperature=0, cfg_scale=cfg_scale, num_nodes=NODES)
        assert torch.equal(out.image_tokens.flatten(1), expected), (name, mode, cfg_scale)
        outs[mode] = out
    if "hawk+jacobi" in outs:
        jacobi = outs["hawk+jacobi"]
        assert jacobi.tokens_per_pass > 1.05, "the drafts were hardly accepted: little deep was verified"
        assert jacobi.outputs[0].accepted_by_source.get("jacobi", 0) > 0
    return outs


def test_llamagen_xl_384px_greedy_equals_upstream_generate(xl, tmp_path):
    outs = _check(_pipe(xl / "model"), "llamagen", xl / "release", tmp_path, ("ar", "hawk+jacobi"))
    assert torch.equal(outs["ar"].pixels, outs["hawk+jacobi"].pixels)
    assert outs["ar"].pixels.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_llamagen_3b_heads_and_fsdp_file_on_a_small_grid(tmp_path):
    """LlamaGen-3B's own features, cheaply: 100-dim heads (25 rotary frequencies per axis, against XL's 16) and the
    FSDP release (a bare state dict), on a 4 x 4 grid (the full 24 x 24 runs in the slow test below): greedy in ar
    and hawk+jacobi equals upstream's generate."""
    build_llamagen("llamagen_3b", tmp_path / "model", vq="reduced", side=4, release_dir=tmp_path / "release")
    pipe = _pipe(tmp_path / "model")
    assert pipe.model.config.dim // pipe.model.config.n_head == 100 and pipe.model.rotary.shape == (17, 50, 2)
    _check(pipe, "llamagen_3b", tmp_path / "release", tmp_path, ("ar", "hawk+jacobi"), png_modes=("ar",), side=4)


@pytest.mark.slow
@pytest.mark.parametrize("family", C2I_FAMILIES)
def test_every_mode_equals_upstream_generate(family, tmp_path):
    """Outside CI: XL and 3B (100-dim heads: 25 rotary frequencies per axis; a bare FSDP state dict), every mode,
    CFG off and on, greedy equal to upstream's generate; a 384 px PNG of each in ar (the decoder is exercised by
    the CI test; a full-channel VQ-16 decode is ~5 s on one CPU thread)."""
    build_llamagen(family, tmp_path / "model", release_dir=tmp_path / "release")
    pipe = _pipe(tmp_path / "model")
    for cfg_scale in (1.0, CFG):
        _check(pipe, family, tmp_path / "release", tmp_path, MODES, cfg_scale, png_modes=("ar",))


# --- text-to-image: LlamaGen-XL stage 2, 512 px ---------------------------------------------------------------------
T2I = "llamagen_t2i"
T2I_SIDE = 32  # sample_t2i.py --image-size 512 // --downsample-size 16
CI_SIDE = 16  # the CI comparison's grid: stage 1's 16 x 16 (sample_t2i.py --image-size 256), same weights
T2I_CFG = 7.5  # sample_t2i.py's default
PROMPT = "a red fox in the snow, highly detailed"  # the benchmark's (benchmarks/real_shapes.py)


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    """LlamaGen-XL t2i reduced, written as upstream's files + a flan-t5-xl directory (kept in release/) and converted
    with convert_llamagen(..., t5=release/t5-ckpt/flan-t5-xl) at 512 px (model/); the same files converted at
    16 * CI_SIDE px (model_ci/: the weights hold no grid size, upstream's sample_t2i.py takes --image-size)."""
    root = tmp_path_factory.mktemp("llamagen_t2i")
    build_llamagen(T2I, root / "model", release_dir=root / "release")
    release = root / "release"
    convert_llamagen(release / RELEASES[T2I].gpt_file, release / RELEASES[T2I].vq_file, root / "model_ci",
                     16 * CI_SIDE, n_head=released_config(T2I, "reduced").n_head, t5=release / T5_DIR)
    return root


def _upstream_t2i_codes(release_dir, prompts, cfg_scale: float, side: int = T2I_SIDE) -> torch.Tensor:
    """Upstream's generate, greedy, float64, on upstream's Transformer (model_type t2i, cls_token_num 120) loaded
    strictly from t2i_XL_stage2_512.pt as sample_t2i.py reads it, its captions from upstream's caption path
    (language/t5.py's get_text_embeddings without the caption cleaning + sample_t2i.py's left-padding) with the
    tokenizer and T5 encoder loaded from the flan-t5-xl directory the release was converted from."""
    config = released_config(T2I, "reduced", side)
    loaded = torch.load(release_dir / RELEASES[T2I].gpt_file, map_location="cpu", weights_only=True)
    model = upstream.Transformer(upstream.ModelArgs(
        dim=config.dim, n_layer=config.n_layer, n_head=config.n_head, vocab_size=CODES, block_size=config.block_size,
        cls_token_num=CAPTION_TOKENS, caption_dim=CAPTION_DIM, model_type="t2i"))
    model.load_state_dict(loaded["model"], strict=True)
    model = model.double().eval()
    with torch.no_grad():
        model.tok_embeddings.weight.mul_(EMBEDDING_SCALE)
        tokenizer = AutoTokenizer.from_pretrained(str(release_dir / T5_DIR))
        t5 = T5EncoderModel.from_pretrained(str(release_dir / T5_DIR)).double().eval()
        captions, masks = upstream.caption_embeddings(tokenizer, t5, prompts, max_length=CAPTION_TOKENS)
    return upstream.generate(model, captions, config.block_size, masks, cfg_scale=cfg_scale, sample_logits=False)


def _check_t2i(pipe, release_dir, tmp_path, prompts, modes, cfg_scale=T2I_CFG, png_modes=None, side=T2I_SIDE):
    """Each mode's greedy images equal upstream's generate; `png_modes` (default all) go to PNGs (512 px at the
    released side)."""
    expected = _upstream_t2i_codes(release_dir, prompts, cfg_scale, side)
    return _check_modes(pipe, T2I, prompts, expected, tmp_path, modes, cfg_scale, png_modes, side)


def test_t2i_released_sizes_are_upstreams(tmp_path):
    """README's 775M for LlamaGen-XL t2i (upstream's GPT_XL with model_type t2i, 120 caption positions of width
    2048, 16384 codes, 1024 tokens), flan-t5-xl's encoder config; the full-scale builder (on the meta device:
    shapes only) writes the config convert_llamagen reads from such weights, and text_encoder/ with the T5 config
    and tokenizer (no weights: the benchmark keeps the encoder it built)."""
    config, release = released_config(T2I), RELEASES[T2I]
    assert (config.n_layer, config.n_head, config.dim) == GPT_SIZES["GPT-XL"] and release.image_size == 512
    assert (config.gpt_type, config.cls_token_num, config.caption_dim, config.block_size) == ("t2i", 120, 2048, 1024)
    with torch.device("meta"):
        ours = LlamaGenModel(config).state_dict()
        theirs = upstream.Transformer(upstream.ModelArgs(dim=config.dim, n_layer=config.n_layer, n_head=config.n_head,
                                                         vocab_size=CODES, block_size=1024, cls_token_num=120,
                                                         caption_dim=2048, model_type="t2i")).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert ours["cls_embedding.cap_proj.fc1.weight"].shape == (config.dim, CAPTION_DIM)
    assert ours["cls_embedding.uncond_embedding"].shape == (CAPTION_TOKENS, CAPTION_DIM)
    parameters = sum(v.numel() for v in ours.values())
    assert abs(parameters / release.parameters - 1) < 0.01, parameters
    t5 = released_t5_config()
    assert (t5.d_model, t5.num_layers, t5.num_heads, t5.d_kv, t5.d_ff, t5.vocab_size, t5.is_gated_act,
            t5.dense_act_fn) == (2048, 24, 32, 64, 5120, 32128, True, "gelu_new")
    assert (t5.pad_token_id, t5.eos_token_id) == (0, 1) and t5.d_model == CAPTION_DIM
    built = build_llamagen(T2I, tmp_path / "model", scale="full", vq="reduced", save_weights=False, device="meta")
    gpt, vq = read_config(built.directory)
    assert gpt == config and vq == LlamaGenVQConfig(ch=32)
    encoder = built.model.text_encoder
    assert encoder.config.num_layers == 24 and encoder.config.d_model == 2048
    assert abs(sum(p.numel() for p in encoder.parameters()) / 1.223e9 - 1) < 0.01  # 32128 x 2048 + 24 layers
    assert sorted(p.name for p in built.directory.iterdir()) == ["config.json", "real_shapes.json", "text_encoder",
                                                                 "vq_model.safetensors"]
    written = sorted(p.name for p in (built.directory / "text_encoder").iterdir())
    assert "config.json" in written and "tokenizer.json" in written and not any("safetensors" in n for n in written)


def test_t2i_released_layout_files_and_prompts(t2i):
    """What load_pipeline reads from the converted t2i directory: the caption width and positions, the grid, VQ-16
    and 512 px, the T5 encoder (the released layer shape and vocabulary) and its tokenizer's special ids; text
    prompts become 120 left-padded T5 ids ending in eos, their CFG rows the null caption masked alike; the
    release's files load strictly into upstream's own modules and transformers' T5."""
    pipe = load_pipeline(t2i / "model", device="cpu")
    config = pipe.model.config
    assert pipe.family == "llamagen" and pipe.captions and pipe.model.dtype == torch.float32
    assert (config.gpt_type, config.cls_token_num, config.caption_dim, config.vocab_size, config.block_size,
            config.dim // config.n_head) == ("t2i", 120, 2048, CODES, 1024, 64)
    assert pipe.defaults == dict(cfg_scale=7.5, temperature=1.0, top_k=1000)  # sample_t2i.py's
    assert pipe.vq_model.config == LlamaGenVQConfig() and pipe.image_size == 512
    grid = pipe.layout(None)
    assert (grid.height, grid.width, grid.image_token_range) == (32, 32, (0, CODES)) and pipe.layout(512) == grid
    t5 = pipe.model.text_encoder.config
    assert {k: getattr(t5, k) for k in ("d_model", "d_kv", "d_ff", "num_heads", "vocab_size", "feed_forward_proj",
                                        "pad_token_id", "eos_token_id")} == {
        k: T5_XL[k] for k in ("d_model", "d_kv", "d_ff", "num_heads", "vocab_size", "feed_forward_proj",
                              "pad_token_id", "eos_token_id")}
    assert t5.num_layers == 1 and pipe.model.text_encoder.shared.weight.shape == (32128, 2048)
    tokenizer = pipe.processor
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    backbone = pipe.backbone(grid)
    assert (backbone.pad_id, backbone.null_caption_id) == (0, 32128)
    rows = pipe.prompt_rows([PROMPT, T2I_PROMPTS[0]], None, grid)
    for row, null, prompt in zip(rows.conditional, rows.unconditional, (PROMPT, T2I_PROMPTS[0])):
        ids = tokenizer(prompt.lower()).input_ids
        assert len(row) == 120 and row == [0] * (120 - len(ids)) + ids and ids[-1] == 1 and 2 not in ids
        assert null == [0] * (120 - len(ids)) + [32128] * len(ids)
    release = t2i / "release"
    gpt = torch.load(release / RELEASES[T2I].gpt_file, map_location="cpu", weights_only=True)
    assert set(gpt) == {"model"}
    upstream.Transformer(upstream.ModelArgs(dim=128, n_layer=2, n_head=2, vocab_size=CODES, block_size=1024,
                                            cls_token_num=120, caption_dim=2048, model_type="t2i")
                         ).load_state_dict(gpt["model"], strict=True)
    vq_file = torch.load(release / RELEASES[T2I].vq_file, map_location="cpu", weights_only=True)
    upstream_vq.VQModel(upstream_vq.ModelArgs()).load_state_dict(vq_file["model"], strict=True)
    t5_config = json.loads((release / T5_DIR / "config.json").read_text())
    assert t5_config["model_type"] == "t5" and t5_config["architectures"] == ["T5ForConditionalGeneration"]
    assert json.loads((t2i / "model" / "real_shapes.json").read_text())["released"] == \
        "LlamaGen-XL text-to-image 512 px (t2i_XL_stage2_512.pt)"


def test_llamagen_t2i_greedy_equals_upstream_generate_on_a_shorter_grid(t2i, tmp_path):
    """A text prompt -> PNG in ar and hawk+jacobi, each equal to upstream's generate on the same weights, on the
    CI_SIDE x CI_SIDE grid (256 px, full-channel VQ-16): the whole 32 x 32 grid (1,024 tokens in float64 in two
    modes, two 512 px decodes of ~7 s each on one CPU thread) would exceed CI's time; the slow test below runs it.
    Everything else is the released layout: 120 caption positions of width 2048, T5 ids, CFG 7.5."""
    outs = _check_t2i(_pipe(t2i / "model_ci"), t2i / "release", tmp_path, [PROMPT], ("ar", "hawk+jacobi"),
                      side=CI_SIDE)
    assert torch.equal(outs["ar"].pixels, outs["hawk+jacobi"].pixels)
    assert outs["ar"].pixels.shape == (1, 3, 16 * CI_SIDE, 16 * CI_SIDE)


@pytest.mark.slow
def test_t2i_every_mode_equals_upstream_generate(t2i, tmp_path):
    """Outside CI: the released 32 x 32 grid, every mode, CFG off and on, a batch of two prompts of different caption
    lengths (upstream sample_t2i.py's first and the benchmark's), greedy equal to upstream's generate; 512 x 512
    PNGs in ar and hawk+jacobi."""
    pipe = _pipe(t2i / "model")
    for cfg_scale in (1.0, T2I_CFG):
        _check_t2i(pipe, t2i / "release", tmp_path, [T2I_PROMPTS[0], PROMPT], MODES, cfg_scale,
                   png_modes=("ar", "hawk+jacobi") if cfg_scale == T2I_CFG else ("ar",))
