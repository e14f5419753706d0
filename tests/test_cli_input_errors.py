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
    # the mode chosen once the model is there (hawk+jacobi: it has heads) is compared too
    err = _error(capsys, ["generate", "--demo", "--prompt", "digit eight", "--out", out, "--nodes", "8"])
    assert "made with mode 'ar', not 'hawk+jacobi'" in err
    assert (out / "manifest.jsonl").read_text() == before
    assert cli.main(["generate", "--demo", "--prompt", "digit eight", "--out", str(out), *FAST]) == 0  # a resume
    assert "made 0" in capsys.readouterr().out


def test_generate_resume_refuses_other_sampling_trees_and_heads(tmp_path, capsys, monkeypatch):
    """What an image's law or draws depend on beyond prompt, seed, size, cfg and mode (temperature, top-k, an asked
    tree size, the draft heads) is recorded and compared: a re-run with another never counts the images as its own."""
    import hawk_kernels as hk
    from hawk_kernels.pipelines.demo import pipeline as demo_pipeline

    out = tmp_path / "pngs"
    hawk = ["--prompt", "digit eight", "--out", str(out), "--mode", "hawk", "--threads", "1"]
    assert cli.main(["generate", "--demo", *hawk, "--nodes", "4"]) == 0
    capsys.readouterr()
    row = json.loads((out / "manifest.jsonl").read_text())
    assert (row["temperature"], row["top_k"], row["num_nodes"]) == (1.0, None, 4) and len(row["heads"]) == 16
    with monkeypatch.context() as patch:  # what the flags say alone: refused before the model loads
        _refuse_model(patch)
        for flags, said in ((["--temperature", "0.5"], "temperature 1.0, not 0.5"), (["--top-k", "5"], "top_k None, not 5")):
            err = _error(capsys, ["generate", "--demo", *hawk, "--nodes", "4", *flags])
            assert f"already holds image 0" in err and f"made with {said}" in err, err
    err = _error(capsys, ["generate", "--demo", *hawk, "--nodes", "8"])
    assert "made with num_nodes 4, not 8" in err, err
    bundled = hk.DraftHeads.from_pretrained(demo_pipeline.HEADS_DIR).config
    hk.DraftHeads(bundled.hidden_size, bundled.vocab_size, num_horizontal=1, vertical_depth=1).save_pretrained(
        tmp_path / "mine")
    err = _error(capsys, ["generate", "--demo", *hawk, "--nodes", "4", "--heads", str(tmp_path / "mine")])
    assert f"made with heads {row['heads']!r}, not " in err, err
    for nodes in ("4", "auto"):  # the same settings (or a tree size left to "auto"): a resume
        assert cli.main(["generate", "--demo", *hawk, "--nodes", nodes]) == 0
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


# --- the fuzzing pass's defects ----------------------------------------------------------------------------------
def _refuse_transformers(patch):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the model loaded before the error")

    patch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def _good_tokens(path, n=8):
    """A valid token file for tiny_grid(height=2, width=2): codes [8, 48), row end 3."""
    body = torch.randint(8, 48, (n, 6), generator=torch.Generator().manual_seed(0))
    body.view(n, 2, 3)[:, :, -1] = 3
    return _token_file(path, torch.cat([torch.tensor([[1, 4]]).expand(n, -1), body, torch.full((n, 1), 2)], 1))


LAYOUT_2X2 = ["--height", "2", "--width", "2", "--image-range", "8", "48", "--row-end", "3", "--epochs", "1",
              "--batch-size", "2", "--horizontal", "1", "--vertical", "1"]


def test_train_heads_token_file_refuses_family_checkpoints_and_missing_weights(tiny_lm, tmp_path, capsys,
                                                                               monkeypatch):
    from safetensors.torch import load_file, save_file

    data = _good_tokens(tmp_path / "seqs.pt")
    with monkeypatch.context() as patch:
        _refuse_transformers(patch)  # a family checkpoint is refused before anything loads
        for model_type in ("janus", "emu3", "chameleon"):
            family = tmp_path / model_type
            family.mkdir()
            (family / "config.json").write_text(json.dumps({"model_type": model_type}))
            err = _error(capsys, ["train-heads", "--model", family, "--data", data, "--out", tmp_path / "h",
                                  *LAYOUT_2X2])
            assert f"--model: {str(family)!r} is a checkpoint of the {model_type} family" in err, err
            assert "hawk distill" in err and "--data DATA" in err, err
    # a causal LM whose checkpoint lacks a weight: it would be random, never trained on silently
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in os.listdir(tiny_lm):
        (partial / name).write_bytes((tiny_lm / name).read_bytes())
    weights = load_file(partial / "model.safetensors")
    del weights["model.norm.weight"]
    save_file(weights, partial / "model.safetensors", metadata={"format": "pt"})
    err = _error(capsys, ["train-heads", "--model", partial, "--data", data, "--out", tmp_path / "h", *LAYOUT_2X2])
    assert "--model: 1 weight(s)" in err and "model.norm.weight" in err and "would be random" in err, err
    assert not (tmp_path / "h").exists()


def test_head_counts_are_bounded(tiny_lm, tmp_path, capsys, monkeypatch, no_model):
    import time

    from hawk_kernels.heads import MAX_HEADS, DraftHeads, DraftHeadsConfig

    start = time.perf_counter()
    for kwargs, name in ((dict(num_horizontal=10**6), "num_horizontal"), (dict(num_layers=10**6), "num_layers"),
                         (dict(vertical_depth=10**6), "vertical_depth"),
                         (dict(num_horizontal=40, vertical_depth=30), "num_horizontal \\+ vertical_depth")):
        with pytest.raises(ValueError, match=name):
            DraftHeads(32, 48, **kwargs)
    assert time.perf_counter() - start < 1.0  # refused, not allocated
    assert DraftHeadsConfig(32, 48, num_horizontal=MAX_HEADS - 1, vertical_depth=1).num_heads == MAX_HEADS
    data = _good_tokens(tmp_path / "seqs.pt")
    _refuse_transformers(monkeypatch)  # the layout flags show it before the model loads
    for heads, message in ((["--vertical", "2"], "--vertical: expected <= 1"),
                           (["--horizontal", "3", "--vertical", "0"], "--horizontal: expected <= 2")):
        err = _error(capsys, ["train-heads", "--model", tiny_lm, "--data", data, "--out", tmp_path / "h",
                              *LAYOUT_2X2, *heads])
        assert message in err, err
    err = _error(capsys, ["train-heads", "--demo", "--out", tmp_path / "h", "--vertical", "50"])
    assert "--vertical: expected <= 13" in err and "14x14" in err, err
    err = _error(capsys, ["train-heads", "--demo", "--out", tmp_path / "h", "--horizontal", "100000"])
    assert "--horizontal: expected >= 0 and <= 64" in err, err
    assert not (tmp_path / "h").exists()
    # the trainer itself: a head with no target in the layout is refused, not reported as loss 0
    model, grid = tiny_backbone(dtype=torch.float32), tiny_grid(height=2, width=2)
    with pytest.raises(ValueError, match="heads: vertical_depth: expected <= 1"):
        train_heads(model, tiny_heads(num_horizontal=1, vertical_depth=2, dtype=torch.float32),
                    TensorSequences(torch.zeros(4, 9, dtype=torch.long), body_start=2), grid, progress=False)


def test_distill_checks_sampling_and_positions_before_writing(tmp_path, capsys, monkeypatch):
    prompts, out = tmp_path / "prompts.txt", tmp_path / "data"
    with monkeypatch.context() as patch:
        _refuse_model(patch)
        prompts.write_text("digit eight\n")
        for flags, message in ((["--cfg", "20000"], "argument --cfg: expected >= 0.0 and <= 10000.0"),
                               (["--temperature", "1e-5"], "argument --temperature: expected 0 (greedy) or a number")):
            err = _error(capsys, ["distill", "--demo", "--prompts", prompts, "--out", out, *flags])
            assert message in err, err
    # a prompt that leaves no room for the image in the model's positions (256): refused after the model loads,
    # before the manifest is written, naming the flag, the file and the prompt
    prompts.write_text("digit eight\n" + "digit " * 50 + "\n")
    err = _error(capsys, ["distill", "--demo", "--prompts", prompts, "--out", out, "--mode", "ar", "--nodes", "1"])
    assert f"--prompts: {str(prompts)!r}: prompt 1: its 52 prompt tokens" in err, err
    assert "max_position_embeddings=256" in err and not out.exists(), err


def test_generate_checks_every_job_before_the_first_image(tmp_path, capsys, monkeypatch):
    lines, out = tmp_path / "p.jsonl", tmp_path / "pngs"
    with monkeypatch.context() as patch:
        _refuse_model(patch)
        lines.write_text('{"prompt": "digit eight"}\n{"prompt": "digit seven", "size": 30}\n')
        err = _error(capsys, ["generate", "--demo", "--prompts", lines, "--out", out, *FAST])
        assert f"--prompts: {str(lines)!r} line 2 (image 1): size: the demo model has one layout" in err, err
        lines.write_text('{"prompt": "digit eight"}\n{"prompt": "digit seven", "cfg": 20000}\n')
        err = _error(capsys, ["generate", "--demo", "--prompts", lines, "--out", out, *FAST])
        assert f"--prompts: {str(lines)!r} line 2: cfg must be a finite number >= 0 and <= 10000" in err, err
        err = _error(capsys, ["generate", "--demo", "--prompt", "digit eight", "--out", out, "--cfg", "2e4"])
        assert "argument --cfg: expected >= 0.0 and <= 10000.0" in err, err
        err = _error(capsys, ["generate", "--demo", "--prompt", "digit eight", "--out", out, "--dtype", "int8"])
        assert "--dtype: expected None or one of float16, bfloat16, float32, float64" in err, err
        err = _error(capsys, ["generate", "--demo", "--prompt", "digit eight", "digit foo", "--out", out])
        assert "--prompt: prompt 2 ('digit foo'): unknown prompt word(s) ['foo']" in err, err
    # the third prompt line (image 1) is too long for the model's positions: nothing is written, not even --out
    lines.write_text('{"prompt": "digit eight"}\n# a comment\n{"prompt": "%s"}\n' % ("digit " * 50))
    err = _error(capsys, ["generate", "--demo", "--prompts", lines, "--out", out, *FAST])
    assert f"--prompts: {str(lines)!r} line 3 (image 1): its 52 prompt tokens" in err, err
    assert "max_position_embeddings=256" in err and not out.exists(), err


@pytest.fixture(scope="module")
def tiny_emu3(tmp_path_factory):
    from tests.tiny_families import build_emu3

    return build_emu3(tmp_path_factory.mktemp("emu3") / "emu3")


def test_emu3_sizes_past_its_positions_name_the_flag_or_line(tiny_emu3, tmp_path, capsys):
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "out"
    prompts.write_text('{"prompt": "a red cat", "size": 32}\n{"prompt": "blue sky", "size": 1024}\n')
    err = _error(capsys, ["generate", "--model", tiny_emu3, "--prompts", prompts, "--out", out, *FAST])
    assert f"--prompts: {str(prompts)!r} line 2 (image 1): its " in err and "unconditional CFG prompt" in err, err
    assert not out.exists()
    err = _error(capsys, ["generate", "--model", tiny_emu3, "--prompt", "a red cat", "--size", "33", "--out", out,
                          *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--size: expected None, an int or (height, width)"), err
    text = tmp_path / "prompts.txt"
    text.write_text("a red cat\n")
    err = _error(capsys, ["distill", "--model", tiny_emu3, "--prompts", text, "--size", "1024", "--out", out,
                          "--mode", "ar", "--nodes", "1"])
    assert err.startswith(f"{ERROR_PREFIX}--size: the 128x128-code layout"), err
    assert not out.exists()


def test_train_heads_batch_is_cut_to_a_small_data_set():
    """--batch-size above the training sequences: all of them each step (a multiple of accumulation x processes);
    fewer than one step's worth: refused naming the flag."""
    from argparse import Namespace

    from hawk_kernels.cli.common import UsageError
    from hawk_kernels.cli.train_heads import _fitted_batch

    assert _fitted_batch(Namespace(batch_size=32, accumulation=1), 7, 1) == 7
    assert _fitted_batch(Namespace(batch_size=32, accumulation=2), 7, 2) == 4
    assert _fitted_batch(Namespace(batch_size=6, accumulation=4), 7, 1) == 6  # fits: the trainer judges the split
    with pytest.raises(UsageError, match="--batch-size: 3 training sequences cannot fill one step of --accumulation 2"):
        _fitted_batch(Namespace(batch_size=32, accumulation=2), 3, 2)
