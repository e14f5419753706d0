"""Journeys through the `hawk` command line as a user makes many images and trains heads (the README's "Command
line" and "Many images" parts): what a user hit, each pinned by a test.

- `train-heads --resume` with other settings than the checkpoint's continued silently (another --batch-size
  walked another batch order, --lr was overridden by the checkpoint's schedule) or crashed with a traceback
  (other head counts); a fresh `--overwrite` run left the old run's checkpoints for a later --resume to pick up.
- `--heads DIR` that is no heads directory, or heads of another model, was named `heads:` / `directory:` (not the
  flag), after the model loaded; `--mode hawk` on a checkpoint without --heads loaded the model first.
- Ctrl-C printed a traceback and left manifest.jsonl missing (the images only in a part file).
- Progress written to a log file or pipe was carriage-return noise, and its tokens per pass was another count
  than the manifest's and the summary's.
- `torchrun ... distill` printed its summary once per rank, each as soon as that rank was done.
- `distill` into a directory made with other settings said only "(settings)", not which.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from hawk_kernels import cli, load_demo_pipeline
from hawk_kernels.cli.common import ERROR_PREFIX
from tests.test_cli_input_errors import FAST, _error


def _refuse_model(patch):
    """Neither the bundled model nor a checkpoint may load: the error comes before."""
    from hawk_kernels import pipelines
    from hawk_kernels.pipelines.demo import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the model loaded before the error")

    patch.setattr(pipeline, "load_demo_pipeline", refuse)
    patch.setattr(pipelines, "load_pipeline", refuse)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small `hawk distill` data set of the bundled model: 2 prompts x 4 images."""
    root = tmp_path_factory.mktemp("journey")
    prompts = root / "prompts.txt"
    prompts.write_text("digit eight\nthe number 3\n")
    data = root / "data"
    assert cli.main(["distill", "--demo", "--prompts", str(prompts), "--images-per-prompt", "4", "--batch-size", "4",
                     "--mode", "ar", "--out", str(data)]) == 0
    return data


def _train(data, out, *extra):
    return ["train-heads", "--demo", "--data", str(data), "--out", str(out), "--batch-size", "2", "--epochs", "1",
            "--horizontal", "2", "--vertical", "1", "--calibrate-images", "0", *[str(e) for e in extra]]


# --- train-heads --resume --------------------------------------------------------------------------------------
def test_resume_refuses_a_checkpoint_of_other_settings_and_overwrite_drops_old_checkpoints(data_dir, tmp_path, capsys,
                                                                                          monkeypatch):
    heads = tmp_path / "heads"
    assert cli.main(_train(data_dir, heads, "--checkpoint-every", "1")) == 0
    checkpoints = sorted(p.name for p in (heads / "checkpoints").iterdir())
    assert len(checkpoints) == 3, checkpoints  # 7 training sequences, batch 2: 3 steps
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _refuse_model(patch)
        for flags, named in ((["--batch-size", "3"], "--batch-size"), (["--lr", "0.1"], "--lr"),
                             (["--epochs", "2"], "--epochs"), (["--seed", "1"], "--seed"),
                             (["--horizontal", "1"], "--horizontal"), (["--layers", "2"], "--layers")):
            argv = _train(data_dir, heads, "--checkpoint-every", "1", "--resume")
            if flags[0] in argv:
                argv[argv.index(flags[0]) + 1] = flags[1]
            else:
                argv += flags
            err = _error(capsys, argv)
            assert err.startswith(f"{ERROR_PREFIX}{named}: checkpoint {checkpoints[-1]}"), err
        # without --resume, a directory holding checkpoints says what --resume and --overwrite do
        err = _error(capsys, _train(data_dir, heads))
        assert "--resume continues it" in err and "--overwrite" in err, err
    # the same settings resume (and say from where)
    assert cli.main(_train(data_dir, heads, "--checkpoint-every", "1", "--resume")) == 0
    assert f"resuming from {heads / 'checkpoints' / checkpoints[-1]}" in capsys.readouterr().out
    # a fresh run replacing these heads removes the old run's checkpoints: a later --resume cannot continue them
    assert cli.main(_train(data_dir, heads, "--overwrite", "--lr", "0.01")) == 0
    assert "removed 3 checkpoints" in capsys.readouterr().out
    assert not list((heads / "checkpoints").glob("step-*.pt"))


def test_resume_of_a_checkpoint_without_identity_refuses_other_heads_in_one_line(data_dir, tmp_path, capsys):
    """A checkpoint written before the identity was recorded: other head counts are one error line, not a
    RuntimeError traceback out of load_state_dict."""
    heads = tmp_path / "heads"
    assert cli.main(_train(data_dir, heads, "--checkpoint-every", "3")) == 0
    (checkpoint,) = (heads / "checkpoints").glob("step-*.pt")
    state = torch.load(checkpoint, weights_only=False)
    state.pop("identity", None)
    torch.save(state, checkpoint)
    capsys.readouterr()
    err = _error(capsys, _train(data_dir, heads, "--resume", "--horizontal", "1"))
    assert err.startswith(f"{ERROR_PREFIX}--horizontal/--vertical/--layers: checkpoint {checkpoint.name} holds heads "
                          f"of another shape"), err


# --- --heads and --mode --------------------------------------------------------------------------------------
def test_heads_errors_name_the_flag_before_the_model_loads(tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "p.txt"
    prompts.write_text("digit eight\n")
    not_heads = tmp_path / "not_heads"
    not_heads.mkdir()
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    with monkeypatch.context() as patch:
        _refuse_model(patch)
        for command in (["generate", "--prompt", "digit eight", "--out", tmp_path / "o"],
                        ["distill", "--prompts", prompts, "--out", tmp_path / "d", "--mode", "hawk"],
                        ["demo", "--out", tmp_path / "sheet.png"]):
            demo = ["--demo"] if command[0] != "demo" else []
            err = _error(capsys, [*command, *demo, "--heads", tmp_path / "absent"])
            assert err == f"{ERROR_PREFIX}--heads: no such directory {str(tmp_path / 'absent')!r}", err
            err = _error(capsys, [*command, *demo, "--heads", not_heads])
            assert err.startswith(f"{ERROR_PREFIX}--heads: {str(not_heads)!r} holds no draft heads"), err
        # a mode with heads on a checkpoint without --heads: known before the checkpoint loads
        err = _error(capsys, ["generate", "--model", checkpoint, "--prompt", "a cat", "--out", tmp_path / "o",
                              "--mode", "hawk"])
        assert err.startswith(f"{ERROR_PREFIX}--mode: hawk needs draft heads"), err
        err = _error(capsys, ["distill", "--model", checkpoint, "--prompts", prompts, "--out", tmp_path / "d",
                              "--mode", "hawk+jacobi"])
        assert err.startswith(f"{ERROR_PREFIX}--mode: hawk+jacobi needs draft heads"), err


def test_heads_of_another_model_are_named_by_the_flag(tmp_path, capsys):
    from hawk_kernels.pipelines.demo.pipeline import load_demo_pipeline

    heads = tmp_path / "heads"
    load_demo_pipeline(device="cpu").heads.save_pretrained(str(heads))
    config = json.loads((heads / "draft_heads_config.json").read_text())
    (heads / "draft_heads_config.json").write_text(json.dumps({**config, "model_fingerprint": "0" * 16}))
    err = _error(capsys, ["generate", "--demo", "--heads", heads, "--prompt", "digit eight", "--out", tmp_path / "o",
                          "--mode", "hawk", "--nodes", "4", "--threads", "1"])
    assert err.startswith(f"{ERROR_PREFIX}--heads: trained for the model with fingerprint {'0' * 16}"), err
    (heads / "draft_heads_config.json").write_text(json.dumps({**config, "family": "emu3"}))
    err = _error(capsys, ["generate", "--demo", "--heads", heads, "--prompt", "digit eight", "--out", tmp_path / "o"])
    assert err == f"{ERROR_PREFIX}--heads: trained for the 'emu3' family, this model is 'demo'", err
    assert not (tmp_path / "o").exists()


# --- Ctrl-C and what a log shows -------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_and_leaves_the_manifest_of_the_images_written(tmp_path, capsys, monkeypatch):
    from hawk_kernels.pipelines import batch_job

    stream_images = batch_job.stream_images

    def interrupted_while_decoding_the_second_image(*args, **kwargs):
        for handed, item in enumerate(stream_images(*args, **kwargs)):
            if handed == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(batch_job, "stream_images", interrupted_while_decoding_the_second_image)
    out = tmp_path / "pngs"
    argv = ["generate", "--demo", "--prompt", "digit eight", "the number 3", "digit one", "--out", str(out), *FAST]
    try:
        assert cli.main(argv) == 130
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of hawk as a traceback")
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"hawk: interrupted; the images written are complete and listed in {out / 'manifest.jsonl'}; the same command "
        f"resumes"), err
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0] and sorted(p.name for p in out.glob("*.png")) == [rows[0]["png"]]
    monkeypatch.undo()
    assert cli.main(argv) == 0  # the same command resumes: images 1 and 2, once each
    assert [json.loads(line)["index"] for line in (out / "manifest.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert "3 images of 3" in capsys.readouterr().out


def test_progress_in_a_log_is_lines_and_agrees_with_the_manifest(tmp_path, capsys):
    out = tmp_path / "pngs"
    assert cli.main(["generate", "--demo", "--prompt", "digit eight", "the number 3", "--out", str(out), "--mode",
                     "jacobi", "--nodes", "8", "--batch-size", "2", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err, captured.err  # stderr is not a terminal here: no carriage returns
    bar = re.findall(r"tokens_per_pass=([0-9.]+)", captured.err)
    summary = re.search(r"tokens per pass ([0-9.]+)", captured.out).group(1)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    tokens = sum(r["passes"] * r["tokens_per_pass"] for r in rows) / sum(r["passes"] for r in rows)
    assert bar and bar[-1] == summary == f"{tokens:.2f}", (bar, summary, tokens)


def test_ar_is_one_token_per_pass_in_the_manifest_and_the_api(tmp_path, capsys):
    """The manifest and the summary counted the prefill's token and the forced image end as a pass's (AR read
    1.01 tokens per pass there, 1.00 in the API and the demo); every count is now the tokens the passes committed."""
    out = tmp_path / "pngs"
    assert cli.main(["generate", "--demo", "--prompt", "digit eight", "the number 3", "--out", str(out), *FAST]) == 0
    assert "tokens per pass 1.00," in capsys.readouterr().out
    assert {json.loads(line)["tokens_per_pass"] for line in (out / "manifest.jsonl").read_text().splitlines()} == {1.0}
    res = load_demo_pipeline().generate(["digit eight", "seven"], mode="hawk", num_nodes=8, seed=1)
    assert res.tokens_per_pass == sum(res.committed) / sum(res.num_forward_passes) > 1
    assert all(n - c == 2 for n, c in zip(res.num_tokens, res.committed))  # the prefill's token, the image end


def test_one_images_token_bar_writes_nothing_to_a_log(capsys):
    """The demo's per-image token bars (transient) printed a '0/210' line per mode into a log; a log gets them only
    when an image outlasts progress.LOG_INTERVAL_S."""
    pipe = load_demo_pipeline()
    capsys.readouterr()
    pipe.generate(["digit eight"], mode="ar", num_nodes=1, progress=True)
    assert capsys.readouterr().err == ""


# --- torchrun ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_distill_prints_one_summary_after_every_rank(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("digit eight\nthe number 3\ndigit one\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "hawk_kernels", "distill", "--demo", "--prompts", str(prompts), "--batch-size", "1",
                           "--mode", "ar", "--out", str(tmp_path / "data")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("sequences in") == 1, done.stdout
    assert "3 sequences in 3 shards" in done.stdout and len(list((tmp_path / "data").glob("shard-*"))) == 3


# --- distill into a directory of other settings ----------------------------------------------------------------
def test_distill_into_other_settings_names_what_differs(data_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("digit eight\nthe number 3\n")
    err = _error(capsys, ["distill", "--demo", "--prompts", prompts, "--images-per-prompt", "4", "--batch-size", "4",
                          "--mode", "jacobi", "--nodes", "4", "--out", data_dir])
    assert "(mode 'ar', not 'jacobi'; num_nodes 1, not 4)" in err, err
    prompts.write_text("digit one\n")
    err = _error(capsys, ["distill", "--demo", "--prompts", prompts, "--images-per-prompt", "4", "--batch-size", "4",
                          "--mode", "ar", "--out", data_dir])
    assert "(num_prompts 2, not 1; other prompts)" in err, err
