"""LlamaGen as its users take it (docs/real_models.md's LlamaGen section, the README's Python API), on the tiny
releases of tests/tiny_llamagen.py: each test pins a defect the walk found, against upstream's behaviour where
upstream decides (FoundationVision/LlamaGen at ce98ec4).
"""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import load_pipeline
from tests.tiny_llamagen import build_llamagen, build_llamagen_t2i


@pytest.fixture(scope="module")
def c2i(tmp_path_factory):
    return build_llamagen(tmp_path_factory.mktemp("llamagen"))


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    """(converted t2i directory, the T5 directory it was converted with)."""
    return build_llamagen_t2i(tmp_path_factory.mktemp("llamagen-t2i"))


def test_float16_keeps_t5s_float32_modules_as_upstream_loads_them(t2i):
    """Upstream's T5Embedder loads T5 with from_pretrained(torch_dtype=precision), which keeps T5's `wo` weights
    in float32 under float16 (FLAN-T5's feed-forward outputs overflow float16); load_pipeline(dtype="float16")
    cast the whole encoder with .to(), `wo` included."""
    from transformers import T5EncoderModel

    model_dir, t5 = t2i
    for dtype in (torch.float16, torch.bfloat16):
        pipe = load_pipeline(model_dir, device="cpu", dtype=dtype)
        upstream = T5EncoderModel.from_pretrained(str(t5), dtype=dtype)
        ours = {k: v.dtype for k, v in pipe.model.text_encoder.state_dict().items()}
        assert ours == {k: v.dtype for k, v in upstream.state_dict().items()}, dtype
        assert pipe.model.dtype == dtype and (torch.float32 in ours.values()) == (dtype == torch.float16)
        assert pipe.generate(["a red cat"], mode="ar", seed=0).images is not None


def test_a_label_of_digit_characters_int_refuses_is_named(c2i):
    """'³' is a digit to str.isdigit but not to int(): it raised int()'s own ValueError, naming no argument."""
    pipe = load_pipeline(c2i, device="cpu")
    for label in ("³", "7²"):
        with pytest.raises(ValueError, match=r"^prompts: prompt 1 is .*class labels"):
            pipe.generate([3, label], mode="ar")
    assert pipe.generate(["7"], mode="ar").images is not None


def test_pngs_quantise_pixels_as_upstream(c2i, t2i):
    """Upstream writes its images as clamp(127.5 x + 128, 0, 255) cast to uint8 (sample_c2i_ddp.py,
    sample_t2i_ddp.py): the nearest level. The pipeline truncated 255 (x + 1) / 2, half a level darker on average."""
    import numpy as np

    for model_dir, prompts in ((c2i, [3, 7]), (t2i[0], ["a red cat", "fox"])):
        out = load_pipeline(model_dir, device="cpu").generate(prompts, mode="ar", seed=0)
        upstream = torch.clamp(127.5 * out.pixels + 128.0, 0, 255).permute(0, 2, 3, 1).to(torch.uint8).numpy()
        for image, expected in zip(out.images, upstream):
            assert image.mode == "RGB" and np.array_equal(np.asarray(image), expected)


def test_an_attention_the_model_cannot_run_names_the_flag(c2i, tmp_path, capsys):
    """`hawk generate --attn-implementation eager` (a choice its --help lists) on LlamaGen, whose GPT runs sdpa only,
    and flex_attention on the CPU: the error named the library's attn_implementation, not the flag."""
    from tests.test_cli_input_errors import FAST, _error

    for choice in ("eager", "flex_attention"):
        line = _error(capsys, ["generate", "--model", c2i, "--prompt", "3", "--out", tmp_path / choice,
                               "--attn-implementation", choice, "--device", "cpu", *FAST])
        assert line.startswith("hawk: error: --attn-implementation: ") and "HAWK_TRACEBACK" not in line, line
        assert not (tmp_path / choice).exists() or not any((tmp_path / choice).iterdir())


def test_generating_from_the_downloaded_files_points_to_the_converter(tmp_path, capsys):
    """The guide's step 1 downloads .pt files; `hawk generate --model` on that folder (or on the GPT file) said only
    "not a model directory", not that `hawk convert-llamagen` makes one."""
    from tests.test_cli_input_errors import FAST, _error
    from tests.tiny_llamagen import build_llamagen_release

    gpt, _ = build_llamagen_release(tmp_path / "dl")
    for model in (tmp_path / "dl", gpt):
        line = _error(capsys, ["generate", "--model", model, "--prompt", "3", "--out", tmp_path / "out", *FAST])
        assert line.startswith("hawk: error: --model: ") and "hawk convert-llamagen --gpt" in line, line
    (tmp_path / "empty").mkdir()
    line = _error(capsys, ["generate", "--model", tmp_path / "empty", "--prompt", "3", "--out", tmp_path / "out"])
    assert "convert-llamagen" not in line, line


def test_convert_with_t5_writes_no_loading_bars_into_a_log(t2i, tmp_path, capsys):
    """`hawk convert-llamagen --t5` into a log file or pipe: transformers' weight-loading and shard-writing bars
    (carriage returns) filled it, as `hawk generate` keeps them out of one."""
    from transformers.utils import logging as hf_logging

    from hawk_kernels import cli

    model_dir, t5 = t2i
    release = model_dir.parent / "release"
    hf_logging.enable_progress_bar()  # as in a fresh process
    argv = ["convert-llamagen", "--gpt", release / "t2i_tiny_8.pt", "--vq", release / "vq_tiny.pt", "--t5", t5,
            "--image-size", "8", "--n-head", "4", "--out", tmp_path / "model"]
    assert cli.main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err and "\r" not in err, err


def test_a_jsonl_class_label_may_be_a_json_number(c2i, tmp_path, capsys):
    """`{"prompt": 207}` is how JSON writes a class label; it was refused as 'expected {"prompt": "text", ...}'."""
    import json

    from hawk_kernels import cli
    from tests.test_cli_input_errors import FAST, _error

    prompts = tmp_path / "labels.jsonl"
    prompts.write_text('{"prompt": 3, "seed": 5}\n{"prompt": "7"}\n')
    out = tmp_path / "out"
    assert cli.main([str(a) for a in ["generate", "--model", c2i, "--prompts", prompts, "--out", out, *FAST]]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["seed"], r["png"]) for r in rows] == [("3", 5, "000_3.png"), ("7", 1, "001_7.png")]
    for bad in ('{"prompt": true}', '{"prompt": 3.5}', '{"prompt": [3]}'):
        prompts.write_text(bad + "\n")
        line = _error(capsys, ["generate", "--model", c2i, "--prompts", prompts, "--out", tmp_path / "bad", *FAST])
        assert "line 1: expected" in line and "207" in line, line


def test_the_conversion_summary_names_a_released_size_once(tmp_path, capsys):
    """The summary of a released size read "GPT GPT-XL: 36 layers, ..."."""
    import json

    from hawk_kernels.backbones.llamagen_gpt import LlamaGenConfig
    from hawk_kernels.cli.convert import _summary
    from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQConfig

    config = LlamaGenConfig(dim=1280, n_layer=36, n_head=20, vocab_size=16384, block_size=576).to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**config, "vq_config": LlamaGenVQConfig().to_dict()}))
    _summary(tmp_path)
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("  GPT-XL: 36 layers, width 1280, 20 heads; 384 px images (24 x 24 codes"), line
