"""The Chameleon / Lumina-mGPT VQGAN decoder: Meta's public checkpoint names load through the key converter,
codes decode to images of the right size, and the decoder's shapes agree with transformers' encoder config."""
import pytest
import torch
from transformers import ChameleonVQVAE, ChameleonVQVAEConfig

from hawk_kernels.pipelines.chameleon_vqgan import ChameleonVQGANDecoder

# 3 levels (4 px per code), a channel change (nin_shortcut), attention at the deepest level's resolution
CONFIG = dict(embed_dim=8, num_embeddings=16, latent_channels=32, resolution=64, base_channels=32,
              channel_multiplier=[1, 1, 2], num_res_blocks=1, attn_resolutions=[16])


def _public_decoder_shapes(ch, mult, blocks, z, embed, codes, resolution, attn_resolutions):
    """name -> shape of every decoder tensor in the public checkpoint, enumerated by the public architecture's
    rules (taming-transformers' Decoder: levels built deepest first and stored top-first as `up.{level}`)."""
    shapes = {"quantize.embedding.weight": (codes, embed), "post_quant_conv.weight": (z, embed, 1, 1),
              "post_quant_conv.bias": (z,)}

    def conv(name, out, inp, k):
        shapes.update({f"{name}.weight": (out, inp, k, k), f"{name}.bias": (out,)})

    def norm(name, c):
        shapes.update({f"{name}.weight": (c,), f"{name}.bias": (c,)})

    def resnet(name, inp, out):
        norm(f"{name}.norm1", inp), conv(f"{name}.conv1", out, inp, 3), norm(f"{name}.norm2", out)
        conv(f"{name}.conv2", out, out, 3)
        if inp != out:
            conv(f"{name}.nin_shortcut", out, inp, 1)

    def attention(name, c):
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    block_in, res = ch * mult[-1], resolution // 2 ** (len(mult) - 1)
    conv("decoder.conv_in", block_in, z, 3)
    resnet("decoder.mid.block_1", block_in, block_in), attention("decoder.mid.attn_1", block_in)
    resnet("decoder.mid.block_2", block_in, block_in)
    for level in reversed(range(len(mult))):
        for j in range(blocks + 1):
            resnet(f"decoder.up.{level}.block.{j}", block_in, ch * mult[level])
            block_in = ch * mult[level]
            if res in attn_resolutions:
                attention(f"decoder.up.{level}.attn.{j}", block_in)
        if level != 0:
            conv(f"decoder.up.{level}.upsample.conv", block_in, block_in, 3)
            res *= 2
    norm("decoder.norm_out", block_in), conv("decoder.conv_out", 3, block_in, 3)
    return shapes


def _public_checkpoint(path, config):
    """A random VQGAN saved as Meta's vqgan.ckpt is: {"state_dict": ...} with the transformers encoder's names
    (the same as the public ones), the decoder under the public names, and a training-only entry."""
    torch.manual_seed(0)
    shapes = _public_decoder_shapes(config.base_channels, config.channel_multiplier, config.num_res_blocks,
                                    config.latent_channels, config.embed_dim, config.num_embeddings,
                                    config.resolution, config.attn_resolutions)
    state = {name: torch.randn(shape) * 0.1 for name, shape in shapes.items()}
    encoder = ChameleonVQVAE(config)
    state.update({k: v for k, v in encoder.state_dict().items() if not k.startswith(("quantize.", "post_quant"))})
    state["loss.discriminator.main.0.weight"] = torch.zeros(2)
    torch.save({"state_dict": state}, path)
    return state, encoder


def test_public_checkpoint_loads_through_the_converter_and_decodes(tmp_path):
    config = ChameleonVQVAEConfig(**CONFIG)
    state, _ = _public_checkpoint(tmp_path / "vqgan.ckpt", config)
    decoder = ChameleonVQGANDecoder.from_checkpoint(tmp_path / "vqgan.ckpt", config)
    ours = decoder.state_dict()
    decoder_names = [k for k in state if k.startswith(("decoder.", "quantize.", "post_quant_conv."))]
    assert len(ours) == len(decoder_names)  # every public decoder tensor lands somewhere, nothing else
    assert torch.equal(ours["codebook.weight"], state["quantize.embedding.weight"])
    assert torch.equal(ours["up.0.upsample.conv.weight"], state["decoder.up.2.upsample.conv.weight"])  # deepest
    assert torch.equal(ours["up.2.block.1.conv2.weight"], state["decoder.up.0.block.1.conv2.weight"])  # top
    assert torch.equal(ours["up.0.attn.1.q.weight"], state["decoder.up.2.attn.1.q.weight"])
    codes = torch.randint(0, 16, (2, 3, 5))
    with torch.no_grad():
        pixels = decoder(codes)
    assert pixels.shape == (2, 3, 12, 20) and decoder.pixels_per_code == 4
    assert bool(torch.isfinite(pixels).all())


def test_encoder_and_decoder_shapes_agree_with_the_transformers_config(tmp_path):
    config = ChameleonVQVAEConfig(**CONFIG)
    _, encoder = _public_checkpoint(tmp_path / "vqgan.ckpt", config)
    decoder = ChameleonVQGANDecoder.from_checkpoint(tmp_path / "vqgan.ckpt", config)
    image = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        encoded = encoder.encode(image)
        codes = encoded.image_tokens.view(2, 32 // 4, 48 // 4)
        assert encoded.last_hidden_state.shape[1] == decoder.conv_in.in_channels == config.latent_channels
        assert encoder.quantize.embedding.weight.shape == decoder.codebook.weight.shape
        assert encoder.encoder.conv_out.in_channels == decoder.conv_in.out_channels  # the deepest width
        assert decoder(codes).shape == image.shape


def test_a_checkpoint_of_another_shape_is_refused(tmp_path):
    _public_checkpoint(tmp_path / "vqgan.ckpt", ChameleonVQVAEConfig(**CONFIG))
    other = ChameleonVQVAEConfig(**{**CONFIG, "channel_multiplier": [1, 2, 2]})
    with pytest.raises(ValueError, match="path: .* does not hold a VQGAN decoder"):
        ChameleonVQGANDecoder.from_checkpoint(tmp_path / "vqgan.ckpt", other)
