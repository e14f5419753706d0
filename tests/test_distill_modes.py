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
