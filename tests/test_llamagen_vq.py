"""The LlamaGen VQ tokenizer (hawk_kernels/pipelines/llamagen_vq.py) against the transcription of upstream's
vq_model.py (tests/llamagen_reference_vq.py): upstream checkpoints load by name, decode and encode agree with
upstream's, bad checkpoints are refused naming the file, and the released VQ-16 config has upstream's size."""
import json

import pytest
import torch
from safetensors.torch import save_file

import llamagen_reference_vq as reference
from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQConfig, LlamaGenVQModel, read_vq_checkpoint

# 2 levels (2 px per code): a downsample / upsample, a channel change (nin_shortcut), attention at the deepest
TINY = dict(codebook_size=64, codebook_embed_dim=8, encoder_ch_mult=(1, 2), decoder_ch_mult=(1, 2), z_channels=32,
            ch=32, num_res_blocks=2)


def _reference(l2_norm=True, seed=0):
    """A reference VQModel with every weight random (GroupNorm affines and biases too; a codebook that is not
    unit-norm, so the l2 normalisation matters), in eval mode."""
    torch.manual_seed(seed)
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
    model = reference.VQModel(reference.ModelArgs(codebook_l2_norm=l2_norm, **args)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn_like(param) if name == "quantize.embedding.weight"
                        else param + 0.05 * torch.randn_like(param))
        model.quantize.codebook_used.copy_(torch.randint(0, 64, (65536,)).float())  # training statistics
    return model


def _config(l2_norm=True):
    return LlamaGenVQConfig(codebook_l2_norm=l2_norm, **TINY)


def _save(tmp_path, state, name="vq.pt"):
    path = tmp_path / name
    torch.save({"model": state}, path)
    return path


@pytest.mark.parametrize("l2_norm", [True, False])
def test_upstream_checkpoint_loads_and_decodes_as_upstream(tmp_path, l2_norm):
    ref = _reference(l2_norm)
    path = _save(tmp_path, ref.state_dict())
    assert "quantize.codebook_used" in ref.state_dict()
    ours = LlamaGenVQModel.from_checkpoint(path, _config(l2_norm))
    assert not ours.training and all(p.dtype == torch.float32 for p in ours.parameters())
    assert set(ours.state_dict()) == set(ref.state_dict()) - {"quantize.codebook_used"}  # same names exactly
    torch.manual_seed(1)
    codes = torch.randint(0, 64, (2, 3, 5))
    qzshape = [2, 8, 3, 5]
    with torch.no_grad():
        expected32 = ref.decode_code(codes.flatten(1), qzshape)  # as upstream's sample scripts call it
        got32 = ours.decode_codes(codes)
        assert got32.shape == (2, 3, 6, 10)
        torch.testing.assert_close(got32, expected32, rtol=0, atol=1e-5)
        expected64 = ref.double().decode_code(codes.flatten(1), qzshape)
        got64 = ours.double().decode_codes(codes)
    assert (expected64 - got64).abs().max() <= 1e-12


@pytest.mark.parametrize("l2_norm", [True, False])
def test_encode_gives_upstream_codes(l2_norm):
    ref = _reference(l2_norm, seed=2)
    ours = LlamaGenVQModel(_config(l2_norm))
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k != "quantize.codebook_used"})
    ref, ours = ref.double(), ours.double().eval()
    torch.manual_seed(3)
    pixels = torch.rand(3, 3, 12, 16, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        codes = ours.encode(pixels)
        expected = ref.encode(pixels)[2][2].reshape(3, 6, 8)
    assert codes.dtype == torch.int64 and codes.shape == (3, 6, 8)
    assert torch.equal(codes, expected)
    assert len(codes.unique()) > 1  # the test tells codes apart


def test_decode_of_encode_has_the_input_shape(tmp_path):
    ours = LlamaGenVQModel.from_checkpoint(_save(tmp_path, _reference(seed=4).state_dict()), _config())
    torch.manual_seed(5)
    pixels = torch.rand(2, 3, 8, 12) * 2 - 1
    with torch.no_grad():
        codes = ours.encode(pixels)
        out = ours.decode_codes(codes)
    assert codes.shape == (2, 4, 6) and int(codes.min()) >= 0 and int(codes.max()) < 64
    assert out.shape == pixels.shape and out.dtype == torch.float32 and bool(torch.isfinite(out).all())


def test_bare_and_safetensors_checkpoints_load(tmp_path):
    state = _reference(seed=6).state_dict()
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    safe = tmp_path / "vq.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safe))
    for path in (bare, safe):
        assert torch.equal(read_vq_checkpoint(path)["quantize.embedding.weight"], state["quantize.embedding.weight"])
        model = LlamaGenVQModel.from_checkpoint(path, _config())
        assert torch.equal(model.state_dict()["decoder.conv_out.weight"], state["decoder.conv_out.weight"])


def _broken(tmp_path, kind):
    state = dict(_reference(seed=7).state_dict())
    if kind == "missing":
        del state["decoder.conv_blocks.0.attn.1.q.weight"]
    elif kind == "wrong shape":
        state["quant_conv.weight"] = torch.zeros(4, 32, 1, 1)
    elif kind == "nan":
        state["encoder.mid.0.conv1.weight"] = state["encoder.mid.0.conv1.weight"].clone().fill_(float("nan"))
    elif kind == "text":
        path = tmp_path / "notes.pt"
        path.write_text("not a checkpoint\n")
        return path
    elif kind == "not a dict":
        path = tmp_path / "list.pt"
        torch.save([torch.zeros(2)], path)
        return path
    return _save(tmp_path, state, f"{kind.replace(' ', '_')}.pt")


@pytest.mark.parametrize("kind", ["missing", "wrong shape", "nan", "text", "not a dict"])
def test_bad_checkpoints_are_refused_naming_the_file(tmp_path, kind):
    path = _broken(tmp_path, kind)
    with pytest.raises(ValueError, match="path: .*" + path.name):
        LlamaGenVQModel.from_checkpoint(path, _config())


def test_bad_inputs_name_the_argument():
    model = LlamaGenVQModel(_config()).eval()
    with pytest.raises(ValueError, match="codes: values must lie in \\[0, 64\\)"):
        model.decode_codes(torch.full((1, 2, 2), 64))
    with pytest.raises(ValueError, match="codes: expected an integer tensor"):
        model.decode_codes(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="pixels: height and width must be multiples of 2"):
        model.encode(torch.zeros(1, 3, 5, 4))
    with pytest.raises(ValueError, match="pixels: expected a floating tensor"):
        model.encode(torch.zeros(1, 1, 4, 4))


def test_config_round_trips_and_rejects_unknown_keys_and_bad_values():
    config = _config(l2_norm=False)
    assert LlamaGenVQConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="codebook_show_usage"):
        LlamaGenVQConfig.from_dict({**config.to_dict(), "codebook_show_usage": True})
    with pytest.raises(ValueError, match="codebook_size"):
        LlamaGenVQConfig.from_dict({**config.to_dict(), "codebook_size": 0})
    with pytest.raises(ValueError, match="decoder_ch_mult"):
        LlamaGenVQConfig.from_dict({**config.to_dict(), "decoder_ch_mult": [1, 1.5]})
    with pytest.raises(ValueError, match="codebook_l2_norm"):
        LlamaGenVQConfig.from_dict({**config.to_dict(), "codebook_l2_norm": "yes"})


@pytest.mark.parametrize("name, ppc", [("VQ_16", 16), ("VQ_8", 8)])
def test_released_configs_have_upstream_names_shapes_and_size(name, ppc):
    """Built full size on the meta device (no memory, no init cost): VQ-16 is the default config."""
    mult = (1, 1, 2, 2, 4) if name == "VQ_16" else (1, 2, 2, 4)
    config = LlamaGenVQConfig() if name == "VQ_16" else LlamaGenVQConfig(encoder_ch_mult=mult, decoder_ch_mult=mult)
    assert config.pixels_per_code == ppc
    with torch.device("meta"):
        ref, ours = getattr(reference, name)(), LlamaGenVQModel(config)
    expected = {k: v.shape for k, v in ref.state_dict().items() if k != "quantize.codebook_used"}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
