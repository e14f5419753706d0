"""The docs stay true: the real-model guide's commands run as written (on a tiny Lumina-mGPT-shaped checkpoint, and its
LlamaGen section's on a tiny LlamaGen release), every `hawk` command in a fenced block parses, and every
`python <script>.py --flag` the docs name exists with that flag. (The README's test command is CI's own: .ci/run
runs it verbatim.)"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from hawk_kernels import cli
from tests.tiny_families import build_chameleon

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted({ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.md")})
GUIDE = ROOT / "docs" / "real_models.md"
# what the tiny checkpoint needs beyond the guide's words: its image size (the guide's model has a 768 px default
# that the tiny one's positions do not hold), heads that fit its 4 x 4 codes and a short training (the guide trains
# 4 epochs and calibrates on 40 images)
TINY = {"generate": ["--size", "64", "--threads", "1"], "distill": ["--size", "64", "--threads", "1"],
        "train-heads": ["--epochs", "1", "--calibrate-images", "2", "--horizontal", "2", "--vertical", "1"]}


def fenced_blocks(path: Path, language: str = "bash") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def commands(block: str) -> list[list[str]]:
    """The block's command lines as argv lists: continuations joined, comments and blank lines dropped."""
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def hawk_argv(argv: list[str]) -> list[str] | None:
    """`hawk ARGS` or `torchrun ... -m hawk_kernels ARGS` -> ARGS; None for other commands."""
    if argv[:1] == ["hawk"]:
        return argv[1:]
    if argv[:1] == ["torchrun"] and "hawk_kernels" in argv:
        return argv[argv.index("hawk_kernels") + 1:]
    return None


def test_the_guide_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/real_models.md, "From download to PNG to trained heads": each `hawk` line, its checkpoint path the
    tiny one's (step 1, the download, is the build here), ends with PNGs from AR, Jacobi and trained heads."""
    block = next(b for b in fenced_blocks(GUIDE) if "hawk train-heads" in b)
    model = build_chameleon(tmp_path / "ckpt" / "lumina", dtype=torch.float32)
    assert (model / "vqgan.ckpt").is_file()  # the guide's `cp .../vqgan.ckpt ckpt/lumina/vqgan.ckpt`
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.txt").write_text("a red cat\ndog on the grass\n")
    ran = []
    for argv in commands(block):
        args = hawk_argv(argv)
        if args is None:  # the download and the copy
            assert argv[0] in ("huggingface-cli", "cp"), argv
            continue
        assert cli.main(args + TINY[args[0]]) == 0, args
        ran.append(args[0])
    assert ran == ["generate", "generate", "distill", "train-heads", "generate"]
    for out, count in (("out/ar", 2), ("out/jacobi", 1), ("out/hawk", 1)):
        assert len(list((tmp_path / out).glob("*.png"))) == count, out
    assert (tmp_path / "heads" / "lumina" / "tree_rates.json").is_file()
    capsys.readouterr()


# the tiny LlamaGen release beside the guide's XL model: its GPT is of its own size (--n-head), 8 px, 10 classes
LLAMAGEN_TINY = {"convert-llamagen": ["--image-size", "8", "--n-head", "4"], "generate": ["--threads", "1"],
                 "distill": ["--threads", "1"], "train-heads": TINY["train-heads"]}


def test_the_llamagen_section_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/real_models.md, "LlamaGen": the download is the tiny release under the downloaded names, then each
    `hawk` line runs as written, from conversion to PNGs from AR and from trained heads."""
    from tests.tiny_llamagen import build_llamagen_release

    block = next(b for b in fenced_blocks(GUIDE) if "hawk convert-llamagen" in b and "--t5" not in b)
    release = build_llamagen_release(tmp_path / "release")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labels.txt").write_text("3\n7\n")  # the tiny model's classes are 0..9
    ran = []
    for argv in commands(block):
        args = hawk_argv(argv)
        if args is None:
            assert argv[:2] == ["huggingface-cli", "download"] and argv[2] == "FoundationVision/LlamaGen", argv
            local = tmp_path / argv[argv.index("--local-dir") + 1]
            local.mkdir(parents=True)
            for file, name in zip(release, argv[3:5]):
                file.rename(local / name)
            continue
        assert cli.main(args + LLAMAGEN_TINY[args[0]]) == 0, args
        ran.append(args[0])
    assert ran == ["convert-llamagen", "generate", "distill", "train-heads", "generate"]
    assert len(list((tmp_path / "out" / "llamagen-ar").glob("*.png"))) == 2
    assert len(list((tmp_path / "out" / "llamagen-hawk").glob("*.png"))) == 2
    capsys.readouterr()


def test_the_llamagen_t2i_commands_run_as_written(tmp_path, monkeypatch, capsys):
    """docs/real_models.md, "Text-to-image (t2i)": the downloads are the tiny t2i release (GPT, VQ) and the tiny
    T5 under the downloaded names, then each `hawk` line runs as written, --t5 and text prompts included."""
    from tests.tiny_llamagen import build_t5, reference_t2i_gpt, reference_vq

    block = next(b for b in fenced_blocks(GUIDE) if "hawk convert-llamagen" in b and "--t5" in b)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.txt").write_text("a red cat\ndog on the grass\n")  # words the tiny T5 knows
    ran, downloads = [], []
    for argv in commands(block):
        args = hawk_argv(argv)
        if args is None:
            assert argv[:2] == ["huggingface-cli", "download"], argv
            local = tmp_path / argv[argv.index("--local-dir") + 1]
            downloads.append(argv[2])
            if argv[2] == "google/flan-t5-xl":
                build_t5(local)
                continue
            assert argv[2] == "peizesun/llamagen_t2i", argv
            local.mkdir(parents=True)
            torch.save({"model": reference_t2i_gpt(0).state_dict()}, local / argv[3])
            torch.save({"model": reference_vq(1).state_dict()}, local / argv[4])
            continue
        assert cli.main(args + LLAMAGEN_TINY[args[0]]) == 0, args
        ran.append(args[0])
    assert downloads == ["peizesun/llamagen_t2i", "google/flan-t5-xl"]
    assert ran == ["convert-llamagen", "generate", "distill", "train-heads", "generate"]
    for out in ("out/llamagen-t2i-ar", "out/llamagen-t2i-hawk"):
        assert len(list((tmp_path / out).glob("*.png"))) == 2, out
    capsys.readouterr()


def test_every_documented_hawk_command_parses():
    """Every `hawk` line of a fenced bash block (synopses with [optional] or (a | b) parts aside) is accepted by the
    CLI's parser: a renamed or removed flag fails here, not for a user."""
    parser, checked = cli.build_parser(), 0
    for path in DOCS:
        for block in fenced_blocks(path):
            for argv in commands(block):
                args = hawk_argv(argv)
                if args is None or any(ch in " ".join(args) for ch in "[("):
                    continue
                try:
                    parser.parse_args(args)
                except SystemExit:
                    pytest.fail(f"{path.relative_to(ROOT)}: `hawk {' '.join(args)}` does not parse")
                checked += 1
    assert checked >= 6


SCRIPT = re.compile(r"python3? ((?:benchmarks|python|scripts|tests)/[\w/]+\.py)([^`\n|;]*)")


def test_documented_scripts_exist_with_their_flags():
    """`python <script>.py --flag ...` anywhere in the README, docs/ or benchmarks/*.md (prose and blocks): the
    script exists and defines each flag named."""
    checked = 0
    for path in DOCS:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for match in SCRIPT.finditer(text):
            script, rest = ROOT / match.group(1), match.group(2)
            assert script.is_file(), f"{path.relative_to(ROOT)} names {match.group(1)}, which does not exist"
            source = script.read_text()
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                assert f'"{flag}"' in source or f"'{flag}'" in source, \
                    f"{path.relative_to(ROOT)}: {match.group(1)} has no {flag} ({match.group(0).strip()})"
            checked += 1
    assert checked >= 20
