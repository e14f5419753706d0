"""hawk distill: self-distilled shards that resume exactly and split across processes exactly."""
import json
import os
import subprocess
import sys

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels import cli
from hawk_kernels.training import distill
from hawk_kernels.training.shards import load_manifest, read_shard, shard_path

PROMPTS = ["a handwritten digit seven", "the number 3", "digit eight"]
KW = dict(images_per_prompt=2, batch_size=2, seed=5, progress=False)


@pytest.fixture(scope="module")
def pipe():
    return hk.load_demo_pipeline(device="cpu")


def _shards(path):
    manifest = load_manifest(path)
    return [read_shard(path, b, manifest["sequence_length"]) for b in range(manifest["num_shards"])]


def _same(a, b):
    return len(a) == len(b) and all(set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def test_killed_and_resumed_equals_uninterrupted(pipe, tmp_path):
    full = distill(pipe, PROMPTS, tmp_path / "full", **KW)
    assert full["num_shards"] == 3 and full["body_start"] == 6
    distill(pipe, PROMPTS, tmp_path / "resumed", max_shards=1, **KW)  # "killed" after one shard
    with pytest.raises(ValueError, match="2 of 3 shards are missing"):
        load_manifest(tmp_path / "resumed")
    distill(pipe, PROMPTS, tmp_path / "resumed", **KW)
    shards = _shards(tmp_path / "full")
    assert _same(shards, _shards(tmp_path / "resumed"))
    items = torch.stack([torch.cat([s["prompt_index"], s["sample_index"]]) for s in shards[:1]])
    assert items.tolist() == [[0, 0, 0, 1]]  # shard 0: prompt 0, samples 0 and 1
    seq = shards[0]["sequences"]
    assert seq.shape == (2, full["sequence_length"]) and not torch.equal(seq[0], seq[1])  # two samples differ
    assert (seq[:, full["body_start"]:] >= 0).all()


def test_every_sample_has_its_own_seed(pipe, tmp_path):
    """Samples of one prompt spread over shards never share an image seed (item k: seed + k), so none repeats."""
    distill(pipe, PROMPTS[:1], tmp_path / "d", images_per_prompt=4, batch_size=2, seed=5, progress=False)
    bodies = torch.cat([s["sequences"] for s in _shards(tmp_path / "d")])
    assert len({tuple(row.tolist()) for row in bodies}) == 4


def test_ranks_union_equals_one_process(pipe, tmp_path):
    distill(pipe, PROMPTS, tmp_path / "one", **KW)
    for rank in (0, 1):
        distill(pipe, PROMPTS, tmp_path / "two", rank=rank, world_size=2, **KW)
    assert _same(_shards(tmp_path / "one"), _shards(tmp_path / "two"))


def test_settings_mismatch_and_damaged_data(pipe, tmp_path):
    distill(pipe, PROMPTS[:1], tmp_path / "d", images_per_prompt=1, batch_size=1, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        distill(pipe, PROMPTS[:1], tmp_path / "d", images_per_prompt=1, batch_size=1, seed=9, progress=False)
    with pytest.raises(ValueError, match="overwrite: not under torchrun"):
        distill(pipe, PROMPTS[:1], tmp_path / "d", overwrite=True, rank=0, world_size=2, progress=False)
    shard_path(tmp_path / "d", 0).write_bytes(b"not a shard")
    with pytest.raises(ValueError, match="unreadable"):
        _shards(tmp_path / "d")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        distill(pipe, PROMPTS[:1], tmp_path / "other", progress=False)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_manifest(tmp_path / "other")


def test_token_id_prompts_give_the_samples_of_their_text(pipe, tmp_path):
    """The demo takes input_ids as every pipeline does (its vocabulary's ids)."""
    rows = pipe.prompt_rows(PROMPTS[:2], None, pipe.layout(None)).conditional
    kw = dict(images_per_prompt=1, batch_size=2, seed=1, progress=False)
    by_text, by_ids = distill(pipe, PROMPTS[:2], tmp_path / "text", **kw), distill(pipe, rows, tmp_path / "ids", **kw)
    assert (by_text["settings"]["prompt_kind"], by_ids["settings"]["prompt_kind"]) == ("text", "ids")
    assert _same(_shards(tmp_path / "text"), _shards(tmp_path / "ids"))


def test_cli_distill(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# digits\na handwritten digit seven\n\nthe number 3\n")
    assert cli.main(["distill", "--demo", "--prompts", str(prompts), "--out", str(tmp_path / "data")]) == 0
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["settings"]["num_prompts"] == 2 and manifest["model"]["family"] == "demo"
    bad = tmp_path / "bad.txt"
    bad.write_text("a handwritten giraffe\n")
    capsys.readouterr()
    assert cli.main(["distill", "--demo", "--prompts", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "unknown prompt word" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    args = ["--demo", "--prompts", str(prompts), "--images-per-prompt", "2", "--batch-size", "2", "--seed", "5"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "hawk_kernels",
                    "distill", *args, "--out", str(tmp_path / "two")], check=True, env=env, capture_output=True)
    subprocess.run([sys.executable, "-m", "hawk_kernels", "distill", *args, "--out", str(tmp_path / "one")],
                   check=True, env=env, capture_output=True)
    assert _same(_shards(tmp_path / "one"), _shards(tmp_path / "two"))
