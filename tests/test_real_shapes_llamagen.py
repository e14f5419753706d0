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
"""
from __future__ import annotations

import json

import pytest
import torch

from hawk_kernels.backbones.llamagen_gpt import GPT_SIZES, LlamaGenModel
from hawk_kernels.drafts import MODES
from hawk_kernels.pipelines import load_pipeline
from hawk_kernels.pipelines.llamagen import read_config
from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQConfig
from tests import llamagen_reference as upstream
from tests import llamagen_reference_vq as upstream_vq
from tests.real_shapes_llamagen import (CLASS_LABELS, CODES, FAMILIES, IMAGE_SIZE, NUM_CLASSES, RELEASES, SIDE, VQ_FILE,
                                        build_llamagen, released_config)

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
@pytest.mark.parametrize("family", FAMILIES)
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
    outs = {}
    for mode in modes:
        if png_modes is None or mode in png_modes:
            out = pipe.generate([LABEL], mode=mode, temperature=0, cfg_scale=cfg_scale, num_nodes=NODES)
            path = tmp_path / f"{family}_{mode}_cfg{cfg_scale:g}.png"
            out.images[0].save(path)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.images[0].size == (16 * side, 16 * side)
        else:
            out = pipe.generate_tokens([LABEL], mode=mode, temperature=0, cfg_scale=cfg_scale, num_nodes=NODES)
        assert torch.equal(out.image_tokens.flatten(1), expected), (family, mode, cfg_scale)
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
@pytest.mark.parametrize("family", FAMILIES)
def test_every_mode_equals_upstream_generate(family, tmp_path):
    """Outside CI: XL and 3B (100-dim heads: 25 rotary frequencies per axis; a bare FSDP state dict), every mode,
    CFG off and on, greedy equal to upstream's generate; a 384 px PNG of each in ar (the decoder is exercised by
    the CI test; a full-channel VQ-16 decode is ~5 s on one CPU thread)."""
    build_llamagen(family, tmp_path / "model", release_dir=tmp_path / "release")
    pipe = _pipe(tmp_path / "model")
    for cfg_scale in (1.0, CFG):
        _check(pipe, family, tmp_path / "release", tmp_path, MODES, cfg_scale, png_modes=("ar",))
