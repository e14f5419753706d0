"""Bad input to the `hawk` commands (a fuzzing pass): one `hawk: error:` line naming the flag (and the file), exit
code 2, before the model loads where the input alone shows it; never a traceback, a silent wrong answer or a
half-written output."""
from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from hawk_kernels import cli
from hawk_kernels.cli.common import ERROR_PREFIX
from hawk_kernels.pipelines.batch_job import read_prompt_file, written
from hawk_kernels.training import TensorSequences, TrainConfig, train_heads
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

FAST = ["--mode", "ar", "--nodes", "1", "--threads", "1"]  # generate: the quickest images


def _error(capsys, argv) -> str:
    """Run `hawk argv`: it must fail with one error line (the last on stderr, after any loading bar); returns it."""
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith(ERROR_PREFIX) and err.count(ERROR_PREFIX) == 1, err
    return err.splitlines()[-1]


def _refuse_model(patch):
    """The bundled model must not load: the error comes before it."""
    from hawk_kernels.pipelines.demo import pipeline

    def refuse(**kwargs):
        raise AssertionError("the model loaded before the error")

    patch.setattr(pipeline, "load_demo_pipeline", refuse)


@pytest.fixture
def no_model(monkeypatch):
    _refuse_model(monkeypatch)


# --- generate ------------------------------------------------------------------------------------------------
def test_generate_resume_refuses_images_of_other_settings(tmp_path, capsys, monkeypatch):
    out = tmp_path / "pngs"
    assert cli.main(["generate", "--demo", "--prompt", "digit eight", "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    before = (out / "manifest.jsonl").read_text()
    with monkeypatch.context() as patch:
        _refuse_model(patch)
        for flags, key in ((["--prompt", "digit seven"], "prompt"),
                           (["--prompt", "digit eight", "--seed", "5"], "seed"),
                           (["--prompt", "digit eight", "--size", "28"], "size"),
                           (["--prompt", "digit eight", "--cfg", "1.5"], "cfg")):
            err = _error(capsys, ["generate", "--demo", *flags, "--out", out, *FAST])
            assert f"--out: {str(out)!r} already holds image 0" in err and f"made with {key} " in err, err
        err = _error(capsys, ["generate", "--demo", "--prompt", "digit eight", "--out", out, "--mode", "jacobi"])
        assert "made with mode 'ar', not 'jacobi'" in err
    # the mode chosen once the model is there (hawk: it has heads) is compared too
    err = _error(capsys, ["generate", "--demo", "--prompt", "digit eight", "--out", out, "--nodes", "8"])
    assert "made with mode 'ar', not 'hawk'" in err
    assert (out / "manifest.jsonl").read_text() == before
    assert cli.main(["generate", "--demo", "--prompt", "digit eight", "--out", str(out), *FAST]) == 0  # a resume
    assert "made 0" in capsys.readouterr().out


def test_generate_full_disk_leaves_no_partial_file_and_resumes(tmp_path, capsys, monkeypatch):
    from PIL import Image

    out, save, calls = tmp_path / "pngs", Image.Image.save, []

    def disk_fills_up(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:
            open(fp, "wb").close()  # what a full disk leaves: an empty file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_fills_up)
    argv = ["generate", "--demo", "--prompt", "digit eight", "digit seven", "--out", out, *FAST]
    err = _error(capsys, argv)
    assert f"--out: could not write {str(out / '001_digit-seven.png')!r} (No space left on device)" in err, err
    assert not list(out.glob("*.partial")) and set(written(out)) == {0}
    monkeypatch.undo()
    assert cli.main([str(a) for a in argv]) == 0  # the resume makes the missing image only
    assert "2 images of 2" in capsys.readouterr().out and sorted(p.name for p in out.glob("*.png")) == [
        "000_digit-eight.png", "001_digit-seven.png"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc (a directory nothing is written into)")
@pytest.mark.parametrize("argv, message", [
    (["generate", "--demo", "--prompt", "digit eight", "--out", "/proc/hawk"], "cannot create files in '/proc'"),
    (["generate", "--demo", "--prompt", "digit eight", "--out", "/proc/self"], "cannot create files in '/proc/self'"),
    (["demo", "--out", "/proc/sheet.png"], "cannot create files in '/proc'"),
    (["distill", "--demo", "--prompts", "{prompts}", "--out", "/proc/hawk"], "cannot create files in '/proc'"),
    (["distill", "--demo", "--prompts", "{prompts}", "--out", "{prompts}"], "exists and is not a directory"),
    (["train-heads", "--demo", "--data", "{tmp}", "--out", "/proc/hawk"], "cannot create files in '/proc'"),
])
def test_an_unwritable_out_is_refused_before_the_model_loads(argv, message, tmp_path, capsys, no_model):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("digit eight\n")
    err = _error(capsys, [a.format(prompts=prompts, tmp=tmp_path) for a in argv])
    assert "--out: " in err and message in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_parent_is_refused(tmp_path, capsys, no_model):
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o555)
    err = _error(capsys, ["generate", "--demo", "--prompt", "digit eight", "--out", read_only / "x"])
    assert f"--out: cannot create files in {str(read_only)!r}" in err


def test_prompt_files_name_the_flag_and_file(tmp_path, capsys, no_model):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("digit eight caf\xe9\n".encode("latin-1"))
    for command in ("generate", "distill"):
        err = _error(capsys, [command, "--demo", "--prompts", latin1, "--out", tmp_path / "o"])
        assert f"--prompts: {str(latin1)!r} is not UTF-8 text" in err, err
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffdigit eight\n".encode("utf-8"))
    assert read_prompt_file(bom)[0].prompt == "digit eight"
    from hawk_kernels.cli.distill import read_prompts

    assert read_prompts(str(bom)) == ["digit eight"]
    lines = tmp_path / "p.jsonl"
    for cfg in ("NaN", "Infinity", "1e400", "-Infinity"):
        lines.write_text('{"prompt": "digit eight"}\n{"prompt": "digit seven", "cfg": %s}\n' % cfg)
        with pytest.raises(ValueError, match=r"--prompts: '.*p.jsonl' line 2: cfg must be a finite number"):
            read_prompt_file(lines)


# --- distill --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [("{bad", "is not JSON"), ("[1, 2]", "holds a JSON list")])
def test_distill_and_train_heads_name_a_damaged_manifest(text, message, tmp_path, capsys, no_model):
    prompts, data = tmp_path / "prompts.txt", tmp_path / "data"
    prompts.write_text("digit eight\n")
    data.mkdir()
    (data / "manifest.json").write_text(text)
    manifest = str(data / "manifest.json")
    err = _error(capsys, ["distill", "--demo", "--prompts", prompts, "--out", data])
    assert f"--out: {manifest!r} {message}" in err, err
    err = _error(capsys, ["train-heads", "--demo", "--data", data, "--out", tmp_path / "heads"])
    assert f"--data: {manifest!r} {message}" in err, err


def test_distill_input_ids_outside_the_vocabulary_name_the_file(tmp_path, capsys):
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps([[1, 265, 280, 2], [1, 999, 2]]))
    err = _error(capsys, ["distill", "--demo", "--input-ids", ids, "--out", tmp_path / "data"])
    assert f"--input-ids: {str(ids)!r}: input_ids: row 1" in err and "999" in err, err
    assert not (tmp_path / "data" / "manifest.json").exists()


# --- train-heads ----------------------------------------------------------------------------------------------
def test_train_heads_resume_without_a_checkpoint_is_refused(tmp_path, capsys, no_model):
    (tmp_path / "data").mkdir()
    err = _error(capsys, ["train-heads", "--demo", "--data", tmp_path / "data", "--out", tmp_path / "heads",
                          "--resume"])
    assert "--resume: no checkpoint in" in err and "run without --resume" in err, err


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A tiny Llama checkpoint (vocabulary 48) for the --data FILE path."""
    path = tmp_path_factory.mktemp("lm") / "llama"
    tiny_backbone(dtype=torch.float32).save_pretrained(path)
    return path


def _token_file(path, sequences, body_start=2, pad_id=None):
    torch.save(dict(sequences=sequences, body_start=body_start, pad_id=pad_id), path)
    return path


def test_train_heads_token_file_ids_are_checked(tiny_lm, tmp_path, capsys, monkeypatch):
    grid = tiny_grid(height=2, width=2)  # codes [8, 48), row end 3, body 6
    body = torch.randint(8, 48, (8, grid.num_body_tokens))
    body.view(8, 2, 3)[:, :, -1] = 3
    good = torch.cat([torch.tensor([[1, 4]]).expand(8, -1), body, torch.full((8, 1), 2)], 1)
    flags = ["--height", "2", "--width", "2", "--image-range", "8", "48", "--row-end", "3", "--out", tmp_path / "h",
             "--epochs", "1", "--batch-size", "2", "--horizontal", "1", "--vertical", "1"]

    def run(name, sequences, **kw):
        path = _token_file(tmp_path / name, sequences, **kw)
        return _error(capsys, ["train-heads", "--model", tiny_lm, "--data", path, *flags]), f"--data: {str(path)!r}"

    oov = good.clone()
    oov[3, 0] = 500  # a prompt id outside the vocabulary: clamped to another token before
    err, named = run("oov.pt", oov)
    assert f"{named}: sequence 3 holds token id 500 at position 0, outside the model's vocabulary [0, 48)" in err
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the model loaded before the error")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    not_a_code = good.clone()
    not_a_code[5, 4] = 2  # inside the vocabulary, but not an image code: the layout shows it before loading
    err, named = run("body.pt", not_a_code)
    assert f"{named}: sequence 5 holds token id 2 at position 4 of the image body" in err, err
    err, named = run("pad.pt", good, pad_id=-1)
    assert f"{named}: pad_id must be None or a token id" in err, err
    (tmp_path / "garbage.pt").write_bytes(os.urandom(64))
    err = _error(capsys, ["train-heads", "--model", tiny_lm, "--data", tmp_path / "garbage.pt", *flags])
    assert f"--data: {str(tmp_path / 'garbage.pt')!r} is not a torch file" in err, err
    monkeypatch.undo()
    err, named = run("pad999.pt", good, pad_id=999)  # the vocabulary is known once the model is there
    assert f"{named}: pad_id must be None or a token id in [0, 48), got 999" in err, err
    assert cli.main([str(a) for a in ["train-heads", "--model", tiny_lm, "--data",
                                      _token_file(tmp_path / "good.pt", good), *flags]]) == 0


def test_train_heads_refuses_ids_it_would_clamp():
    model, grid = tiny_backbone(dtype=torch.float32), tiny_grid(height=2, width=3)
    body = torch.randint(8, 12, (16, grid.num_body_tokens))
    body.view(16, grid.height, grid.row_stride)[:, :, -1] = grid.row_end_token
    seq = torch.cat([torch.tensor([[1, 4]]).expand(16, -1), body], 1)
    seq[7, 1] = 48  # the vocabulary is [0, 48)
    heads = tiny_heads(num_horizontal=1, vertical_depth=1, dtype=torch.float32)
    with pytest.raises(ValueError, match="data: sequence 7 holds token id 48 at position 1, outside the model's"):
        train_heads(model, heads, TensorSequences(seq, body_start=2), grid,
                    TrainConfig(epochs=1, batch_size=16, eval_fraction=0), progress=False)
