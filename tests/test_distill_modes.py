"""hawk distill --mode (issue 21): every exact mode samples, jacobi by default, the manifest records the mode."""
import pytest

import hawk_kernels as hk
from hawk_kernels import cli
from hawk_kernels.training import distill
from hawk_kernels.training.shards import load_manifest


@pytest.fixture(scope="module")
def pipe():
    return hk.load_demo_pipeline(device="cpu")


def test_mode_is_recorded_and_heads_are_needed(pipe, tmp_path):
    kw = dict(batch_size=1, seed=3, cfg_scale=1.0, progress=False)
    assert distill(pipe, ["digit eight"], tmp_path / "d", **kw)["settings"]["mode"] == "jacobi"
    assert load_manifest(tmp_path / "d")["settings"]["mode"] == "jacobi"
    assert distill(pipe, ["digit eight"], tmp_path / "h", mode="hawk", **kw)["settings"]["mode"] == "hawk"
    bare = hk.load_demo_pipeline(device="cpu", heads=pipe.make_heads())
    bare.heads = None
    with pytest.raises(ValueError, match="needs draft heads"):
        distill(bare, ["digit eight"], tmp_path / "x", mode="medusa", **kw)
    with pytest.raises(ValueError, match="mode"):
        distill(pipe, ["digit eight"], tmp_path / "y", mode="fast", **kw)


def test_cli_distill_mode(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("digit eight\n")
    assert cli.main(["distill", "--demo", "--prompts", str(prompts), "--out", str(tmp_path / "d"), "--mode", "ar",
                     "--batch-size", "1", "--cfg", "1"]) == 0
    assert load_manifest(tmp_path / "d")["settings"]["mode"] == "ar"
    assert cli.main(["distill", "--demo", "--prompts", str(prompts), "--out", str(tmp_path / "e"),
                     "--mode", "turbo"]) == 2


def test_the_tree_size_is_chosen_once_and_recorded(pipe, tmp_path, monkeypatch):
    """num_nodes="auto" is timing-dependent, and a sample depends on its tree: the size is chosen once, recorded in
    the manifest, and a resumed run (or a torchrun rank > 0) takes the recorded size, whatever it would choose
    now. Every shard, the last partial one included, is decoded with it."""
    from hawk_kernels import tree_size
    from hawk_kernels.training import distillation

    choices, used = iter([8, 4]), []
    monkeypatch.setattr(tree_size, "pipeline_num_nodes", lambda *a, **k: tree_size.SizeChoice(next(choices), {}))
    original = pipe._decoder_of_size  # the decoder each stream of shards runs (pipelines/continuous.py)
    monkeypatch.setattr(pipe, "_decoder_of_size", lambda mode, grid, n: used.append(n) or original(mode, grid, n))
    kw = dict(images_per_prompt=3, batch_size=2, seed=3, cfg_scale=1.0, progress=False)
    first = distill(pipe, ["digit eight"], tmp_path / "d", max_shards=1, **kw)
    assert first["settings"]["num_nodes"] == 8
    resumed = distill(pipe, ["digit eight"], tmp_path / "d", **kw)  # "auto" would now choose 4
    assert resumed["settings"]["num_nodes"] == 8 and used == [8, 8]
    assert load_manifest(tmp_path / "d")["settings"]["num_nodes"] == 8
    assert distill(pipe, ["digit eight"], tmp_path / "d", rank=1, world_size=2, **kw)["settings"]["num_nodes"] == 8
    with pytest.raises(ValueError, match="other settings"):  # an explicit other size is other samples
        distill(pipe, ["digit eight"], tmp_path / "d", num_nodes=16, **kw)
    assert distill(pipe, ["digit eight"], tmp_path / "a", mode="ar", **kw)["settings"]["num_nodes"] == 1
    monkeypatch.setattr(distillation, "RANK0_WAIT_S", 0.0)
    with pytest.raises(TimeoutError, match="rank 1 waited 0 s for rank 0"):
        distill(pipe, ["digit nine"], tmp_path / "w", rank=1, world_size=2, **kw)
