"""What a user of each family's real checkpoint runs into past the first image (tests/real_shapes.py's reduced
builds at the released layouts, and tests/tiny_families.py's even smaller ones with the same layouts): pixels
from codes of their own, a longer negative prompt, a previous output's prompt reused at another size. Each case
was found by using the pipelines as a user would; each gives a clear exception naming the argument, or the
documented output."""
from __future__ import annotations

import pytest
import torch

from hawk_kernels.pipelines import load_pipeline
from tests.real_shapes import build
from tests.tiny_families import build_chameleon, build_emu3, build_janus


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    dirs = {"janus": build_janus(tmp_path_factory.mktemp("janus")),
            "emu3": build_emu3(tmp_path_factory.mktemp("emu3")),
            "chameleon": build_chameleon(tmp_path_factory.mktemp("chameleon"))}
    return {family: load_pipeline(directory) for family, directory in dirs.items()}


@pytest.fixture(scope="module")
def lumina(tmp_path_factory):
    """Lumina-mGPT at its released vocabulary, tokenizer and prompt template (2 layers, hidden 64)."""
    directory = build("chameleon", tmp_path_factory.mktemp("lumina"), vq="reduced").directory
    return load_pipeline(directory, dtype="float32")


# --- codes -> pixels ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
@pytest.mark.parametrize("shape", [(4, 4), (0, 4, 4), (1, 4, 4, 1)])
def test_decode_pixels_names_codes_that_are_not_one_grid_per_image(tiny, family, shape):
    """decode_pixels takes [B, H, W] codes. A single [H, W] grid, an empty batch or an extra axis failed deep
    inside the VQ decoders ("not enough values to unpack", "permute(sparse_coo)", "cannot reshape tensor of 0
    elements", transformers' "image_tokens ... (batch_size, 16)")."""
    with pytest.raises(ValueError, match=r"codes: expected a \[B, H, W\] tensor of VQ codes"):
        tiny[family].decode_pixels(torch.zeros(shape, dtype=torch.long))


def test_janus_decode_pixels_names_its_one_grid(tiny):
    """Janus's VQ decoder takes its model's grid only (4 x 4 here, 24 x 24 released): other grids were refused by
    transformers with the flattened shape ("(batch_size, 16) ... [1, 36]"), naming neither `codes` nor the grid."""
    pipe = tiny["janus"]
    with pytest.raises(ValueError, match=r"codes: expected \[B, 4, 4\] \(this Janus model decodes 4 x 4 codes"):
        pipe.decode_pixels(torch.zeros(1, 6, 6, dtype=torch.long))
    assert pipe.decode_pixels(torch.zeros(2, 4, 4, dtype=torch.long)).shape == (2, 3, 64, 64)


# --- Emu3: the negative prompt -------------------------------------------------------------------------------------
def test_emu3_a_negative_prompt_beyond_the_positions_is_named(tiny, monkeypatch):
    """The CFG branch is pipe.negative_prompt; one too long for the model's positions was reported as the user's
    prompt ("prompts: prompt 0 has 302 tokens"), though the prompt was three words."""
    pipe = tiny["emu3"]
    monkeypatch.setattr(pipe, "negative_prompt", "red " * 300)
    with pytest.raises(ValueError, match=r"negative_prompt: the CFG branch's prompt has \d+ tokens; with the "
                                         r"20-token image they exceed the model's max_position_embeddings=256"):
        pipe.generate_tokens(["a red cat"], size=32, mode="ar", num_nodes=1)
    monkeypatch.setattr(pipe, "negative_prompt", "red " * 8)
    out = pipe.generate_tokens(["a red cat"], size=32, mode="ar", num_nodes=1, temperature=0)
    assert out.image_tokens.shape == (1, 4, 4)


def test_emu3_takes_a_negative_prompt_per_call_and_per_image(tiny, monkeypatch):
    """generate(negative_prompt=...): one text for every image, or one per image (None: the pipeline's own), each
    image as it is with that text set as pipe.negative_prompt; prompts and negatives of several lengths in one
    batch; refused by name where it cannot apply."""
    pipe = tiny["emu3"]
    kw = dict(size=32, mode="ar", num_nodes=1, seed=[4, 5])
    prompts = ["a red cat", "a small blue dog on a bench"]
    both = pipe.generate_tokens(prompts, negative_prompt=["blurry", None], **kw)
    for i, prompt in enumerate(prompts):
        with monkeypatch.context() as m:
            if i == 0:
                m.setattr(pipe, "negative_prompt", "blurry")
            alone = pipe.generate_tokens([prompt], **dict(kw, seed=4 + i))
        assert torch.equal(both.image_tokens[i], alone.image_tokens[0]), i
    grid, sampling = pipe.layout(32), pipe._prepare("ar", 32, None, None, None, None)[1]
    rows = pipe.call_rows(prompts, None, grid, sampling, "blurry")
    assert rows.unconditional[0] == rows.unconditional[1] == pipe._encode("blurry", grid, "negative_prompt")
    assert rows.unconditional[0] != pipe.prompt_rows(prompts, None, grid).unconditional[0]
    streamed = pipe.generate_tokens(prompts, negative_prompt=["blurry", None], batch_size=1, **kw)  # a session
    assert torch.equal(streamed.image_tokens, both.image_tokens)
    for kwargs, error, match in [(dict(negative_prompt="blurry", cfg_scale=1.0), ValueError, "cfg_scale == 1"),
                                 (dict(negative_prompt=["blurry"]), ValueError, r"one per image \(2\), got 1"),
                                 (dict(negative_prompt=3), TypeError, "negative_prompt: expected a str")]:
        with pytest.raises(error, match=match):
            pipe.generate_tokens(prompts, **kwargs, **kw)
    for family, branch in [("janus", "pad tokens"), ("chameleon", "image start and size tokens")]:
        with pytest.raises(ValueError, match=f"negative_prompt: this {family} model's CFG branch is .*{branch}"):
            tiny[family].generate_tokens(["a red cat"], negative_prompt="blurry", mode="ar")


# --- Lumina-mGPT: a previous output's prompt ------------------------------------------------------------------------
def test_lumina_input_ids_whose_text_asks_for_another_size_are_refused(lumina):
    """A Lumina-mGPT prompt states its size in the text ("Generate an image of 64x64 ...") and in the two size
    tokens after the image start. A previous output's prompt cut before the image start and passed with another
    `size` was completed with that size's tokens under the text's size: an image conditioned on both, silently.
    At its own size it gives the text prompt's image."""
    first = lumina.generate_tokens(["a red fox"], size=64, mode="ar", temperature=0)
    grid = lumina.layout(64)
    prompt = first.sequences[0][:-grid.num_body_tokens - 1 - 3]  # without the image start and size tokens
    assert lumina.processor.decode(prompt).endswith("64x64 according to the following prompt:\na red fox"
                                                    "<reserved08706>")
    for size in (128, (64, 96), None):
        with pytest.raises(ValueError, match=r"size: input_ids row 0 asks in its text for an image of 64x64 px"):
            lumina.generate_tokens(input_ids=prompt, size=size, mode="ar", temperature=0)
    again = lumina.generate_tokens(input_ids=prompt, size=64, mode="ar", temperature=0)
    assert torch.equal(again.sequences[0], first.sequences[0])
    wide = lumina.prompt_rows(["a red fox"], None, lumina.layout((64, 96))).conditional[0][:-3]
    assert lumina.generate_tokens(input_ids=[wide], size=(64, 96), mode="ar", temperature=0).image_tokens.shape == (
        1, 4, 6)
