"""`hawk generate --negative-prompt` and a prompts file's "negative_prompt": Emu3's CFG branch per image, through
the many-image path (one session, negatives of several lengths), recorded in the manifest and compared on resume;
families whose CFG branch is not text refuse it by flag before any image is written."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hawk_kernels import cli
from hawk_kernels.cli.common import ERROR_PREFIX
from hawk_kernels.pipelines import load_pipeline

FAST = ["--mode", "ar", "--nodes", "1", "--threads", "1", "--size", "32"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tests.tiny_families import build_emu3, build_janus

    return dict(emu3=build_emu3(tmp_path_factory.mktemp("emu3") / "emu3"),
                janus=build_janus(tmp_path_factory.mktemp("janus") / "janus"))


def _error(capsys, argv) -> str:
    assert cli.main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def test_each_image_gets_its_lines_negative_prompt_or_the_flags(models, tmp_path, capsys):
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "out"
    prompts.write_text('{"prompt": "a red cat", "negative_prompt": "grainy, dark, out of focus"}\n'
                       '{"prompt": "a small blue dog"}\n')
    argv = ["generate", "--model", models["emu3"], "--prompts", prompts, "--out", out, "--batch-size", "2",
            "--negative-prompt", "blurry", "--seed", "5", *FAST]
    assert cli.main([str(a) for a in argv]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [row["negative_prompt"] for row in rows] == ["grainy, dark, out of focus", "blurry"]
    pipe = load_pipeline(models["emu3"])
    expected = pipe.generate_tokens(["a red cat", "a small blue dog"], mode="ar", num_nodes=1, size=32, seed=5,
                                    negative_prompt=["grainy, dark, out of focus", "blurry"])
    for i, row in enumerate(rows):  # the PNG's image is the API's with the same negative prompt
        decoded = pipe.to_images(pipe.decode_pixels(expected.codes[i:i + 1]))[0]
        assert np.array_equal(np.asarray(Image.open(out / row["png"])), np.asarray(decoded)), i
    capsys.readouterr()
    # resume with another --negative-prompt: image 1 was made with "blurry", so it is refused, not counted as done
    err = _error(capsys, [*argv[:-len(FAST) - 4], "--negative-prompt", "noisy", "--seed", "5", *FAST])
    assert "already holds image 1" in err and "negative_prompt 'blurry', not 'noisy'" in err, err


def test_a_negative_prompt_where_the_cfg_branch_is_not_text_is_refused_by_flag(models, tmp_path, capsys):
    out = tmp_path / "out"
    err = _error(capsys, ["generate", "--model", models["janus"], "--prompt", "a red cat", "--out", out,
                          "--negative-prompt", "blurry", *FAST[:-2]])
    assert err.startswith(f"{ERROR_PREFIX}--negative-prompt: this janus model's CFG branch is"), err
    assert not out.exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a red cat", "negative_prompt": 3}\n')
    err = _error(capsys, ["generate", "--model", models["emu3"], "--prompts", bad, "--out", out, *FAST])
    assert "line 1: negative_prompt must be a string, got 3" in err, err
    err = _error(capsys, ["generate", "--model", models["emu3"], "--prompt", "a red cat", "--out", out, "--cfg", "1",
                          "--negative-prompt", "blurry", *FAST])
    assert "negative_prompt: given, but cfg_scale == 1" in err, err
