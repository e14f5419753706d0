"""Bad input to the family pipelines (Janus, Emu3, Lumina-mGPT) found by fuzzing, on tiny random checkpoints
loaded the way a user loads them: each case raises a clear exception naming the argument or the file, before
any model work, instead of a silent wrong answer or an error from deep inside torch / transformers / PIL."""
import io
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hawk_kernels.pipelines import load_pipeline
from hawk_kernels.pipelines.images import fit_images
from tests.tiny_families import build_chameleon, build_emu3, build_janus

SIZES = {"janus": 64, "emu3": 32, "chameleon": 64}  # 4 x 4 codes each


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return {"janus": build_janus(tmp_path_factory.mktemp("janus")),
            "emu3": build_emu3(tmp_path_factory.mktemp("emu3")),
            "chameleon": build_chameleon(tmp_path_factory.mktemp("chameleon"))}


@pytest.fixture(scope="module")
def pipes(dirs):
    return {family: load_pipeline(directory) for family, directory in dirs.items()}


def _copy(directory, tmp_path, without: str = ""):
    """A copy of a checkpoint directory without the file `without`."""
    copy = shutil.copytree(directory, tmp_path / f"copy-{without or 'all'}")
    if without:
        (copy / without).unlink()
    return copy


def _no_model_work(pipe, monkeypatch):
    """Any model work from here on fails the test (the checks must come first): generation, pixel decoding and
    the fitting of images to a layout (what encode_images allocates first)."""
    def fail(*args, **kwargs):
        raise AssertionError("model work started before the arguments were checked")
    for name in ("generate_tokens", "decode_pixels"):
        monkeypatch.setattr(pipe, name, fail)
    monkeypatch.setattr("hawk_kernels.pipelines.base.fit_images", fail)


# --- Emu3 ----------------------------------------------------------------------------------------------------
def test_emu3_input_ids_without_a_tokenizer_are_checked_like_with_one(dirs, pipes, tmp_path):
    full = pipes["emu3"]
    bare = load_pipeline(_copy(dirs["emu3"], tmp_path, "tokenizer.json"))
    assert bare.processor is None
    asks_8x8 = full.prompt_rows("a red cat", None, full.layout(64)).conditional[0]
    for pipe in (full, bare):
        with pytest.raises(ValueError, match=r"size: the prompt asks for 8\*8 tokens"):
            pipe.generate_tokens(input_ids=[asks_8x8], size=32, mode="ar", num_nodes=1)
    with pytest.raises(ValueError, match="input_ids: row 0 must end with the image prompt"):
        bare.generate_tokens(input_ids=[[1, 10, 11]], size=32, mode="ar", num_nodes=1)
    asks_4x4 = full.prompt_rows("a red cat", None, full.layout(32)).conditional[0]
    rows = bare.prompt_rows(None, [asks_4x4], bare.layout(32))
    assert rows.unconditional[0] == asks_4x4[-5:]  # the CFG branch: <|image start|>4*4<|image token|>


@pytest.mark.parametrize("negative", [None, 3, ["a"]])
def test_emu3_negative_prompt_must_be_text(pipes, negative, monkeypatch):
    pipe = pipes["emu3"]
    _no_model_work(pipe, monkeypatch)
    monkeypatch.setattr(pipe, "negative_prompt", negative)
    with pytest.raises(TypeError, match="negative_prompt: expected a str"):
        pipe.prompt_rows(["a red cat"], None, pipe.layout(32))


def test_emu3_encode_images_checks_the_size_against_the_positions_first(pipes, monkeypatch):
    pipe = pipes["emu3"]
    _no_model_work(pipe, monkeypatch)  # 4096 px would take tens of GB in the VQ encoder
    with pytest.raises(ValueError, match="size: a 512x512-token image .* max_position_embeddings=256"):
        pipe.encode_images([Image.new("RGB", (64, 64))], size=4096)


# --- Lumina-mGPT -----------------------------------------------------------------------------------------------
def test_lumina_input_ids_ending_in_part_of_the_image_prefix_are_completed(pipes):
    pipe = pipes["chameleon"]
    grid = pipe.layout(64)
    full = pipe.prompt_rows("a red cat", None, grid).conditional[0]
    start = full[-3]
    for cut in range(4):  # the text, + image start, + height token, + width token
        assert pipe.prompt_rows(None, [full[:len(full) - cut]], grid).conditional[0] == full
    for tail in ([start, full[-1] + 1], [start, full[-2], full[-1] + 1], [start, 10 + full[-1]]):
        with pytest.raises(ValueError, match="input_ids: row 0 ends with the image prefix"):
            pipe.prompt_rows(None, [full[:-3] + tail], grid)


def test_lumina_codes_refuse_ids_outside_the_image_tokens(pipes):
    pipe = pipes["chameleon"]
    assert pipe.codes(torch.tensor([[[96]]])).shape == (1, 1, 1)
    for token in (95, 112, -1):
        with pytest.raises(ValueError, match=r"image_tokens: expected IMGIMG image-token ids, ids in \[96, 112\)"):
            pipe.codes(torch.tensor([[[token]]]))
    with pytest.raises(ValueError, match="codes: expected VQGAN codes"):
        pipe.decode_pixels(torch.full((1, 4, 4), 16))


@pytest.mark.parametrize("damage", ["text", "empty", "list", "tensor", "nan"])
def test_a_damaged_vqgan_checkpoint_is_named(dirs, tmp_path, damage):
    copy = _copy(dirs["chameleon"], tmp_path)
    path = copy / "vqgan.ckpt"
    if damage == "text":
        path.write_text("hello")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage in ("list", "tensor"):
        torch.save([1, 2] if damage == "list" else torch.zeros(3), path)
    else:
        state = torch.load(path, weights_only=True)
        state["state_dict"]["decoder.conv_out.weight"][0, 0, 0, 0] = float("nan")
        torch.save(state, path)
    with pytest.raises(ValueError, match=re.escape(f"path: '{path}'")):
        load_pipeline(copy)


# --- Janus -----------------------------------------------------------------------------------------------------
def test_janus_without_its_chat_template_refuses_text_prompts(dirs, tmp_path):
    pipe = load_pipeline(_copy(dirs["janus"], tmp_path, "chat_template.jinja"))
    with pytest.raises(ValueError, match="prompts: .*no chat template.*chat_template.jinja"):
        pipe.generate_tokens(["a red cat"], mode="ar", num_nodes=1)


@pytest.mark.parametrize("missing", ["processor_config.json", "tokenizer_config.json", "tokenizer.json"])
def test_janus_with_a_partial_processor_names_the_missing_file(dirs, tmp_path, missing):
    pipe = load_pipeline(_copy(dirs["janus"], tmp_path, missing))
    with pytest.raises(ValueError, match=f"prompts: text prompts need the processor.*{missing}"):
        pipe.generate_tokens(["a red cat"], mode="ar", num_nodes=1)


def test_a_lumina_tokenizer_loads_from_its_data_file_alone(dirs, tmp_path):
    """The check for a partial processor asks Lumina-mGPT for its tokenizer's data file only: a directory without
    tokenizer_config.json still encodes text prompts, as before the check; without tokenizer.json it names it."""
    pipe = load_pipeline(_copy(dirs["chameleon"], tmp_path, "tokenizer_config.json"))
    assert pipe.generate_tokens(["a red cat"], mode="ar", num_nodes=1, size=64).image_tokens.shape[0] == 1
    bare = load_pipeline(_copy(dirs["chameleon"], tmp_path / "bare", "tokenizer.json"))
    with pytest.raises(ValueError, match="prompts: .*tokenizer.json"):
        bare.generate_tokens(["a red cat"], mode="ar", num_nodes=1, size=64)


@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_a_checkpoint_without_weights_or_vq_config_is_named(dirs, tmp_path, family):
    with pytest.raises(FileNotFoundError, match="model_dir: no model weights"):
        load_pipeline(_copy(dirs[family], tmp_path, "model.safetensors"))
    copy = _copy(dirs[family], tmp_path)
    config = json.loads((copy / "config.json").read_text())
    del config["vq_config"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_dir: .*config.json' lacks vq_config"):
        load_pipeline(copy)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, torch.float8_e4m3fn, "int64"])
def test_load_pipeline_refuses_non_float_dtypes(dirs, dtype):
    with pytest.raises(ValueError, match="dtype: expected None or one of float16, bfloat16, float32, float64"):
        load_pipeline(dirs["janus"], dtype=dtype)


# --- every family ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
@pytest.mark.parametrize("value", [0, -1, 2.5, None, "4"])
def test_decode_batch_is_checked_before_generation(pipes, family, value, monkeypatch):
    pipe = pipes[family]
    _no_model_work(pipe, monkeypatch)
    monkeypatch.setattr(pipe, "decode_batch", value)
    with pytest.raises((TypeError, ValueError), match="decode_batch: expected an int >= 1"):
        pipe.generate(["a red cat"], mode="ar", size=SIZES[family], num_nodes=1)


@pytest.mark.parametrize("family", ["janus", "emu3", "chameleon"])
def test_size_takes_any_integer_type_and_refuses_floats(pipes, family):
    pipe, side = pipes[family], SIZES[family]
    for same in (np.int64(side), torch.tensor(side), (np.int32(side), side)):
        assert pipe.layout(same) == pipe.layout(side)
    for bad in (float(side), (float(side), side), torch.tensor(float(side)), True):
        with pytest.raises(ValueError, match="size: expected"):
            pipe.layout(bad)


@pytest.mark.parametrize("family", ["janus", "emu3"])
def test_codes_refuse_ids_outside_the_image_tokens(pipes, family):
    pipe = pipes[family]
    low, high = pipe.layout(SIZES[family]).image_token_range
    assert pipe.codes(torch.tensor([[[low]]])).shape == (1, 1, 1)
    for token in (low - 1, high):
        with pytest.raises(ValueError, match="image_tokens: expected"):
            pipe.codes(torch.tensor([[[token]]]))
    with pytest.raises(ValueError, match="codes: expected"):
        pipe.decode_pixels(torch.full((1, 4, 4), -1))


# --- images ---------------------------------------------------------------------------------------------------
def test_sixteen_bit_images_are_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))
    fitted = np.asarray(fit_images([Image.fromarray(ramp)], 64, 64)[0])
    assert fitted.shape == (64, 64, 3) and fitted[..., 0].max() == 255
    assert np.array_equal(fitted[..., 0], np.round(ramp / 257).astype(np.uint8))  # not 255 from 1/256 of the way
    eight = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    for mode in ("I", "F"):  # 8-bit values in a 32-bit image are taken as they are
        fitted = np.asarray(fit_images([Image.fromarray(eight).convert(mode)], 64, 64)[0])
        assert np.array_equal(fitted[..., 0], eight)


@pytest.mark.parametrize("values", [np.linspace(0, 65535, 64 * 64).astype(np.int32),
                                    np.linspace(0, 1, 64 * 64).astype(np.float32)])
def test_wide_images_of_unknown_range_are_refused(values):
    image = Image.fromarray(values.reshape(64, 64))
    with pytest.raises(ValueError, match=f"images: item 1 is a mode '{image.mode}' image whose values are not 8-bit"):
        fit_images([Image.new("RGB", (64, 64)), image], 64, 64)


def test_a_truncated_image_file_is_named(pipes, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match=re.escape(f"images: item 0 ({path}) could not be decoded")):
        pipes["janus"].encode_images([Image.open(path)])
