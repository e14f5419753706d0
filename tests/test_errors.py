"""Careless input: every case is a clear exception naming the argument, raised before any model work; the CLI
prints one line and exits 2 before loading anything; NaN anywhere in what decoding reads raises in every mode."""
import warnings

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels import cli
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPT = torch.tensor([[1, 5, 6, 4]])
MODES = ("ar", "medusa", "vertical", "hawk")


# --- silent wrong output ---------------------------------------------------------------------------------
def _poison(model, where):
    with torch.no_grad():
        if where == "lm_head":
            model.get_output_embeddings().weight[20, 3] = float("nan")  # one image code's row
        elif where == "attention":
            model.model.layers[0].self_attn.q_proj.weight[0, 0] = float("nan")
        else:
            model.get_input_embeddings().weight[5, 0] = float("nan")  # a token of the prompt
    return model


@pytest.mark.parametrize("where", ["lm_head", "attention", "embedding"])
@pytest.mark.parametrize("greedy", [True, False])
def test_nan_weights_raise_in_every_mode(where, greedy):
    model, heads, grid = _poison(tiny_backbone(), where), tiny_heads(), tiny_grid()
    for mode in MODES:
        with pytest.raises(FloatingPointError, match="target logits"):
            hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=8).generate(
                PROMPT, cfg_scale=2.0, temperature=0 if greedy else 1.0)


def test_nan_heads_and_training_mode_are_refused():
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    with torch.no_grad():
        heads.res_weight[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="heads: res_weight has NaN"):
        hk.HawkDecoder(model, heads, grid, mode="hawk")
    hk.HawkDecoder(model, heads, grid, mode="ar")  # AR reads no heads
    dec = hk.HawkDecoder(model.train(), tiny_heads(), grid, mode="hawk")
    with pytest.raises(ValueError, match=r"model: is in training mode.*model.eval\(\)"):
        dec.generate(PROMPT)


def test_padded_rows_without_attention_mask_warn():
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()  # pad_token_id 0
    dec = hk.HawkDecoder(model, heads, grid, mode="ar")
    with pytest.warns(UserWarning, match="attention_mask"):
        dec.generate(torch.tensor([[1, 5, 6, 4], [0, 1, 7, 4]]), temperature=0)
    with warnings.catch_warnings(record=True) as caught:  # with the mask given, our warning stays quiet
        warnings.simplefilter("always")
        dec.generate(torch.tensor([[1, 5, 6, 4], [0, 1, 7, 4]]), attention_mask=torch.tensor([[1] * 4, [0, 1, 1, 1]]),
                     temperature=0)
    assert not [w for w in caught if "attention_mask" in str(w.message)], [str(w.message) for w in caught]


# --- accepted nonsense and errors that did not name the argument ------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_nodes=0), ValueError, "num_nodes"),
    (dict(num_nodes=-3), ValueError, "num_nodes"),
    (dict(num_nodes=2.5), TypeError, "num_nodes"),
    (dict(num_nodes=1), ValueError, "num_nodes"),
    (dict(accept_rates=[[0.5, 1.5]]), ValueError, "accept_rate"),
    (dict(accept_rates="abc"), TypeError, "accept_rate"),
    (dict(accept_rates=[[0.5, float("nan")]]), ValueError, "accept_rate"),
    (dict(horizontal_candidates=0), ValueError, "horizontal_candidates"),
    (dict(max_depth=1.5), TypeError, "max_depth"),
    (dict(sync_every="4"), TypeError, "sync_every"),
    (dict(num_nodes=100_000), ValueError, r"num_nodes: expected an int in \[1, 1024\]"),  # not a 20k-node tree
    (dict(horizontal_candidates=300), ValueError, r"horizontal_candidates: expected an int in \[1, 41\]"),
    (dict(vertical_candidates=42), ValueError, "vertical_candidates"),
    (dict(progress=True), TypeError, "progress"),  # not a constructor argument
])
def test_decoder_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk", **kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(seed=1.7), TypeError, "seed"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed="abc"), TypeError, "seed"),
    (dict(seed=None), TypeError, "seed"),
    (dict(cfg_scale=-1.0), ValueError, "cfg_scale"),
    (dict(cfg_scale=float("nan")), ValueError, "cfg_scale"),
    (dict(cfg_scale=float("inf")), ValueError, "cfg_scale"),
    (dict(temperature=float("inf")), ValueError, "temperature"),
    (dict(temperature=-0.5), ValueError, "temperature"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(top_k=2.0), TypeError, "top_k"),
    (dict(top_p=0.0), ValueError, "top_p"),
    (dict(cfg_scale=2.0, negative_input_ids=torch.tensor([[4.0]])), TypeError, "negative_input_ids"),
    (dict(cfg_scale=2.0, negative_input_ids=torch.tensor([[4], [4], [4]])), ValueError, "negative_input_ids: expected 1 or 2 rows"),
    (dict(cfg_scale=2.0, negative_input_ids=torch.tensor([[4, 99]])), ValueError, r"negative_input_ids: token ids must lie in \[0, 48\)"),
    (dict(negative_input_ids=torch.tensor([[4]])), ValueError, "negative_input_ids: given, but cfg_scale == 1"),
    (dict(cfg_scale=2.0, negative_input_ids=torch.tensor([[0, 4], [3, 4]]), negative_attention_mask=torch.ones(2, 3)),
     ValueError, r"negative_attention_mask: expected shape \(2, 2\)"),
    (dict(cfg_scale=2.0, negative_input_ids=torch.tensor([[3, 4]]), negative_attention_mask=torch.tensor([[1, 0]])),
     ValueError, "negative_attention_mask: unconditional prompts must be left-padded"),
    (dict(cfg_scale=2.0, negative_attention_mask=torch.ones(2, 1)), ValueError,
     "negative_attention_mask: given without negative_input_ids"),
    (dict(cfg_scale=2.0, negative_input_ids=torch.tensor([[3, 4]]), negative_attention_mask=[[1, 1]]), TypeError,
     "negative_attention_mask: expected a torch.Tensor"),
    (dict(attention_mask=torch.tensor([[1, 0.5, 1, 1], [1, 1, 1, 1]])), ValueError, "attention_mask: expected only 0 and 1"),
    (dict(attention_mask=torch.ones(1, 4)), ValueError, "attention_mask: expected shape"),
    # finite, but they overflow float32 logits to inf (the target law to NaN): refused by name, not blamed on the model
    (dict(temperature=1e-45), ValueError, r"temperature: expected 0 \(greedy\) or a finite number >= 0.0001"),
    (dict(cfg_scale=1e38), ValueError, r"cfg_scale: expected a finite number in \[0.0, 10000.0\]"),
    (dict(progress="yes"), TypeError, "progress: expected True or False"),
])
def test_generate_arguments_fail_before_any_model_work(kwargs, error, match, monkeypatch):
    dec = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk")

    def no_model_work(*args, **kw):
        raise AssertionError("the backbone ran before the arguments were checked")

    monkeypatch.setattr(dec.backbone, "prefill", no_model_work)
    with pytest.raises(error, match=match):
        dec.generate(PROMPT.repeat(2, 1), **kwargs)


def test_prompt_and_grid_arguments():
    dec = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="ar")
    with pytest.raises(TypeError, match="input_ids"):
        dec.generate([[1, 5, 6, 4]])
    with pytest.raises(TypeError, match="input_ids"):
        dec.generate(PROMPT.float())
    with pytest.raises(ValueError, match=r"input_ids: expected shape \[B, L\]"):
        dec.generate(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="row_end_token: expected an int >= 0, got -1"):
        hk.ImageGrid(height=2, width=2, row_end_token=-1, image_token_range=(8, 48))
    with pytest.raises(TypeError, match="height"):
        hk.ImageGrid(height=2.0, width=2, image_token_range=(8, 48))
    with pytest.raises(ValueError, match="image_end_token: 3 is also the row_end_token"):
        hk.ImageGrid(height=2, width=2, row_end_token=3, image_token_range=(8, 48), image_end_token=3)
    with pytest.raises(ValueError, match="resolution: expected the int 512, 768 or 1024, got str '768'"):
        hk.ImageGrid.lumina_mgpt("768")
    with pytest.raises(TypeError, match="model: expected a transformers causal LM"):
        hk.HawkDecoder("a model", None, tiny_grid(), mode="ar")


def test_a_session_refuses_a_bad_step_count_and_an_unfinished_output():
    session = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk").start(PROMPT)
    for steps, error in ((1.5, TypeError), ("3", TypeError), (None, TypeError), (-1, ValueError)):
        with pytest.raises(error, match="steps: expected an int >= 0"):
            session.run(steps)
    session.run(0)  # nothing to do
    with pytest.raises(RuntimeError, match="output\\(\\): the image is not finished"):
        session.output()  # was: a whole image of placeholder codes, no word of it


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(hidden_size=1.5), TypeError, "hidden_size: expected an int >= 1, got float 1.5"),
    (dict(hidden_size="16"), TypeError, "hidden_size: expected an int >= 1, got str '16'"),
    (dict(hidden_size=True), TypeError, "hidden_size"),
    (dict(num_horizontal=1.5), TypeError, "num_horizontal"),
    (dict(image_token_range=(5,)), TypeError, "image_token_range: expected None or a pair"),
    (dict(image_token_range="5-10"), TypeError, "image_token_range: expected None or a pair"),
    (dict(shared_lm_head=1), TypeError, "shared_lm_head: expected True or False"),
    (dict(dtype="float16"), TypeError, "dtype: expected a floating torch.dtype"),
    (dict(dtype=torch.int64), TypeError, "dtype: expected a floating torch.dtype"),
])
def test_draft_heads_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        hk.DraftHeads(**{**dict(hidden_size=16, vocab_size=32), **kwargs})


@pytest.mark.parametrize("config, weights, match", [
    (None, b"garbage", "unreadable draft heads"),  # not safetensors
    (None, b"", "unreadable draft heads"),
    ({"hidden_size": "16"}, None, "hidden_size: expected an int"),
    ({"image_token_range": "5-10"}, None, "image_token_range: expected None or a pair"),
    ({"hidden_size": None}, None, "hidden_size"),
    ("drop vocab_size", None, r"missing field\(s\) \['vocab_size'\]"),
])
def test_draft_heads_files(config, weights, match, tmp_path):
    """A heads directory with a broken file: a ValueError naming the file, never a safetensors or torch error."""
    import json

    heads = hk.DraftHeads(16, 32, num_horizontal=1, vertical_depth=1)
    heads.save_pretrained(str(tmp_path))
    config_file, weights_file = tmp_path / "draft_heads_config.json", tmp_path / "draft_heads.safetensors"
    saved = json.loads(config_file.read_text())
    if config == "drop vocab_size":
        saved.pop("vocab_size")
    elif config is not None:
        saved.update(config)
    config_file.write_text(json.dumps(saved))
    if weights is not None:
        weights_file.write_bytes(weights)
    with pytest.raises(ValueError, match=match):
        hk.DraftHeads.from_pretrained(str(tmp_path))


def test_a_model_directory_with_a_broken_config(tmp_path):
    (tmp_path / "config.json").write_text("{bad")
    with pytest.raises(ValueError, match="config.json' is not a readable JSON file"):
        hk.load_pipeline(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json' holds a list, expected a JSON object"):
        hk.load_pipeline(tmp_path)


# --- the demo pipeline ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe():
    return hk.load_demo_pipeline(device="cpu")


def test_demo_pipeline_arguments(pipe, tmp_path):
    with pytest.raises(TypeError, match="prompts"):
        pipe.generate(7)
    with pytest.raises(ValueError, match="prompts: prompt 1 is empty"):
        pipe.generate(["a handwritten digit seven", "  "])
    with pytest.raises(ValueError, match="prompts: unknown prompt word"):
        pipe.generate(["a handwritten giraffe"])
    with pytest.raises(FileNotFoundError, match="heads: no such directory"):
        hk.load_demo_pipeline(heads=tmp_path / "missing")
    with pytest.raises(TypeError, match="heads: expected a directory or DraftHeads"):
        hk.load_demo_pipeline(heads=7)
    with pytest.raises(ValueError, match="dtype: expected None or one of float16, .*got 'int64'"):
        hk.load_demo_pipeline(dtype="int64")
    assert hk.load_demo_pipeline(dtype="float64").model.dtype == torch.float64  # a name, as load_pipeline takes it
    with pytest.raises(ValueError, match="dtype: .*got torch.int32"):
        hk.load_demo_pipeline(dtype=torch.int32)
    with pytest.raises(ValueError, match="device"):
        hk.load_demo_pipeline(device="tpu")


@pytest.mark.parametrize("input_ids, error, match", [
    ([5, 6], TypeError, "input_ids: row 0: expected a non-empty list of token ids"),  # a flat list: one row?
    ([[True, 6]], TypeError, "input_ids: row 0: token: expected an int in \\[0, 291\\], got bool True"),
    ([[5, 10**6]], ValueError, "input_ids: row 0: token: expected an int in \\[0, 291\\], got 1000000"),
    ([torch.tensor([5.0])], TypeError, "input_ids\\[0\\]"),
])
def test_demo_pipeline_id_rows(pipe, input_ids, error, match):
    with pytest.raises(error, match=match):
        pipe.generate_tokens(input_ids=input_ids, mode="ar", num_nodes=1)


def test_id_rows_take_any_integer_type(pipe):
    import numpy as np

    rows = [[np.int64(5), 6], torch.tensor([5, 6])]
    out = pipe.generate_tokens(input_ids=rows, mode="ar", num_nodes=1, temperature=0)
    assert torch.equal(out.image_tokens[0], out.image_tokens[1])


def test_a_decoder_given_to_generate_must_fit_the_call(pipe):
    with pytest.raises(TypeError, match="decoder: expected a HawkDecoder or None, got str"):
        pipe.generate(["a handwritten digit seven"], mode="hawk", decoder="x")
    with pytest.raises(ValueError, match="decoder: its mode is 'ar', the call's mode='hawk'"):
        pipe.generate(["a handwritten digit seven"], mode="hawk", decoder=pipe.decoder("ar", num_nodes=1))
    other = hk.HawkDecoder(pipe.model, None, hk.ImageGrid(height=4, width=4, image_token_range=pipe.grid.image_token_range),
                           mode="ar", num_nodes=1)
    with pytest.raises(ValueError, match="decoder: built for the layout"):
        pipe.generate(["a handwritten digit seven"], mode="ar", decoder=other)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only machine")
def test_cuda_device_on_a_cpu_only_torch_is_named():
    with pytest.raises(ValueError, match="device: 'cuda' requested"):
        hk.load_demo_pipeline(device="cuda")


# --- the command line -----------------------------------------------------------------------------------
@pytest.fixture
def nothing_loads(monkeypatch):
    """Any model load fails the test: CLI input errors must come before."""
    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    import hawk_kernels.pipelines.demo.model as demo_model
    import hawk_kernels.pipelines.demo.pipeline as demo_pipeline

    monkeypatch.setattr(demo_pipeline, "load_demo_pipeline", fail)
    monkeypatch.setattr(demo_model, "load_demo_backbone", fail)


@pytest.mark.parametrize("argv, match", [
    (["demo", "--prompts", "a handwritten giraffe"], "unknown prompt word"),
    (["demo", "--prompts"], "--prompts: expected at least one argument"),
    (["demo", "--prompts", ""], "empty prompt"),
    (["demo", "--temperature", "-1"], "--temperature: expected >= 0.0"),
    (["demo", "--temperature", "inf"], "--temperature: expected a finite number"),
    (["demo", "--top-k", "0"], "--top-k: expected >= 1"),
    (["demo", "--threads", "0"], "--threads: expected >= 1"),
    (["demo", "--nodes", "0"], "--nodes: expected >= 1"),
    (["demo", "--nodes", "two"], "--nodes: expected an integer"),
    (["demo", "--seed", "1.7"], "--seed: expected an integer"),
    (["demo", "--out", "/nonexistent-dir/x.png"], "--out: directory '/nonexistent-dir' does not exist"),
    (["demo", "--out", "sheet.xyz"], "--out: unknown image extension '.xyz'"),
    (["demo", "--device", "tpu"], "--device"),
    (["train-heads", "--demo"], "--out"),
    (["train-heads", "--demo", "--out", "hawk_kernels/assets/demo/heads"], "inside the installed package"),
    (["train-heads", "--out", "OUT", "--model", "/nonexistent", "--data", "x", "--height", "2", "--width", "2",
      "--image-range", "0", "4"], "--model: '/nonexistent' is not a model directory"),
    (["train-heads", "--out", "OUT"], "give --demo (the bundled model) or --model DIR, one of them"),
    (["distill", "--out", "OUT", "--demo"], "give --prompts FILE or --input-ids FILE (self-distillation), or --images DIR"),
    (["distill", "--out", "OUT", "--demo", "--prompts", "p.txt", "--size", "64"], "--size: the demo model has one"),
    (["distill", "--out", "OUT", "--demo", "--images", "/nonexistent"], "images: no such directory"),
    (["train-heads", "--demo", "--out", "OUT", "--horizontal", "0", "--vertical", "0"], "at least one head"),
])
def test_cli_errors_are_one_line_and_come_first(argv, match, nothing_loads, capsys, tmp_path):
    argv = [str(tmp_path / "heads") if a == "OUT" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hawk: error: ") and match in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only machine")
def test_cli_cuda_without_cuda(nothing_loads, capsys):
    assert cli.main(["demo", "--device", "cuda"]) == 2
    assert "--device: 'cuda' requested" in capsys.readouterr().err


def test_cli_training_data_and_outputs(nothing_loads, capsys, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    common = ["train-heads", "--model", str(tmp_path / "model"), "--height", "2", "--width", "2",
              "--image-range", "8", "48", "--out", str(tmp_path / "heads")]
    torch.save({"body_start": 3}, tmp_path / "nokey.pt")
    torch.save(torch.zeros(4, 9, dtype=torch.long), tmp_path / "bare.pt")
    torch.save({"sequences": torch.zeros(4, 5, dtype=torch.long), "body_start": 3}, tmp_path / "short.pt")
    for data, match in (("nokey.pt", "--data: missing key 'sequences'"), ("bare.pt", "--data: expected a dict"),
                        ("short.pt", "cannot hold body_start 3 + 4 image tokens"), ("none.pt", "--data: no such file")):
        assert cli.main(common + ["--data", str(tmp_path / data)]) == 2
        assert match in capsys.readouterr().err
    assert cli.main(["train-heads", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "heads")]) == 2
    assert "with --model, give --data, --height, --width, --image-range" in capsys.readouterr().err
    (tmp_path / "heads").mkdir()
    (tmp_path / "heads" / "draft_heads.safetensors").write_bytes(b"mine")
    assert cli.main(["train-heads", "--demo", "--out", str(tmp_path / "heads")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "heads" / "draft_heads.safetensors").read_bytes() == b"mine"


def test_cli_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and hk.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    help_text = capsys.readouterr().out
    assert "(default: auto)" in help_text and "tree nodes per step" in help_text


def test_cli_modes_without_ar_print_no_nan(capsys, tmp_path):
    out = tmp_path / "sheet.png"
    assert cli.main(["demo", "--prompts", "the number 3", "--modes", "hawk", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed and "add 'ar' to --modes" in printed and "1 prompt;" in printed
    assert out.exists() and not (tmp_path / "sheet.png.partial").exists()


def test_a_decode_that_makes_no_progress_raises_instead_of_hanging(monkeypatch):
    """Every step commits >= 1 token per unfinished row, so a round of steps that leaves the slowest row where it
    was is broken (a CUDA graph captured on another device's stream replays as a no-op): generate raises, naming
    how the steps ran, instead of looping forever."""
    from hawk_kernels.engine.session import DecodeSession

    monkeypatch.setattr(DecodeSession, "run", lambda self, steps=1: None)  # steps that do nothing
    dec = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk")
    with pytest.raises(RuntimeError, match="the decode steps made no progress .* the steps ran eagerly"):
        dec.generate(PROMPT)
