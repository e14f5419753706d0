"""LlamaGen through the `hawk` command line, as a user takes it from the released files: `hawk convert-llamagen`,
then `hawk generate` with class labels (c2i) or text (t2i, converted with --t5), then `hawk distill` and
`hawk train-heads` and images with those heads; and the errors on the way, each one line naming the flag. All on
the tiny releases of tests/tiny_llamagen.py (4 x 4 codes, 8 px images; c2i: 10 classes; t2i: captions of at most
8 ids from a tiny T5).

What the journey found in the library, each pinned here:
- head training embedded the class label through the code table (tok_embeddings) instead of the class table, so
  heads trained on hidden states the decoder never sees, and the trainer's [B, L] padding mask crashed LlamaGen's
  attention (a long mask in sdpa);
- LlamaGen's cfg >= 1 rule was checked only when a batch decoded: a prompts-file line with cfg 0.5 stopped
  `hawk generate` part-way (the images before it written), and `hawk distill --cfg 0.5` left a manifest behind;
- a T5 directory (--t5, convert_llamagen's t5=) without its tokenizer files converted silently with a T5
  tokenizer of no words (every caption <unk>), one with some encoder weights missing with those weights random,
  and another model's config.json crashed in transformers (a traceback, not one line);
- `hawk distill`'s tree size ("auto", its default mode jacobi) was timed after a 4-token dummy prompt, which a
  t2i GPT refuses: the documented t2i distill failed unless --mode ar or --nodes N was given.
"""
from __future__ import annotations

import json

import pytest
import torch

from hawk_kernels import cli
from hawk_kernels.cli.common import ERROR_PREFIX
from tests.test_cli_input_errors import FAST, _error
from tests.tiny_llamagen import (GPT, IMAGE_SIZE, build_llamagen, build_llamagen_release, build_t5,
                                 reference_t2i_gpt, reference_vq)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted tiny LlamaGen directory (the library's converter; the CLI's is tested below)."""
    return build_llamagen(tmp_path_factory.mktemp("llamagen"))


# --- library bugs found on the way ------------------------------------------------------------------------------
def test_head_training_sees_the_hidden_states_the_decoder_sees(converted):
    """backbone_hidden (what heads train on) = the GPT over [class embedding, code embeddings], with the trainer's
    padding mask as well as without one."""
    from hawk_kernels import load_pipeline
    from hawk_kernels.training.batch_losses import backbone_hidden

    pipe = load_pipeline(converted, device="cpu")
    model = pipe.model
    torch.manual_seed(0)
    sequences = torch.cat([torch.tensor([[3], [7]]), torch.randint(0, model.config.vocab_size, (2, 16))], 1)
    with torch.no_grad():
        embeds = torch.cat([model.cls_embedding.embedding_table(sequences[:, :1]),
                            model.tok_embeddings(sequences[:, 1:])], 1)
        expected = model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    backbone = pipe.backbone(pipe.layout(None))
    torch.testing.assert_close(backbone_hidden(backbone, sequences, 1), expected)
    torch.testing.assert_close(backbone_hidden(backbone, sequences, 1, torch.tensor([1, 1])), expected)


def test_cfg_below_1_is_refused_before_anything_is_written(converted, tmp_path, capsys):
    """A prompts-file line with cfg 0.5 is named before the first image (it stopped the run part-way, images
    written); `distill --cfg 0.5` is refused before its manifest is written."""
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"prompt": "3"}\n{"prompt": "7", "cfg": 0.5}\n')
    out = tmp_path / "pngs"
    err = _error(capsys, ["generate", "--model", converted, "--prompts", lines, "--out", out, *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--prompts: {str(lines)!r} line 2 (image 1): cfg_scale: LlamaGen applies "
                          f"guidance only above 1"), err
    assert not out.exists() or not list(out.iterdir())
    prompts = tmp_path / "labels.txt"
    prompts.write_text("3\n7\n")
    data = tmp_path / "data"
    err = _error(capsys, ["distill", "--model", converted, "--prompts", prompts, "--out", data, "--mode", "ar",
                          "--cfg", "0.5"])
    assert err.startswith(f"{ERROR_PREFIX}--cfg: LlamaGen applies guidance only above 1"), err
    assert not data.exists() or not list(data.iterdir())


def test_an_unreadable_vq_file_is_named_vq_checkpoint(tmp_path):
    """The VQ reader's errors named its own argument (`path: ...`), which convert_llamagen's caller never passed."""
    from hawk_kernels.pipelines.llamagen_convert import convert_llamagen

    gpt, _ = build_llamagen_release(tmp_path / "release")
    junk = tmp_path / "vq.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"^vq_checkpoint: .*vq\.pt' is not a readable LlamaGen VQ checkpoint"):
        convert_llamagen(gpt, junk, tmp_path / "out", 8, n_head=4)
    assert not (tmp_path / "out").exists()


# --- the journey ------------------------------------------------------------------------------------------------
def _hawk(argv) -> int:
    return cli.main([str(a) for a in argv])


def _convert(release, out, *extra):
    gpt, vq = release
    return ["convert-llamagen", "--gpt", str(gpt), "--vq", str(vq), "--image-size", str(IMAGE_SIZE), "--out",
            str(out), *[str(e) for e in extra]]


def _labels(path, *labels):
    path.write_text("".join(f"{label}\n" for label in labels))
    return path


def test_convert_the_release_then_generate_class_labels(tmp_path, capsys):
    from PIL import Image

    release = build_llamagen_release(tmp_path / "release")
    model = tmp_path / "ckpt" / "llamagen"
    assert _hawk(_convert(release, model, "--n-head", GPT["n_head"])) == 0
    out = capsys.readouterr().out
    assert f"wrote {model}: config.json, model.safetensors, vq_model.safetensors" in out, out
    assert (f"2 layers, width 64, 4 heads; {IMAGE_SIZE} px images (4 x 4 codes, 2 px per code); 10 classes "
            f"(labels 0..9); codebook of 64 codes") in out, out
    assert f"next: hawk generate --model {model} --prompts FILE --out OUT" in out, out
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.safetensors", "vq_model.safetensors"]
    assert _hawk(_convert(release, model, "--n-head", GPT["n_head"], "--overwrite", "--dtype", "bfloat16")) == 0
    assert '"model_type": "llamagen"' in (model / "config.json").read_text()
    pngs = tmp_path / "pngs"
    assert _hawk(["generate", "--model", model, "--prompts", _labels(tmp_path / "labels.txt", 3, 7), "--mode",
                     "ar", "--out", pngs, "--threads", "1"]) == 0
    assert "llamagen on cpu; 2 images; mode ar" in capsys.readouterr().out
    written = sorted(pngs.glob("*.png"))
    assert [p.name for p in written] == ["000_3.png", "001_7.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    rows = [json.loads(line) for line in (pngs / "manifest.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["png"]) for r in rows] == [("3", "000_3.png"), ("7", "001_7.png")]


def test_distill_train_heads_then_generate_with_heads(converted, tmp_path, capsys):
    """Heads trained on the model's own images decode it; greedily, hawk+jacobi with them writes the AR images."""
    labels = _labels(tmp_path / "labels.txt", 3, 7)
    data, heads = tmp_path / "data", tmp_path / "heads"
    assert _hawk(["distill", "--model", converted, "--prompts", labels, "--images-per-prompt", "2",
                     "--batch-size", "4", "--mode", "ar", "--out", data]) == 0
    assert f"4 sequences in 1 shard under {data}" in capsys.readouterr().out
    assert _hawk(["train-heads", "--model", converted, "--data", data, "--out", heads, "--epochs", "1",
                     "--batch-size", "2", "--horizontal", "2", "--vertical", "1", "--calibrate-images", "2"]) == 0
    assert (heads / "tree_rates.json").is_file()
    config = json.loads((heads / "draft_heads_config.json").read_text())
    assert config["family"] == "llamagen" and config["num_horizontal"] == 2, config
    greedy = ["--temperature", "0", "--threads", "1", "--prompts", labels]
    assert _hawk(["generate", "--model", converted, "--mode", "ar", "--out", tmp_path / "ar", *greedy]) == 0
    assert _hawk(["generate", "--model", converted, "--heads", heads, "--mode", "hawk+jacobi", "--nodes", "4",
                     "--out", tmp_path / "hawk", *greedy]) == 0
    assert "mode hawk+jacobi" in capsys.readouterr().out
    for name in ("000_3.png", "001_7.png"):
        assert _pixels(tmp_path / "hawk" / name) == _pixels(tmp_path / "ar" / name), name


# --- errors: one line naming the flag -----------------------------------------------------------------------------
def test_convert_errors_the_command_line_alone_judges_come_before_a_file_is_read(tmp_path, capsys, monkeypatch):
    from hawk_kernels.pipelines import llamagen_convert

    release = build_llamagen_release(tmp_path / "release")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")

    def refuse(*args, **kwargs):
        raise AssertionError("a file was read before the error")

    monkeypatch.setattr(llamagen_convert, "convert_llamagen", refuse)
    absent = tmp_path / "c2i_XL_384.pt"
    err = _error(capsys, ["convert-llamagen", "--gpt", absent, "--vq", release[1], "--image-size", "8", "--out",
                          tmp_path / "o"])
    assert err == f"{ERROR_PREFIX}--gpt: no such file {str(absent)!r}", err
    err = _error(capsys, _convert(release, full, "--n-head", "4"))
    assert err == f"{ERROR_PREFIX}--out: {str(full)!r} exists and is not empty (--overwrite replaces it)", err
    err = _error(capsys, _convert(release, release[0].parent, "--n-head", "4", "--overwrite"))
    assert err.startswith(f"{ERROR_PREFIX}--out: {str(release[0].parent)!r} holds --gpt"), err
    err = _error(capsys, _convert(release, tmp_path / "o", "--n-head", "4", "--gpt-model", "GPT-B"))
    assert err.startswith(f"{ERROR_PREFIX}--n-head: give --gpt-model (a released size) or --n-head"), err
    for flags, named in ((["--image-size", "0"], "argument --image-size"), (["--dtype", "int8"], "argument --dtype"),
                         (["--gpt-model", "GPT-Z"], "argument --gpt-model")):
        err = _error(capsys, _convert(release, tmp_path / "o", *flags))
        assert err.startswith(f"{ERROR_PREFIX}{named}"), err
    assert not (tmp_path / "o").exists()


def test_convert_errors_from_the_files_name_the_flag(tmp_path, capsys):
    gpt, vq = release = build_llamagen_release(tmp_path / "release")
    out = tmp_path / "o"
    err = _error(capsys, _convert(release, out, "--n-head", "4", "--image-size", "9"))
    assert err == (f"{ERROR_PREFIX}--image-size: the VQ model makes 2 px per code; expected a multiple of it, got 9"), err
    err = _error(capsys, _convert(release, out))  # a size of no release: --n-head says how many heads
    assert err.startswith(f"{ERROR_PREFIX}--gpt: {str(gpt)!r} has 2 layers of width 64, none of LlamaGen's sizes") \
        and err.endswith("pass --n-head for a size of your own"), err
    err = _error(capsys, _convert(release, out, "--gpt-model", "GPT-B"))
    assert err == (f"{ERROR_PREFIX}--gpt-model: GPT-B has 12 layers of width 768; {str(gpt)!r} has 2 of width 64"), err
    err = _error(capsys, _convert(release, out, "--n-head", "5"))
    assert err.startswith(f"{ERROR_PREFIX}--n-head: dim=64 is not a multiple of n_head=5"), err
    err = _error(capsys, ["convert-llamagen", "--gpt", vq, "--vq", gpt, "--image-size", "8", "--out", out])
    assert err.startswith(f"{ERROR_PREFIX}--vq: {str(gpt)!r} lacks encoder.conv_in.weight"), err
    assert not out.exists()


def test_generate_errors_name_the_flag(converted, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("3\na cat\n")
    out = tmp_path / "pngs"
    err = _error(capsys, ["generate", "--model", converted, "--prompts", text, "--out", out, *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--prompts: {str(text)!r} line 2 (image 1): ") \
        and "'a cat'; LlamaGen c2i prompts are class labels (0..9" in err, err
    labels = _labels(tmp_path / "labels.txt", 3, 7)
    err = _error(capsys, ["generate", "--model", converted, "--prompts", labels, "--out", out, "--cfg", "0.5", *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--cfg: LlamaGen applies guidance only above 1"), err
    err = _error(capsys, ["generate", "--model", converted, "--prompts", _labels(tmp_path / "big.txt", 10), "--out",
                          out, *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--prompts: {str(tmp_path / 'big.txt')!r} line 1 (image 0): "), err
    err = _error(capsys, ["generate", "--model", converted, "--prompts", labels, "--out", out, "--size", "16", *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--size: expected None, 8 or (8, 8)"), err
    assert not out.exists() or not list(out.iterdir())


# --- text-to-image (t2i): convert with --t5, text prompts ----------------------------------------------------------
@pytest.fixture(scope="module")
def t2i_release(tmp_path_factory):
    """(t2i GPT file, VQ file, T5 directory) as a user has them after the downloads."""
    directory = tmp_path_factory.mktemp("llamagen_t2i_release")
    gpt, vq = directory / f"t2i_tiny_{IMAGE_SIZE}.pt", directory / "vq_tiny.pt"
    torch.save({"model": reference_t2i_gpt(0).state_dict()}, gpt)
    torch.save({"model": reference_vq(1).state_dict()}, vq)
    return gpt, vq, build_t5(directory / "flan-t5")


def _prompts(path, *lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_t2i_convert_generate_text_then_heads(t2i_release, tmp_path, capsys):
    """--t5 converts a t2i GPT; text prompts make 8 px PNGs; heads distilled and trained on it decode, greedily,
    the AR images byte for byte."""
    from PIL import Image

    gpt, vq, t5 = t2i_release
    model = tmp_path / "ckpt" / "llamagen-t2i"
    assert _hawk(["convert-llamagen", "--gpt", gpt, "--vq", vq, "--t5", t5, "--image-size", IMAGE_SIZE,
                  "--n-head", GPT["n_head"], "--out", model]) == 0
    out = capsys.readouterr().out
    assert f"wrote {model}: config.json, model.safetensors, vq_model.safetensors, text_encoder/" in out, out
    assert ("4 heads; 8 px images (4 x 4 codes, 2 px per code); text: captions of up to 8 T5 ids (8 caption "
            "positions, T5 width 16); codebook of 64 codes") in out and "classes" not in out, out
    assert f"--model {model} --prompts FILE --out OUT   (FILE: the prompts: text, one per line)" in out, out
    assert (model / "text_encoder" / "config.json").is_file()
    prompts = _prompts(tmp_path / "prompts.txt", "a red cat", "dog on the grass")
    greedy = ["--temperature", "0", "--threads", "1", "--prompts", prompts]
    assert _hawk(["generate", "--model", model, "--mode", "ar", "--out", tmp_path / "ar", *greedy]) == 0
    assert "llamagen on cpu; 2 images; mode ar" in capsys.readouterr().out
    names = ["000_a-red-cat.png", "001_dog-on-the-grass.png"]
    assert sorted(p.name for p in (tmp_path / "ar").glob("*.png")) == names
    for name in names:
        with Image.open(tmp_path / "ar" / name) as image:
            assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    data, heads = tmp_path / "data", tmp_path / "heads"
    assert _hawk(["distill", "--model", model, "--prompts", prompts, "--images-per-prompt", "2", "--batch-size", "4",
                  "--mode", "ar", "--out", data]) == 0
    assert f"4 sequences in 1 shard under {data}" in capsys.readouterr().out
    assert _hawk(["train-heads", "--model", model, "--data", data, "--out", heads, "--epochs", "1", "--batch-size",
                  "2", "--horizontal", "2", "--vertical", "1", "--calibrate-images", "2"]) == 0
    assert (heads / "tree_rates.json").is_file()
    assert _hawk(["generate", "--model", model, "--heads", heads, "--mode", "hawk+jacobi", "--nodes", "4", "--out",
                  tmp_path / "hawk", *greedy]) == 0
    assert "mode hawk+jacobi" in capsys.readouterr().out
    for name in names:
        assert _pixels(tmp_path / "hawk" / name) == _pixels(tmp_path / "ar" / name), name


def test_t5_errors_name_the_flag(t2i_release, tmp_path, capsys):
    """A t2i GPT without --t5, --t5 with a c2i GPT: one line naming --t5, nothing written."""
    gpt, vq, t5 = t2i_release
    out = tmp_path / "o"
    err = _error(capsys, ["convert-llamagen", "--gpt", gpt, "--vq", vq, "--image-size", "8", "--n-head", "4",
                          "--out", out])
    assert err.startswith(f"{ERROR_PREFIX}--t5: required for --gpt {str(gpt)!r}, a text-to-image (t2i) GPT") \
        and "give --t5 DIR" in err, err
    c2i = build_llamagen_release(tmp_path / "c2i")
    err = _error(capsys, _convert(c2i, out, "--n-head", "4", "--t5", t5))
    assert err == f"{ERROR_PREFIX}--t5: given, but the GPT is class-conditional (c2i): it reads no captions", err
    assert not out.exists()


def test_a_t5_path_that_is_no_t5_directory_is_named_before_a_file_is_read(t2i_release, tmp_path, capsys,
                                                                          monkeypatch):
    from hawk_kernels.pipelines import llamagen_convert

    gpt, vq, t5 = t2i_release

    def refuse(*args, **kwargs):
        raise AssertionError("a file was read before the error")

    monkeypatch.setattr(llamagen_convert, "convert_llamagen", refuse)
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, why in ((tmp_path / "absent", "does not exist"), (gpt, "is not a directory"),
                      (empty, "holds no config.json")):
        err = _error(capsys, ["convert-llamagen", "--gpt", gpt, "--vq", vq, "--t5", path, "--image-size", "8",
                              "--out", tmp_path / "o"])
        assert err == (f"{ERROR_PREFIX}--t5: {str(path)!r} {why}; expected the T5 model directory (google/flan-t5-xl "
                       f"as downloaded: config.json, weights, tokenizer)"), err
    err = _error(capsys, ["convert-llamagen", "--gpt", gpt, "--vq", vq, "--t5", t5, "--image-size", "8", "--out",
                          t5, "--overwrite"])  # --overwrite would delete the T5 directory read
    assert err.startswith(f"{ERROR_PREFIX}--out: {str(t5)!r} holds --t5"), err
    assert not (tmp_path / "o").exists()


def test_an_incomplete_or_foreign_t5_directory_is_named_t5(t2i_release, tmp_path, capsys):
    """No tokenizer files (transformers made a T5 tokenizer of no words: every caption <unk>), encoder weights
    missing (left random), no weights at all, another model's config: one line naming --t5, nothing written."""
    import shutil

    from safetensors.torch import load_file, save_file

    gpt, vq, t5 = t2i_release

    def variant(name, drop=(), config=None):
        copy = shutil.copytree(t5, tmp_path / name)
        for path in copy.iterdir():
            if any(word in path.name for word in drop):
                path.unlink()
        if config:
            (copy / "config.json").write_text(json.dumps({**json.loads((copy / "config.json").read_text()), **config}))
        return copy

    partial = variant("partial")
    state = load_file(str(partial / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("encoder.block.1.")},
              str(partial / "model.safetensors"), metadata={"format": "pt"})
    cases = ((variant("no_tokenizer", drop=("token", "spiece")), "holds no tokenizer (tokenizer.json or spiece.model"),
             (partial, "lacks T5 encoder weights (missing ['encoder.block.1."),
             (variant("no_weights", drop=("safetensors",)), "model.safetensors"),
             (variant("bert", config={"model_type": "bert"}), "holds a 'bert' model, not T5"))
    out = tmp_path / "o"
    for path, words in cases:
        err = _error(capsys, ["convert-llamagen", "--gpt", gpt, "--vq", vq, "--t5", path, "--image-size", "8",
                              "--n-head", "4", "--out", out])
        assert err.startswith(f"{ERROR_PREFIX}--t5: {str(path)!r}") and words in err, err
    assert not out.exists()


def test_t2i_distill_in_its_default_mode_chooses_its_tree_after_a_caption_sized_prompt(tmp_path, capsys,
                                                                                      monkeypatch):
    """`hawk distill` in its default mode (jacobi, --nodes auto) on a t2i model: the tree size was timed after a
    4-token dummy prompt, which a t2i GPT refuses (every prompt is its caption positions), so the documented
    command failed; `hawk generate` in jacobi (auto as well) times after the real prompt length."""
    from hawk_kernels.tree_size import CACHE_ENV
    from tests.tiny_llamagen import build_llamagen_t2i

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # an empty step-cost table: the sizes are timed here
    model, _ = build_llamagen_t2i(tmp_path / "t2i")
    prompts = _prompts(tmp_path / "prompts.txt", "a red cat", "dog on the grass")
    data = tmp_path / "data"
    assert _hawk(["distill", "--model", model, "--prompts", prompts, "--images-per-prompt", "2", "--threads", "1",
                  "--out", data]) == 0
    assert "decoded in jacobi" in capsys.readouterr().out
    assert json.loads((data / "manifest.json").read_text())["settings"]["mode"] == "jacobi"
    assert _hawk(["generate", "--model", model, "--prompts", prompts, "--mode", "jacobi", "--threads", "1", "--out",
                  tmp_path / "jacobi"]) == 0
    assert len(list((tmp_path / "jacobi").glob("*.png"))) == 2


def _pixels(png) -> tuple:
    """A PNG's size and pixels (its text chunks name the mode that made it: two modes' equal images differ there)."""
    from PIL import Image

    with Image.open(png) as image:
        return image.size, image.tobytes()
