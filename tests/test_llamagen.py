"""LlamaGen (class-conditional) against upstream's own code (tests/llamagen_reference.py, a transcription of
FoundationVision/LlamaGen's gpt.py and generate.py): released files convert and load as users load them, the
adapter's tree forward gives upstream's logits, greedy decoding in every mode equals upstream's generate,
sampled images follow the exact law (and a wrong law fails the same test), the target law is upstream's
sampling law, the released sizes are upstream's, and bad input fails early naming the argument."""
import itertools
import json

import pytest
import torch

from hawk_kernels.backbones.llamagen_gpt import GPT_SIZES, LlamaGenConfig, LlamaGenModel
from hawk_kernels.drafts import MODES
from hawk_kernels.pipelines import load_pipeline
from hawk_kernels.pipelines.llamagen_convert import convert_llamagen
from hawk_kernels.target import SamplingConfig, TargetProcessor
from tests import llamagen_reference as upstream
from tests.test_verify import _chi2_pvalue
from tests.tiny_llamagen import GPT, IMAGE_SIZE, build_llamagen, build_llamagen_release, reference_gpt


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_llamagen(tmp_path_factory.mktemp("llamagen"))


@pytest.fixture(scope="module")
def pipe(model_dir):
    pipe = load_pipeline(model_dir, device="cpu", dtype=torch.float64)
    torch.manual_seed(0)
    pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=2))
    return pipe


def test_released_sizes_are_upstreams():
    """Every GPT_SIZES entry builds upstream's Transformer exactly (names and shapes) at the released c2i shape."""
    for name, (n_layer, n_head, dim) in GPT_SIZES.items():
        shape = dict(dim=dim, n_layer=n_layer, n_head=n_head, num_classes=1000, vocab_size=16384, block_size=576)
        with torch.device("meta"):
            ours = LlamaGenModel(LlamaGenConfig(**shape)).state_dict()
            theirs = upstream.Transformer(upstream.ModelArgs(**shape)).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}, name
    xl = sum(v.numel() for v in ours.values()) if name == "GPT-7B" else None
    assert xl is not None and 6.0e9 < xl < 7.2e9  # upstream: "GPT-7B ... # 6.6B"


def test_conversion_writes_what_load_pipeline_reads(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llamagen" and config["n_head"] == GPT["n_head"]
    assert config["num_classes"] == GPT["num_classes"] and config["block_size"] == GPT["block_size"]
    assert config["vq_config"]["codebook_size"] == GPT["vocab_size"]
    pipe = load_pipeline(model_dir, device="cpu")
    assert pipe.model.dtype == torch.float32 and pipe.image_size == IMAGE_SIZE and pipe.has_pixel_decoder
    reference = reference_gpt(0)
    assert all(torch.equal(pipe.model.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_tree_forward_gives_upstreams_logits(pipe):
    """Two branches of a tree (siblings share a position) against upstream's cached forward of each path."""
    model, grid = pipe.model, pipe.layout(None)
    backbone = pipe.backbone(grid)
    torch.manual_seed(2)
    labels, paths = torch.tensor([3, 10]), torch.randint(0, GPT["vocab_size"], (2, 3))  # 10: the null class
    # tree: node 0 = paths[0][0]; nodes 1, 2 = paths[0][1:]; nodes 3, 4 = paths[1][1:] under node 0 (siblings)
    nodes = torch.cat([paths[0], paths[1][1:]])
    depth = torch.tensor([0, 1, 2, 1, 2])
    ancestors = torch.eye(5, dtype=torch.bool)
    for child, parent in ((1, 0), (2, 1), (3, 0), (4, 3)):
        ancestors[child] |= ancestors[parent]
    cache = backbone.new_cache(2, 128)
    backbone.prefill(cache, labels[:, None], torch.ones(2, 1, dtype=torch.bool))
    hidden = backbone.forward_tree(cache, backbone.embed_image_tokens(nodes.expand(2, -1)), depth, ancestors)
    ours = backbone.image_logits(hidden)
    reference = reference_gpt(0).double()
    for branch, node_ids in ((0, [0, 1, 2]), (1, [0, 3, 4])):
        reference.setup_caches(2, 8, torch.float64)
        reference(None, labels, torch.arange(0, 1))
        path = torch.cat([paths[0][:1], paths[branch][1:]]).expand(2, -1)
        theirs = reference(path, None, torch.arange(1, 4))
        # upstream rotates in float32 and returns float32 logits, whatever the model's dtype
        assert (ours[:, node_ids] - theirs).abs().max() < 1e-5


@pytest.mark.parametrize("cfg_scale", [1.0, 4.0])
def test_greedy_equals_upstream_generate_in_every_mode(pipe, cfg_scale):
    expected = upstream.generate(reference_gpt(0).double(), torch.tensor([3, 7, 0]), GPT["block_size"],
                                 cfg_scale=cfg_scale, sample_logits=False)
    for mode in MODES:
        out = pipe.generate([3, "7", 0], mode=mode, temperature=0, cfg_scale=cfg_scale, num_nodes=8)
        assert torch.equal(out.image_tokens.flatten(1), expected), mode
        assert len(out.images) == 3 and out.images[0].size == (IMAGE_SIZE, IMAGE_SIZE)
    unconditional = pipe.generate_tokens(input_ids=[[GPT["num_classes"]]], mode="hawk", temperature=0,
                                         cfg_scale=cfg_scale)
    null = torch.tensor([GPT["num_classes"]])
    expected = upstream.generate(reference_gpt(0).double(), null, GPT["block_size"], cfg_scale=cfg_scale,
                                 sample_logits=False)
    assert torch.equal(unconditional.image_tokens.flatten(1), expected)


def test_target_law_is_upstreams_sampling_law():
    """CFG, temperature and top-k as upstream's generate applies them (cfg -> /T -> top-k -> softmax)."""
    torch.manual_seed(3)
    logits = torch.randn(2, 1, 50, dtype=torch.float64) * 3  # [cond; uncond], one position
    logits[0, 0, :4] = logits[0, 0, 4]  # ties at the top-k boundary: upstream keeps them all
    from hawk_kernels.grid import ImageGrid

    grid = ImageGrid(height=1, width=1, image_token_range=(0, 50))
    for cfg, temperature, top_k in ((4.0, 0.7, 5), (1.0, 1.3, None), (2.5, 1.0, 2000)):
        config = SamplingConfig(cfg, temperature, top_k)
        ours = torch.softmax(TargetProcessor(grid, config)(logits if cfg != 1 else logits[:1],
                                                           torch.zeros(1, 1, dtype=torch.int64))[0, 0], -1)
        combined = upstream.cfg_logits(logits[:, 0].clone(), cfg)
        scaled = combined / temperature
        if top_k:
            scaled[scaled < torch.topk(scaled, min(top_k, 50))[0][..., -1, None]] = -float("inf")
        assert (ours - torch.softmax(scaled, -1)[0]).abs().max() < 1e-12


def _exact_law(model, label: int, cfg: float, top_k: int):
    """The probability of every 2 x 2 image of 3 codes under upstream's law, by teacher forcing."""
    images = torch.tensor(list(itertools.product(range(3), repeat=4)))
    with torch.no_grad():
        logits = []
        for cond in (label, GPT["num_classes"]):
            model.setup_caches(len(images), 8, torch.float64)
            first = model(None, torch.full((len(images),), cond), torch.arange(0, 1))
            rest = model(images[:, :3], None, torch.arange(1, 4))
            logits.append(torch.cat([first, rest], 1).double())  # upstream's logits are float32
    combined = logits[1] + cfg * (logits[0] - logits[1])
    kth = combined.topk(top_k, -1).values[..., -1:]
    logp = torch.log_softmax(combined.masked_fill(combined < kth, float("-inf")), -1)
    return logp.gather(-1, images[..., None])[..., 0].sum(-1).exp(), images


def test_sampled_images_follow_upstreams_law(tmp_path):
    gpt, vq = build_llamagen_release(tmp_path / "release", seed=4, vocab_size=3, block_size=4)
    from tests.tiny_llamagen import VQ  # a 3-code GPT needs a 3-code tokenizer
    import tests.llamagen_reference_vq as vq_reference

    torch.manual_seed(5)
    torch.save({"model": vq_reference.VQModel(vq_reference.ModelArgs(**{**VQ, "codebook_size": 3})).state_dict()},
               vq)
    pipe = load_pipeline(convert_llamagen(gpt, vq, tmp_path / "model", 4, n_head=GPT["n_head"]), dtype="float64")
    pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=1))
    reference = reference_gpt(4, vocab_size=3, block_size=4).double()
    probs, images = _exact_law(reference, 2, 2.0, 2)
    assert abs(float(probs.sum()) - 1) < 1e-6
    index = {tuple(img): i for i, img in enumerate(images.tolist())}
    counts = torch.zeros(len(images), dtype=torch.int64)
    for seed in range(4):
        out = pipe.generate_tokens(input_ids=[[2]] * 400, mode="hawk+jacobi", num_nodes=16, seed=seed * 400,
                                   cfg_scale=2.0, temperature=1.0, top_k=2)
        for img in out.image_tokens.flatten(1).tolist():
            counts[index[tuple(img)]] += 1
    assert int(counts[probs == 0].sum()) == 0
    assert _chi2_pvalue(counts, probs, bins=12) > 1e-4
    assert out.tokens_per_pass > 1.0
    wrong, _ = _exact_law(reference, 2, 1.0, 2)  # negative control: no CFG
    assert _chi2_pvalue(counts, wrong, bins=12) < 1e-6


def test_images_encode_to_codes_that_decode_back(pipe):
    from PIL import Image

    images = [Image.new("RGB", (20, 12), (200, 30, 30)), Image.new("L", (8, 8), 90)]
    codes = pipe.encode_images(images)
    assert codes.shape == (2, 4, 4) and codes.dtype == torch.int64
    assert pipe.decode_pixels(codes).shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_bad_input_names_the_argument(pipe, model_dir):
    cases = [(dict(prompts=["a red cat"]), ValueError, "prompts: prompt 0 is 'a red cat'"),
             (dict(prompts=[GPT["num_classes"]]), ValueError, "prompts: prompt 0"),
             (dict(prompts=[True]), TypeError, "prompts: prompt 0"),
             (dict(prompts=[3], cfg_scale=0.5), ValueError, "cfg_scale: LlamaGen applies guidance only above 1"),
             (dict(prompts=[3], size=16), ValueError, "size: expected None, 8"),
             (dict(input_ids=[[3, 4]]), ValueError, "input_ids: row 0 has 2 ids"),
             (dict(input_ids=[[GPT["num_classes"] + 1]]), ValueError, "input_ids: row 0"),
             (dict(prompts=[]), TypeError, "prompts: expected a class label")]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message.replace("(", r"\(")):
            pipe.generate(mode="ar", **kwargs)
    with pytest.raises(ValueError, match="attn_implementation: LlamaGen"):
        load_pipeline(model_dir, device="cpu", attn_implementation="eager")


def test_conversion_refuses_what_it_cannot_convert(tmp_path):
    gpt, vq = build_llamagen_release(tmp_path / "release")
    state = torch.load(gpt, weights_only=True)["model"]
    with pytest.raises(ValueError, match="none of LlamaGen's sizes .* pass n_head"):
        convert_llamagen(gpt, vq, tmp_path / "a", IMAGE_SIZE)
    with pytest.raises(ValueError, match="gpt_model: GPT-B has 12 layers"):
        convert_llamagen(gpt, vq, tmp_path / "a", IMAGE_SIZE, gpt_model="GPT-B")
    with pytest.raises(ValueError, match="image_size: the VQ model makes 2 px per code"):
        convert_llamagen(gpt, vq, tmp_path / "a", 7, n_head=4)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="out_dir: .* not an empty directory"):
        convert_llamagen(gpt, vq, tmp_path / "full", IMAGE_SIZE, n_head=4)
    for name, broken in (("missing", {k: v for k, v in state.items() if k != "layers.1.ffn_norm.weight"}),
                         ("t2i", {**{k: v for k, v in state.items() if not k.startswith("cls_embedding")},
                                  "cls_embedding.cap_proj.fc1.weight": torch.zeros(64, 2048)}),
                         ("nan", {**state, "norm.weight": torch.full_like(state["norm.weight"], float("nan"))})):
        path = tmp_path / f"{name}.pt"
        torch.save({"model": broken}, path)
        with pytest.raises(ValueError, match="gpt_checkpoint: "):
            convert_llamagen(path, vq, tmp_path / name, IMAGE_SIZE, n_head=4)
        assert not (tmp_path / name).exists()  # nothing half-written
    # a training checkpoint as upstream's train_c2i.py saves it (optimizer, steps, its argparse args) converts
    import argparse

    trained = tmp_path / "0050000.pt"
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "steps": 50000,
                "args": argparse.Namespace(gpt_model="GPT-B", image_size=8, lr=1e-4)}, trained)
    vq_trained = tmp_path / "vq_0050000.pt"
    torch.save({"model": torch.load(vq, weights_only=True)["model"], "args": argparse.Namespace(vq_model="VQ-16")},
               vq_trained)
    assert (convert_llamagen(trained, vq_trained, tmp_path / "trained", IMAGE_SIZE, n_head=4) / "config.json").is_file()
    # an FSDP-style bare state dict with a saved rotary table converts (the table is not a weight), in bfloat16
    bare = tmp_path / "bare.pt"
    torch.save({**state, "freqs_cis": torch.zeros(17, 8, 2)}, bare)
    out = convert_llamagen(bare, vq, tmp_path / "bf16", IMAGE_SIZE, n_head=4, dtype="bfloat16")
    assert load_pipeline(out, device="cpu").model.dtype == torch.bfloat16


def test_the_gpt_traces_in_one_graph(pipe):
    """CI's cheap guard for compile="auto" on a GPU (the full inductor run is the slow test below): the GPT's
    forward, cache writes included, traces with fullgraph=True (a graph break raises)."""
    backbone = pipe.backbone(pipe.layout(None))
    cache = backbone.new_cache(2, 128)
    backbone.prefill(cache, torch.tensor([[3], [10]]), torch.ones(2, 1, dtype=torch.bool))
    traced = torch.compile(backbone.forward_tree, backend="eager", fullgraph=True)
    embeds = backbone.embed_image_tokens(torch.tensor([[1, 2], [1, 2]]))
    hidden = traced(cache, embeds, torch.tensor([0, 1]), torch.ones(2, 2, dtype=torch.bool).tril())
    assert hidden.shape == (2, 2, GPT["dim"])


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["ar", "hawk+jacobi"])
def test_cuda_graphs_replay_like_eager(model_dir, mode):
    """On a GPU the LlamaGen step is captured once and replayed (no silent eager fallback) with the family's
    defaults (CFG 4, top-k 2000) and gives the eager run's tokens."""
    import warnings

    pipe = load_pipeline(model_dir, device="cuda", dtype="float32", compile=False)
    pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=2))
    decoder = pipe.decoder(mode, None, 16)
    runs = {}
    for graphed in (False, True):
        decoder.cuda_graphs = graphed
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            runs[graphed] = pipe.generate_tokens([3, 7, 1, 0], mode=mode, seed=3, num_nodes=16)
    assert all(out.cuda_graph for out in runs[True].outputs)
    assert torch.equal(runs[True].image_tokens, runs[False].image_tokens)


@pytest.mark.slow
@pytest.mark.parametrize("compile", [True, "regional"])
def test_step_compiles_and_equals_eager(model_dir, compile):
    """compile=True (what "auto" does on a GPU) and "regional" on the LlamaGen backbone: one graph, the eager
    step's tokens (hawk+jacobi, the family's defaults, CFG on)."""
    runs = {}
    for word in (False, compile):
        pipe = load_pipeline(model_dir, compile=word)
        torch.manual_seed(0)
        pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=2))
        runs[word] = pipe.generate_tokens([3, 7], mode="hawk+jacobi", seed=3, num_nodes=16)
    assert all(out.step_engine == "compiled" for out in runs[compile].outputs)
    assert torch.equal(runs[compile].image_tokens, runs[False].image_tokens)
