"""Heads at scale for the model families (Janus, Emu3, Lumina-mGPT) on tiny checkpoints loaded as users load
them: `distill` reproduces the pipeline's own AR samples and resumes exactly, `distill_images` stores the VQ
encoder's tokens, and `hawk distill --model` -> `hawk train-heads --model --data` (with the built-in
calibration) -> `load_pipeline(heads=...)` decodes greedily exactly like AR with fewer passes."""
import json

import pytest
import torch

from hawk_kernels import cli
from hawk_kernels.training import distill, distill_images
from hawk_kernels.training.shards import load_manifest, read_shard
from hawk_kernels.drafts import MODES, needs_heads
from hawk_kernels.pipelines import load_pipeline
from tests.tiny_families import build_chameleon, build_emu3, build_janus

PROMPTS = ["a red cat", "dog on the grass", "a blue fox in the snow"]
SIZES = {"janus": None, "emu3": 32, "chameleon": 64}  # 4 x 4 codes each
BUILDERS = {"janus": build_janus, "emu3": build_emu3, "chameleon": build_chameleon}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return {name: build(tmp_path_factory.mktemp(name), dtype=torch.float32) for name, build in BUILDERS.items()}


def _shards(path):
    manifest = load_manifest(path)
    return [read_shard(path, b, manifest["sequence_length"]) for b in range(manifest["num_shards"])]


def _same(a, b):
    return len(a) == len(b) and all(set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_distill_is_the_pipelines_own_ar_sampling_and_resumes(family, model_dirs, tmp_path):
    pipe, size = load_pipeline(model_dirs[family]), SIZES[family]
    kw = dict(images_per_prompt=2, batch_size=4, seed=7, size=size, progress=False, mode="ar")
    manifest = distill(pipe, PROMPTS, tmp_path / "full", **kw)
    assert manifest["model"]["family"] == family and manifest["num_shards"] == 2
    assert manifest["settings"]["cfg_scale"] == pipe.defaults["cfg_scale"]  # the family's default sampling
    distill(pipe, PROMPTS, tmp_path / "resumed", max_shards=1, **kw)  # "killed" after one shard
    distill(pipe, PROMPTS, tmp_path / "resumed", **kw)
    shards = _shards(tmp_path / "full")
    assert _same(shards, _shards(tmp_path / "resumed"))
    grid, body_start = pipe.layout(size), manifest["body_start"]
    rows = pipe.prompt_rows(PROMPTS, None, grid).conditional
    for shard in shards:  # each shard = the pipeline's AR generation, item k (prompt p, sample i) with seed 7 + k
        prompts = [PROMPTS[p] for p in shard["prompt_index"].tolist()]
        items = zip(shard["prompt_index"].tolist(), shard["sample_index"].tolist())
        out = pipe.generate_tokens(prompts, mode="ar", size=size, seed=[7 + 2 * p + i for p, i in items])
        body = shard["sequences"][:, body_start:]
        assert torch.equal(body, grid.generated_tokens(out.image_tokens))
        for k, p in enumerate(shard["prompt_index"].tolist()):
            length = int(shard["prompt_length"][k])
            assert length == len(rows[p]) and shard["sequences"][k, body_start - length: body_start].tolist() == rows[p]


def test_ranks_union_equals_one_process(model_dirs, tmp_path):
    pipe = load_pipeline(model_dirs["janus"])
    kw = dict(images_per_prompt=1, batch_size=1, seed=3, progress=False)
    distill(pipe, PROMPTS, tmp_path / "one", **kw)
    for rank in (0, 1):
        distill(pipe, PROMPTS, tmp_path / "two", rank=rank, world_size=2, **kw)
    assert _same(_shards(tmp_path / "one"), _shards(tmp_path / "two"))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_cli_distill_train_calibrate_and_decode(family, model_dirs, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    size = [] if SIZES[family] is None else ["--size", str(SIZES[family])]
    data, heads = tmp_path / "data", tmp_path / "heads"
    assert cli.main(["distill", "--model", str(model_dirs[family]), "--prompts", str(prompts), "--images-per-prompt",
                     "8", "--batch-size", "8", *size, "--out", str(data)]) == 0
    assert cli.main(["train-heads", "--model", str(model_dirs[family]), "--data", str(data), "--out", str(heads),
                     "--horizontal", "2", "--vertical", "1", "--epochs", "3", "--batch-size", "8", "--lr", "3e-2",
                     "--calibrate-images", "2"]) == 0
    printed = capsys.readouterr().out
    assert "training 2 horizontal + 1 vertical heads on 24 sequences" in printed and "saved tree rates" in printed
    rates = json.loads((heads / "tree_rates.json").read_text())
    kept = rates["runs"]["hawk+jacobi"]["layout_check"]["kept_rates"]  # hawk+jacobi's rates only if its layout wins
    assert set(rates["rates"]) == {m for m in MODES if needs_heads(m) and (m != "hawk+jacobi" or kept)}
    pipe = load_pipeline(model_dirs[family], heads=heads)
    assert pipe.heads.config.family == family and pipe.accept_rates == rates["rates"]
    ar = pipe.generate_tokens(PROMPTS, mode="ar", size=SIZES[family], temperature=0)
    hawk = pipe.generate_tokens(PROMPTS, mode="hawk", size=SIZES[family], temperature=0, num_nodes=32)
    assert torch.equal(hawk.image_tokens, ar.image_tokens)
    assert hawk.total_forward_passes < ar.total_forward_passes


def test_data_of_another_model_or_layout_is_refused(model_dirs, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\n")
    data = tmp_path / "data"
    assert cli.main(["distill", "--model", str(model_dirs["emu3"]), "--prompts", str(prompts), "--size", "32",
                     "--images-per-prompt", "2", "--out", str(data)]) == 0
    capsys.readouterr()
    for model in (str(model_dirs["janus"]), None):
        where = ["--model", model] if model else ["--demo"]
        assert cli.main(["train-heads", *where, "--data", str(data), "--out", str(tmp_path / "h")]) == 2
        assert "--data: made with another model" in capsys.readouterr().err
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["grid"]["height"] = 5
    (data / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["train-heads", "--model", str(model_dirs["emu3"]), "--data", str(data), "--out",
                     str(tmp_path / "h")]) == 2
    assert "--data: layout 5x4" in capsys.readouterr().err
    assert cli.main(["distill", "--model", str(model_dirs["emu3"]), "--demo", "--prompts", str(prompts), "--out",
                     str(tmp_path / "x")]) == 2
    assert "give --demo (the bundled model) or --model DIR, one of them" in capsys.readouterr().err
    assert cli.main(["distill", "--model", str(tmp_path), "--prompts", str(prompts), "--out", str(tmp_path / "x")]) == 2
    assert "is not a model directory" in capsys.readouterr().err


def _image_dir(path, count, seed=0):
    """`count` random RGB images of mixed sizes (not the layout's), each with a caption file."""
    from PIL import Image

    path.mkdir()
    gen = torch.Generator().manual_seed(seed)
    for i in range(count):
        pixels = torch.randint(0, 256, (40 + 8 * i, 56, 3), generator=gen, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(path / f"img{i:02d}.png")
        (path / f"img{i:02d}.txt").write_text(PROMPTS[i % len(PROMPTS)] + "\n")
    return path


@pytest.mark.parametrize("family", list(BUILDERS))
def test_distill_images_stores_the_vq_encoders_tokens(family, model_dirs, tmp_path):
    from PIL import Image

    pipe, size = load_pipeline(model_dirs[family]), SIZES[family]
    images = _image_dir(tmp_path / "images", 5)
    manifest = distill_images(pipe, images, tmp_path / "full", batch_size=2, size=size, progress=False)
    assert manifest["settings"]["source"] == "images" and manifest["num_shards"] == 3
    distill_images(pipe, images, tmp_path / "resumed", batch_size=2, size=size, progress=False, max_shards=2)
    distill_images(pipe, images, tmp_path / "resumed", batch_size=2, size=size, progress=False)
    shards = _shards(tmp_path / "full")
    assert _same(shards, _shards(tmp_path / "resumed"))
    pictures = [Image.open(images / f"img{i:02d}.png") for i in range(5)]
    grid, body_start = pipe.layout(size), manifest["body_start"]
    bodies = torch.cat([s["sequences"][:, body_start:] for s in shards])
    assert torch.equal(bodies, grid.generated_tokens(pipe.encode_images(pictures, size=size)))
    rows = pipe.prompt_rows([PROMPTS[i % 3] for i in range(5)], None, grid).conditional
    lengths = torch.cat([s["prompt_length"] for s in shards]).tolist()
    assert lengths == [len(r) for r in rows]


def test_images_need_captions_and_train(model_dirs, tmp_path, capsys):
    images = _image_dir(tmp_path / "images", 8)
    data = tmp_path / "data"
    assert cli.main(["distill", "--model", str(model_dirs["janus"]), "--images", str(images), "--batch-size", "4",
                     "--out", str(data)]) == 0
    assert cli.main(["train-heads", "--model", str(model_dirs["janus"]), "--data", str(data), "--out",
                     str(tmp_path / "heads"), "--epochs", "1", "--batch-size", "4", "--calibrate-images", "0"]) == 0
    (images / "img03.txt").unlink()
    capsys.readouterr()
    assert cli.main(["distill", "--model", str(model_dirs["janus"]), "--images", str(images), "--out",
                     str(tmp_path / "x")]) == 2
    assert "img03.png needs img03.txt" in capsys.readouterr().err
    assert cli.main(["distill", "--model", str(model_dirs["janus"]), "--images", str(images), "--prompts",
                     str(images / "img00.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "--prompts FILE or --input-ids FILE (self-distillation), or --images DIR" in capsys.readouterr().err


@pytest.mark.parametrize("family", list(BUILDERS))
def test_token_id_prompts_give_the_samples_of_their_text(family, model_dirs, tmp_path):
    pipe, size = load_pipeline(model_dirs[family]), SIZES[family]
    rows = pipe.prompt_rows(PROMPTS, None, pipe.layout(size)).conditional
    kw = dict(images_per_prompt=2, batch_size=3, seed=2, size=size, progress=False)
    by_text = distill(pipe, PROMPTS, tmp_path / "text", **kw)
    by_ids = distill(pipe, rows, tmp_path / "ids", **kw)
    assert by_ids["settings"]["prompt_kind"] == "ids" and by_text["settings"]["prompt_kind"] == "text"
    assert _same(_shards(tmp_path / "text"), _shards(tmp_path / "ids"))


def test_cli_input_ids_distill_train_and_calibrate(model_dirs, tmp_path, capsys):
    pipe = load_pipeline(model_dirs["chameleon"])
    rows = pipe.prompt_rows(PROMPTS, None, pipe.layout(64)).conditional
    ids, data, heads = tmp_path / "ids.json", tmp_path / "data", tmp_path / "heads"
    ids.write_text(json.dumps(rows))
    model = str(model_dirs["chameleon"])
    assert cli.main(["distill", "--model", model, "--input-ids", str(ids), "--size", "64", "--images-per-prompt", "4",
                     "--out", str(data)]) == 0
    assert cli.main(["train-heads", "--model", model, "--data", str(data), "--out", str(heads), "--epochs", "1",
                     "--batch-size", "4", "--calibrate-images", "2"]) == 0
    assert (heads / "tree_rates.json").is_file()
    capsys.readouterr()
    ids.write_text('[[1, 2], "x"]')
    assert cli.main(["distill", "--model", model, "--input-ids", str(ids), "--out", str(tmp_path / "x")]) == 2
    assert "must hold a non-empty JSON list of non-empty lists of token ids" in capsys.readouterr().err
    assert cli.main(["distill", "--demo", "--input-ids", str(ids), "--out", str(tmp_path / "x")]) == 2  # same check
    assert "must hold a non-empty JSON list of non-empty lists of token ids" in capsys.readouterr().err
