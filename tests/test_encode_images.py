"""`encode_images`: real images -> the image tokens each family generates, on tiny random checkpoints loaded the
way a user loads them. Tokens equal the family's own transformers path computed here independently (image
processor -> VQ encoder -> the vocabulary map), lie in the grid's image-token range with the layout's shape
(non-square layouts included), are deterministic and batch-independent; Lumina-mGPT encodes with the vqgan.ckpt
encoder (or warns that it uses the model's own); the demo's trained PatchVQ round-trips exactly; bad input fails
clearly."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

import hawk_kernels as hk
from hawk_kernels.pipelines import load_pipeline
from tests.tiny_families import build_chameleon, build_emu3, build_janus

SIZES = {"janus": None, "emu3": 32, "chameleon": 64}  # 4 x 4 codes each
PIXELS = {"janus": 64, "emu3": 32, "chameleon": 64}


def _images(n: int, width: int, height: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    chameleon = build_chameleon(tmp_path_factory.mktemp("chameleon"))
    # vqgan.ckpt's encoder differs from the one inside the model checkpoint, so the tests see which is used
    state = torch.load(chameleon / "vqgan.ckpt", weights_only=True)
    generator = torch.Generator().manual_seed(3)
    for key, value in state["state_dict"].items():
        if key.startswith(("encoder.", "quant_conv.")) and value.is_floating_point():
            value.add_(torch.randn(value.shape, generator=generator, dtype=value.dtype) * value.std().nan_to_num(0.1))
    torch.save(state, chameleon / "vqgan.ckpt")
    return {"janus": load_pipeline(build_janus(tmp_path_factory.mktemp("janus"))),
            "emu3": load_pipeline(build_emu3(tmp_path_factory.mktemp("emu3"))),
            "chameleon": load_pipeline(chameleon)}


@pytest.fixture(scope="module")
def demo():
    return hk.load_demo_pipeline(device="cpu")


def _check_tokens(pipe, tokens, size, batch):
    grid = pipe.layout(size)
    lo, hi = grid.image_token_range
    assert tokens.shape == (batch, grid.height, grid.width) and tokens.dtype == torch.int64
    assert tokens.device.type == "cpu"
    assert lo <= int(tokens.min()) and int(tokens.max()) < hi


# --- the family's own transformers path ------------------------------------------------------------------
def test_janus_tokens_equal_processor_and_vq_encoder(pipes):
    pipe, images = pipes["janus"], _images(3, 64, 64)
    tokens = pipe.encode_images(images)
    _check_tokens(pipe, tokens, None, 3)
    # the saved processor's size is transformers' default (384 px); the layout's is 64 px
    pixels = pipe.processor.image_processor(images=images, size={"height": 64, "width": 64},
                                            return_tensors="pt").pixel_values
    codes = pipe.model.model.vqmodel.encode(pixels.to(torch.float64)).image_tokens
    assert torch.equal(tokens, codes.reshape(3, 4, 4))
    assert torch.equal(pipe.codes(tokens), tokens)  # Janus image tokens are the codes
    assert pipe.decode_pixels(pipe.codes(tokens)).shape == (3, 3, 64, 64)


@pytest.mark.parametrize("size", [32, (32, 48)])
def test_emu3_tokens_equal_get_image_tokens(pipes, size):
    pipe = pipes["emu3"]
    height, width = (size, size) if isinstance(size, int) else size
    images = _images(2, width, height)
    tokens = pipe.encode_images(images, size=size)
    _check_tokens(pipe, tokens, size, 2)
    processor = copy.deepcopy(pipe.processor.image_processor)
    processor.min_pixels = 16 * 16  # keeps these small images at their size (Emu3's smart resize)
    inputs = processor(images, return_tensors="pt")
    assert inputs.pixel_values.shape[-2:] == (height, width)
    flat = pipe.model.model.get_image_tokens(inputs.pixel_values, inputs.image_sizes)  # rows end with EOL
    assert torch.equal(tokens, flat.reshape(2, height // 8, width // 8 + 1)[..., :-1])
    codes = pipe.codes(tokens)
    assert 0 <= int(codes.min()) and int(codes.max()) < 16
    assert pipe.decode_pixels(codes).shape == (2, 3, height, width)


@pytest.mark.parametrize("size", [64, (64, 96)])
def test_lumina_tokens_equal_get_image_tokens_with_vqgan_encoder(pipes, size):
    """Lumina-mGPT's own path (its data pipeline: ChameleonImageProcessor without resize or crop, then
    get_image_tokens), with the encoder weights of vqgan.ckpt loaded into the model."""
    from transformers import ChameleonImageProcessorPil

    pipe = pipes["chameleon"]
    height, width = (size, size) if isinstance(size, int) else size
    images = _images(2, width, height)
    tokens = pipe.encode_images(images, size=size)
    _check_tokens(pipe, tokens, size, 2)
    pixels = ChameleonImageProcessorPil(do_resize=False, do_center_crop=False)(images=images,
                                                                              return_tensors="pt").pixel_values
    reference = copy.deepcopy(pipe.model).float()
    state = torch.load(pipe.vqgan_path, weights_only=True)["state_dict"]
    reference.model.vqmodel.load_state_dict({k: state[k] for k in reference.model.vqmodel.state_dict()})
    expected = reference.model.get_image_tokens(pixels).reshape(tokens.shape)
    assert torch.equal(tokens, expected)
    own = pipe.model.model.get_image_tokens(pixels.to(torch.float64)).reshape(tokens.shape)
    assert not torch.equal(tokens, own)  # the checkpoint's other encoder weights give other tokens
    codes = pipe.codes(tokens)
    assert torch.equal(pipe.model.model.vocabulary_mapping.convert_img2bpe(codes).long(), tokens)
    assert pipe.decode_pixels(codes).shape == (2, 3, height, width)


def test_lumina_without_vqgan_encodes_with_the_models_own_encoder_and_says_so(tmp_path):
    with pytest.warns(RuntimeWarning, match="images will be None"):
        pipe = load_pipeline(build_chameleon(tmp_path, vqgan=False))
    images = _images(2, 64, 64)
    with pytest.warns(RuntimeWarning, match=r"model checkpoint \(model.model.vqmodel\)"):
        tokens = pipe.encode_images(images, size=64)
    pixels = pipe.default_image_processor()(images=images, return_tensors="pt", do_resize=False,
                                            do_center_crop=False).pixel_values
    assert torch.equal(tokens, pipe.model.model.get_image_tokens(pixels.to(torch.float64)).reshape(2, 4, 4))


# --- preprocessing, determinism, batches -------------------------------------------------------------------
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_encoding_is_deterministic_and_batch_independent(pipes, family):
    pipe, size, side = pipes[family], SIZES[family], PIXELS[family]
    images = _images(2, side, side, seed=5)
    both = pipe.encode_images(images, size=size)
    assert torch.equal(both, pipe.encode_images(tuple(images), size=size))
    singles = torch.cat([pipe.encode_images([image], size=size) for image in images])
    assert torch.equal(both, singles)


@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_transparent_pixels_count_as_white(pipes, family):
    """A PNG's transparent pixels are shown on white; their hidden colour (random here) must not leak."""
    pipe, size, side = pipes[family], SIZES[family], PIXELS[family]
    picture = _images(1, side, side, seed=9)[0].convert("RGBA")
    alpha = torch.zeros(side, side, dtype=torch.uint8)
    alpha[:, : side // 2] = 255  # the left half opaque, the right half transparent
    hidden = torch.randint(0, 256, (side, side, 4), dtype=torch.uint8)
    hidden[..., 3] = alpha
    hidden[:, : side // 2, :3] = torch.from_numpy(np.array(picture))[:, : side // 2, :3]
    transparent = Image.fromarray(hidden.numpy(), "RGBA")
    white = Image.new("RGB", (side, side), (255, 255, 255))
    white.paste(picture.convert("RGB").crop((0, 0, side // 2, side)), (0, 0))
    assert torch.equal(pipe.encode_images([transparent], size=size), pipe.encode_images([white], size=size))


@pytest.mark.parametrize("family", ["janus", "chameleon"])
def test_other_aspects_are_center_cropped_and_other_sizes_resized(pipes, family):
    pipe, size, side = pipes[family], SIZES[family], PIXELS[family]
    tall = _images(1, side, side + 32, seed=7)[0]  # 32 px too tall: 16 px cut at the top and the bottom
    square = tall.crop((0, 16, side, side + 16))
    assert torch.equal(pipe.encode_images([tall], size=size), pipe.encode_images([square], size=size))
    grey = square.convert("L")  # any mode becomes RGB
    assert torch.equal(pipe.encode_images([grey], size=size), pipe.encode_images([grey.convert("RGB")], size=size))
    large = square.resize((2 * side, 2 * side), Image.Resampling.NEAREST)
    resized = large.resize((side, side), Image.Resampling.BICUBIC)
    assert torch.equal(pipe.encode_images([large], size=size), pipe.encode_images([resized], size=size))


# --- the demo: a trained PatchVQ round-trips ----------------------------------------------------------------
def test_demo_encode_of_decoded_generated_images_gives_back_their_tokens(demo):
    out = demo.generate(["a handwritten digit seven", "the number 3", "digit eight"], mode="ar", seed=0)
    tokens = demo.encode_images(out.images)
    assert tokens.dtype == torch.int64 and tokens.shape == (3, 14, 14)
    assert torch.equal(tokens, out.image_tokens)  # vocabulary ids, as generated
    assert torch.equal(tokens - demo.vocab.image_lo, out.codes)
    assert torch.equal(demo.encode_images([out.images[0].convert("RGB")], size=28), tokens[:1])  # to grayscale
    every = torch.arange(demo.vq.num_codes).repeat(2)[: 2 * 196].reshape(2, 14, 14)  # every code, decoded
    pictures = [Image.fromarray(a) for a in demo.vq.decode(every)]
    assert torch.equal(demo.encode_images(pictures) - demo.vocab.image_lo, every)


# --- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon", "demo"])
def test_bad_images_fail_clearly(pipes, demo, family):
    pipe = demo if family == "demo" else pipes[family]
    image = _images(1, 32, 32)[0]
    with pytest.raises(ValueError, match="images: expected at least one image"):
        pipe.encode_images([])
    with pytest.raises(TypeError, match="images: expected a list or tuple of PIL images, got Image"):
        pipe.encode_images(image)
    with pytest.raises(TypeError, match="images: expected a list or tuple"):
        pipe.encode_images(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="images: item 1 is a ndarray, expected a PIL image"):
        pipe.encode_images([image, np.asarray(image)])
    with pytest.raises(TypeError, match="images: item 0 is a str"):
        pipe.encode_images(["cat.png"])
    with pytest.raises(ValueError, match="images: item 0 is empty"):
        pipe.encode_images([Image.new("RGB", (0, 4))])


@pytest.mark.parametrize("family, size", [("janus", 128), ("emu3", 30), ("chameleon", 48), ("demo", 32)])
def test_unsupported_size_fails_as_the_layout_does(pipes, demo, family, size):
    pipe = demo if family == "demo" else pipes[family]
    with pytest.raises(ValueError, match="size: "):
        pipe.encode_images(_images(1, 32, 32), size=size)


@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_images_are_encoded_decode_batch_at_a_time(pipes, family, monkeypatch):
    """A VQ encoder at full resolution holds as much memory as the decoder (Emu3: gigabytes for one 720 px
    image), so encode_images feeds it `decode_batch` images per call; the tokens do not depend on it."""
    pipe, size, side = pipes[family], SIZES[family], PIXELS[family]
    images = _images(3, side, side, seed=9)
    whole = pipe.encode_images(images, size=size)
    encoder = pipe.vq_encoder() if family == "chameleon" else pipe.model.model.vqmodel
    calls, original = [], encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda pixels, *a, **k: calls.append(len(pixels)) or original(pixels, *a, **k))
    monkeypatch.setattr(pipe, "decode_batch", 2)
    assert torch.equal(pipe.encode_images(images, size=size), whole)
    assert calls == [2, 1]
