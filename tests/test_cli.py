"""The command line reads like one program (issue 19): every default shown, each once; one error prefix; output
paths named for what is wrong with them; the sheet extensions the message lists are the ones accepted and
written; `hawk demo --heads DIR` decodes with those heads; `hawk` and `python -m hawk_kernels` both run it."""
from __future__ import annotations

import argparse
import importlib.metadata
import sys

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels import cli
from hawk_kernels.cli import demo as demo_command
from hawk_kernels.cli.common import ERROR_PREFIX


def _commands() -> dict:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _option_help(parser, action) -> str:
    return parser._get_formatter()._expand_help(action) if action.help else ""


def test_every_default_is_shown_once():
    for name, parser in _commands().items():
        for action in parser._actions:
            if not action.option_strings or action.default == argparse.SUPPRESS:
                continue
            text = _option_help(parser, action)
            flag = f"hawk {name} {action.option_strings[0]}"
            assert action.help, f"{flag} has no help"
            assert "(default: None)" not in text and text.count("(default:") <= 1, f"{flag}: {text}"
            if action.default is not None and action.default is not False:
                assert text.count("(default:") == 1, f"{flag} hides its default {action.default!r}: {text}"


@pytest.mark.parametrize("command, option, default", [
    ("demo", "--prompts", "six built-in prompts"), ("train-heads", "--epochs", "4"),
    ("train-heads", "--batch-size", "32"), ("train-heads", "--seed", "0"), ("distill", "--images-per-prompt", "1"),
    ("generate", "--nodes", "auto"), ("demo", "--nodes", "auto"), ("generate", "--compile", "auto"),
])
def test_the_defaults_a_new_user_missed_are_in_the_help(command, option, default):
    parser = _commands()[command]
    action = next(a for a in parser._actions if option in a.option_strings)
    assert _option_help(parser, action).endswith(f"(default: {default})")
    assert f"(default: {default})" in " ".join(parser.format_help().split())


@pytest.mark.parametrize("argv", [
    ["nonsense"],  # argparse, before any command
    ["demo", "--seed", "1.7"],  # argparse, inside a command
    ["demo", "--out", "sheet.xyz"],  # our own check
    ["demo", "--device", "tpu"],  # a library error behind a flag
    ["distill", "--out", "x"],
    ["generate", "--model", "/nonexistent", "--prompt", "a", "--out", "x"],
])
def test_one_error_prefix(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(ERROR_PREFIX) and "hawk demo:" not in err, err


@pytest.mark.parametrize("argv", [
    ["demo", "--out", "{file}/sheet.png"],
    ["distill", "--demo", "--prompts", "{file}", "--out", "{file}/data"],
    ["train-heads", "--demo", "--out", "{file}/heads"],
    ["generate", "--model", "{tmp}", "--prompt", "a", "--out", "{file}/pngs"],
])
def test_an_output_under_a_file_says_the_parent_is_a_file(argv, capsys, tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("the number 3\n")
    (tmp_path / "config.json").write_text("{}")
    assert cli.main([a.format(file=afile, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"--out: {str(afile)!r} is a file, not a directory" in err and "does not exist" not in err, err


def test_sheet_extensions_in_the_message_are_the_ones_accepted_and_written(tmp_path, capsys):
    from PIL import Image

    accepted = demo_command.sheet_suffixes()
    assert accepted[0] == ".png" and set(accepted) <= set(demo_command.SHEET_SUFFIXES)
    assert cli.main(["demo", "--out", str(tmp_path / "sheet.gif")]) == 2  # Pillow writes GIF; we do not offer it
    assert capsys.readouterr().err.strip().endswith(f"use {', '.join(accepted)}")
    digits = [Image.new("L", (28, 28), shade) for shade in (0, 128)]
    for suffix in accepted:
        path = tmp_path / f"sheet{suffix.upper()}"
        demo_command.check_sheet_path(str(path))
        demo_command.write_sheet({"ar": digits, "hawk": digits}, str(path))
        with Image.open(path) as written:
            assert written.size == (90 + 2 * 84, 2 * 84), suffix


def test_demo_heads_are_the_ones_given(tmp_path, capsys, monkeypatch):
    from hawk_kernels.pipelines.demo import pipeline as demo_pipeline

    bundled = hk.DraftHeads.from_pretrained(demo_pipeline.HEADS_DIR).config
    mine = hk.DraftHeads(bundled.hidden_size, bundled.vocab_size, num_horizontal=1, vertical_depth=1)
    mine.save_pretrained(tmp_path / "mine")
    loaded, original = [], demo_pipeline.load_demo_pipeline

    def recording(**kwargs):
        loaded.append(original(**kwargs))
        return loaded[-1]

    monkeypatch.setattr(demo_pipeline, "load_demo_pipeline", recording)
    argv = ["demo", "--heads", str(tmp_path / "mine"), "--modes", "medusa", "--prompts", "the number 3",
            "--out", str(tmp_path / "sheet.png")]
    assert cli.main(argv) == 0
    assert f"heads from {tmp_path / 'mine'}" in capsys.readouterr().out
    assert loaded[0].heads.num_horizontal == 1 and loaded[0].accept_rates == {} and bundled.num_horizontal == 4
    assert cli.main(["demo", "--heads", str(tmp_path / "none"), "--out", str(tmp_path / "s.png")]) == 2
    assert "--heads: no such directory" in capsys.readouterr().err


def test_hawk_entry_point_and_module_run_the_same_main(monkeypatch, capsys):
    import runpy

    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "hawk"]
    assert entry.value == "hawk_kernels.cli:main" and entry.load() is cli.main
    monkeypatch.setattr(sys, "argv", ["python -m hawk_kernels", "--version"])  # as `python -m hawk_kernels` runs
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("hawk_kernels", run_name="__main__")
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"hawk_kernels {hk.__version__}"


def test_demo_shows_each_modes_fastest_round(tmp_path, capsys, monkeypatch):
    """--rounds N runs every mode N times in turn and shows each mode's fastest run (one timing of a second reads
    tens of percent off on a shared CPU); the images are the same every round (same seed)."""
    from hawk_kernels.pipelines.base import ImagePipeline

    runs, original = [], ImagePipeline.generate

    def recording(self, prompts, *args, **kwargs):
        out = original(self, prompts, *args, **kwargs)
        runs.append((kwargs.get("mode"), len(prompts), out.seconds, out.image_tokens))
        return out

    monkeypatch.setattr(ImagePipeline, "generate", recording)
    argv = ["demo", "--modes", "ar", "hawk", "--prompts", "the number 3", "handwritten 7", "--rounds", "3",
            "--nodes", "4", "--out", str(tmp_path / "sheet.png")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    timed = [run for run in runs if run[1] == 2]  # (the warm-up is one prompt)
    assert [mode for mode, *_ in timed] == ["ar", "hawk"] * 3
    for mode in ("ar", "hawk"):
        mine = [run for run in timed if run[0] == mode]
        assert all(torch.equal(run[3], mine[0][3]) for run in mine)
        (row,) = [line for line in printed.splitlines() if line.startswith(f"{mode} ")]
        assert float(row.split()[4]) == round(min(run[2] for run in mine), 2), (row, mine)
    assert "fastest of 3 runs" in printed


def test_cache_shows_what_auto_keeps_and_clears_it(tmp_path, capsys, monkeypatch):
    """`hawk cache` lists the step costs by machine and each measured acceptance with its images; --clear empties
    one table or both, so the next "auto" call measures again (a timing made beside another job is not kept)."""
    from hawk_kernels.acceptance import AcceptanceTable
    from hawk_kernels.step_costs import StepCostTable

    monkeypatch.setenv("HAWK_CACHE_DIR", str(tmp_path))
    StepCostTable().seconds("cuda:NVIDIA H200|torch 2.11.0+cu130|model|batch 1|sampling|form|ar", lambda: 0.008)
    StepCostTable().seconds("cuda:NVIDIA H200|torch 2.11.0+cu130|model|batch 1|sampling|form|hawk nodes 16",
                            lambda: 0.011)
    key = "chameleon|0123456789abcdef|jacobi|coupled verify|cfg 3.0, temperature 1.0, top-k 2000, top-p None|48x48"
    AcceptanceTable().add(key, torch.tensor([[10, 2]]), torch.tensor([[6, 1]]), images=2, probe=True)
    assert cli.main(["cache"]) == 0
    shown = capsys.readouterr().out
    assert f"{tmp_path / 'step_costs.json'}: 2 step costs" in shown
    assert "cuda:NVIDIA H200 | torch 2.11.0+cu130: 2" in shown
    assert ("chameleon 48x48, jacobi, coupled verify, cfg 3.0, temperature 1.0, top-k 2000, top-p None: 2 image(s) "
            "counted (2 by the probe)") in shown
    AcceptanceTable().change(lambda entries: entries.update({"a|b|c|d|e|f": {"images": "two"}}))  # hand-edited
    assert cli.main(["cache"]) == 0
    assert "a|b|c|d|e|f: not readable (measured again when used)" in capsys.readouterr().out
    assert cli.main(["cache", "--clear", "acceptance"]) == 0
    assert AcceptanceTable().merged() == {} and len(StepCostTable().merged()) == 2
    assert cli.main(["cache", "--clear"]) == 0
    assert StepCostTable().merged() == {} and "cleared" in capsys.readouterr().out
    assert cli.main(["cache", "--clear", "everything"]) == 2  # a bad choice: one line, exit code 2
    assert capsys.readouterr().err.startswith(ERROR_PREFIX)


def test_info_names_the_kernel_each_op_runs_and_why_a_faster_one_was_passed_over(capsys, monkeypatch):
    """`hawk info` (for bug reports and slow runs): versions, the compiled library, and per op and device the
    backend "auto" takes, with the reason a faster one was passed over."""
    assert cli.main(["info"]) == 0
    shown = capsys.readouterr().out
    assert f"torch {torch.__version__}" in shown and "_C " in shown and "kernels for CPU" in shown
    for op in ("accept_reject", "draft_heads", "philox_uniforms", "tree_mask"):
        assert f"  {op:<16} cpu   cpu\n" in shown, shown
    monkeypatch.setenv("HAWK_KERNELS_SKIP", "cpu")
    assert cli.main(["info"]) == 0
    assert "  tree_mask        cpu   reference (not cpu: skipped)" in capsys.readouterr().out


@pytest.mark.cuda
def test_info_on_cuda_names_the_cuda_kernels():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import subprocess
    shown = subprocess.run([sys.executable, "-m", "hawk_kernels", "info"], capture_output=True, text=True,
                           check=True).stdout
    assert "kernels for CPU, CUDA" in shown and "  accept_reject    cuda  cuda" in shown, shown
