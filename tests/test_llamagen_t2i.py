"""LlamaGen text-to-image (t2i) against upstream's own code (tests/llamagen_reference.py: gpt.py's caption path,
generate.py's caption masks, language/t5.py's embeddings and sample_t2i.py's left-padding): a release converted
with its T5 loads as users load it, greedy decoding in every mode equals upstream's generate for captions of
different lengths (CFG on and off, a caption past the caption length truncated as upstream truncates it), the
hidden states head training reads are the decoder's, and bad input fails early naming the argument."""
import pytest
import torch
from transformers import AutoTokenizer, T5EncoderModel

from hawk_kernels.drafts import MODES
from hawk_kernels.pipelines import load_pipeline
from hawk_kernels.pipelines.llamagen_convert import convert_llamagen
from hawk_kernels.training.batch_losses import backbone_hidden
from tests import llamagen_reference as upstream
from tests.tiny_llamagen import (GPT, IMAGE_SIZE, T2I, build_llamagen_release, build_llamagen_t2i, build_t5,
                                 reference_t2i_gpt)

PROMPTS = ["a red cat", "Dog on the grass blue sky fox", "a fox in snow on the grass blue sky a red dog"]  # 3rd: > 8


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_llamagen_t2i(tmp_path_factory.mktemp("llamagen_t2i"))


@pytest.fixture(scope="module")
def pipe(release):
    pipe = load_pipeline(release[0], device="cpu", dtype=torch.float64)
    torch.manual_seed(0)
    pipe.set_heads(pipe.make_heads(num_horizontal=3, vertical_depth=2))
    return pipe


def _upstream(release, prompts, cfg_scale):
    tokenizer = AutoTokenizer.from_pretrained(str(release[1]))
    t5 = T5EncoderModel.from_pretrained(str(release[1])).double().eval()
    with torch.no_grad():
        captions, masks = upstream.caption_embeddings(tokenizer, t5, prompts, max_length=T2I["cls_token_num"])
    return upstream.generate(reference_t2i_gpt(0).double(), captions, GPT["block_size"], masks, cfg_scale=cfg_scale,
                             sample_logits=False)


def test_the_release_converts_with_its_t5(release, pipe):
    assert pipe.captions and pipe.defaults == dict(cfg_scale=7.5, temperature=1.0, top_k=1000)
    assert pipe.model.config.cls_token_num == T2I["cls_token_num"] and pipe.model.text_encoder is not None
    assert pipe.model.text_encoder.dtype == torch.float64  # moves with the model
    rows = pipe.prompt_rows(PROMPTS[:1], None, pipe.layout(None))
    assert len(rows.conditional[0]) == T2I["cls_token_num"] and rows.conditional[0][:4] == [0] * 4  # left-padded
    assert rows.unconditional[0][:4] == [0] * 4 and set(rows.unconditional[0][4:]) == {
        pipe.backbone(pipe.layout(None)).null_caption_id}  # the null caption, masked like its prompt


@pytest.mark.parametrize("cfg_scale", [1.0, 7.5])
def test_greedy_equals_upstream_generate_in_every_mode(release, pipe, cfg_scale):
    expected = _upstream(release, PROMPTS, cfg_scale)
    for mode in MODES:
        out = pipe.generate(PROMPTS, mode=mode, temperature=0, cfg_scale=cfg_scale, num_nodes=8)
        assert torch.equal(out.image_tokens.flatten(1), expected), mode
    assert out.images[0].size == (IMAGE_SIZE, IMAGE_SIZE)
    ids = AutoTokenizer.from_pretrained(str(release[1]))(PROMPTS[0]).input_ids
    by_ids = pipe.generate_tokens(input_ids=[ids], mode="hawk+jacobi", temperature=0, cfg_scale=cfg_scale)
    assert torch.equal(by_ids.image_tokens.flatten(1), expected[:1])
    prompt = by_ids.sequences[0][:T2I["cls_token_num"]]  # an output's prompt, its left padding included
    again = pipe.generate_tokens(input_ids=[prompt.tolist()], mode="ar", temperature=0, cfg_scale=cfg_scale)
    assert torch.equal(again.image_tokens, by_ids.image_tokens)


def test_head_training_reads_the_decoders_hidden_states(release, pipe):
    """backbone_hidden over (caption, codes) sequences gives upstream's teacher-forced logits: the captions
    through T5 with their padding masked, the image at upstream's positions."""
    out = pipe.generate_tokens(PROMPTS[:2], mode="ar", temperature=0, cfg_scale=1.0)
    sequences = torch.stack(out.sequences)
    width = T2I["cls_token_num"]
    backbone = pipe.backbone(pipe.layout(None))
    hidden = backbone_hidden(backbone, sequences, width, torch.full((2,), width))
    ours = backbone.image_logits(hidden[:, width - 1:-1])
    tokenizer = AutoTokenizer.from_pretrained(str(release[1]))
    t5 = T5EncoderModel.from_pretrained(str(release[1])).double().eval()
    reference = reference_t2i_gpt(0).double()
    with torch.no_grad():
        captions, masks = upstream.caption_embeddings(tokenizer, t5, PROMPTS[:2], max_length=width)
        upstream.generate(reference, captions, GPT["block_size"], masks, sample_logits=False)  # caches, masks
        first = reference(None, captions, torch.arange(0, width))[:, -1:]
        codes = out.image_tokens.flatten(1)
        rest = reference(codes[:, :-1], None, torch.arange(width, width + codes.shape[1] - 1))
    assert (ours - torch.cat([first, rest], 1)).abs().max() < 1e-5  # upstream's logits are float32


def test_bad_input_names_the_argument(release, pipe, tmp_path):
    null = pipe.backbone(pipe.layout(None)).null_caption_id
    cases = [(dict(input_ids=[[4, 0, 5, 1]]), "input_ids: row 0 has 4 T5 ids with the pad id"),
             (dict(input_ids=[[0, 0]]), "input_ids: row 0 has 0 T5 ids"),
             (dict(input_ids=[[4] * 9]), "input_ids: row 0 has 9 T5 ids; a LlamaGen t2i caption is 1 to 8"),
             (dict(input_ids=[[null]]), "input_ids: row 0"),
             (dict(prompts=[" "]), "prompts: prompt 0 is empty"),
             (dict(prompts=["a cat"], cfg_scale=0.5), "cfg_scale: LlamaGen applies guidance only above 1")]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            pipe.generate(mode="ar", **kwargs)
    gpt, vq = build_llamagen_release(tmp_path / "c2i")
    with pytest.raises(ValueError, match="t5: given, but the GPT is class-conditional"):
        convert_llamagen(gpt, vq, tmp_path / "a", IMAGE_SIZE, n_head=4, t5=release[1])
    t2i_gpt = release[0].parent / "release" / f"t2i_tiny_{IMAGE_SIZE}.pt"
    with pytest.raises(ValueError, match="t5: a t2i GPT reads T5 captions"):
        convert_llamagen(t2i_gpt, vq, tmp_path / "b", IMAGE_SIZE, n_head=4)
    narrow = build_t5(tmp_path / "narrow")
    import json

    config = json.loads((narrow / "config.json").read_text())
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(T5Config(**{**config, "d_model": 8})).save_pretrained(narrow)
    with pytest.raises(ValueError, match="t5: its width is 8"):
        convert_llamagen(t2i_gpt, vq, tmp_path / "c", IMAGE_SIZE, n_head=4, t5=narrow)
    assert not any((tmp_path / name).exists() for name in "abc")
