"""Checkpoints and heads named by a Hugging Face Hub repository id (hawk_kernels/hub.py). Nothing can be downloaded
here, so the Hub's cache is written by hand in its own layout (models--org--name/refs/main -> snapshots/<commit>),
as `huggingface-cli download` leaves it, and huggingface_hub runs offline: what a user with a populated cache (or
on a machine without a network, like the GPU hosts) gets. The Hub's refusals are raised by a stand-in for
snapshot_download, since they need the network to happen."""
from __future__ import annotations

import shutil

import pytest
import torch

from hawk_kernels import DraftHeads, cli, hub
from hawk_kernels.pipelines import load_pipeline
from hawk_kernels.pipelines.demo.pipeline import load_demo_pipeline
from tests.test_cli_input_errors import ERROR_PREFIX, FAST, _error
from tests.tiny_families import build_chameleon, build_janus

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hub cache under tmp_path; returns put(repo_id, directory) -> the snapshot it makes."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def put(repo_id: str, directory, commit: str = COMMIT, ref: str = "main"):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / commit
        shutil.copytree(directory, snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        return snapshot

    return put


@pytest.fixture(scope="module")
def janus_dir(tmp_path_factory):
    return build_janus(tmp_path_factory.mktemp("janus") / "janus")


def _tokens(pipe, **kwargs):
    return pipe.generate_tokens(["a red cat"], mode="ar", num_nodes=1, seed=3, **kwargs).image_tokens


def test_a_repository_id_loads_the_cached_snapshot_as_its_directory(hub_cache, janus_dir):
    snapshot = hub_cache("deepseek-community/Janus-Tiny", janus_dir)
    pipe = load_pipeline("deepseek-community/Janus-Tiny")
    assert pipe.model_dir == snapshot and pipe.family == "janus"
    assert torch.equal(_tokens(pipe), _tokens(load_pipeline(janus_dir)))


def test_a_revision_picks_the_snapshot_its_ref_names(hub_cache, janus_dir, tmp_path):
    hub_cache("org/janus", janus_dir)
    other = build_janus(tmp_path / "other", seed=1)
    snapshot = hub_cache("org/janus", other, commit="f" * 40, ref="v2")
    assert load_pipeline("org/janus", revision="v2").model_dir == snapshot
    assert load_pipeline("org/janus", revision="f" * 40).model_dir == snapshot  # a commit needs no ref


def test_what_is_not_there_is_named(hub_cache, janus_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model_dir: 'org/absent' is not a local directory, and as a Hugging "
                                                r"Face Hub repository id it is not in the local cache"):
        load_pipeline("org/absent")
    with pytest.raises(FileNotFoundError, match=r"model_dir: expected a directory holding config.json, or a Hugging "
                                                r"Face Hub repository id"):
        load_pipeline(tmp_path / "a" / "b" / "c")  # not shaped like a repository id: a local path, absent
    with pytest.raises(ValueError, match="revision: given, but model_dir .* is a local directory"):
        load_pipeline(janus_dir, revision="main")
    with pytest.raises(TypeError, match="revision: expected None or a branch, tag or commit"):
        load_pipeline("org/janus", revision=3)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("weights elsewhere")
    hub_cache("org/readme-only", empty)
    with pytest.raises(FileNotFoundError, match="model_dir: the Hub repository 'org/readme-only' has no config.json"):
        load_pipeline("org/readme-only")


@pytest.mark.parametrize("error, expected", [
    ("RepositoryNotFoundError", "model_dir: 'org/x' is not a local directory, and as a Hugging Face Hub repository id "
                                "it does not exist"),
    ("GatedRepoError", "it is gated: accept its terms on huggingface.co, then `huggingface-cli login`"),
    ("RevisionNotFoundError", "revision: 'v9' is not a branch, tag or commit of 'org/x'"),
    ("HfHubHTTPError", "the Hub refused it: 500 Server Error"),
])
def test_the_hubs_refusals_are_named(monkeypatch, error, expected):
    from types import SimpleNamespace

    import huggingface_hub
    from huggingface_hub import errors

    response = SimpleNamespace(headers={}, status_code=500, url="https://huggingface.co/api/models/org/x", request=None)

    def refuse(*args, **kwargs):
        raise getattr(errors, error)("500 Server Error: boom\nmore lines", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(ValueError) as caught:
        load_pipeline("org/x", revision="v9")
    assert expected in str(caught.value), caught.value


def test_only_the_files_a_pipeline_reads_are_fetched(monkeypatch, tmp_path):
    """A repository may hold the weights twice (safetensors and .bin) or training leftovers: the pipelines read
    safetensors, configs, tokenizers and the VQGAN checkpoint, and nothing else is downloaded."""
    import fnmatch

    import huggingface_hub

    seen = {}

    def record(repo_id, revision=None, allow_patterns=None, ignore_patterns=None, **kwargs):
        seen.update(repo_id=repo_id, revision=revision, allow=allow_patterns, ignore=ignore_patterns or [])
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", record)
    with pytest.raises(FileNotFoundError):
        load_pipeline("org/x", revision="main")
    assert seen["repo_id"] == "org/x" and seen["revision"] == "main"
    fetched = lambda name: (any(fnmatch.fnmatch(name, pattern) for pattern in seen["allow"])  # noqa: E731
                            and not any(fnmatch.fnmatch(name, pattern) for pattern in seen["ignore"]))
    for name in ("config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
                 "tokenizer.model", "vqgan.ckpt", "chat_template.jinja", "merges.txt", "draft_heads.safetensors"):
        assert fetched(name), name
    for name in ("pytorch_model-00001-of-00002.bin", "consolidated.pth", "model.msgpack", "c2i_XL_384.pt",
                 ".ipynb_checkpoints/config-checkpoint.json", ".gitattributes"):
        assert not fetched(name), name


@pytest.mark.parametrize("name, expected", [
    ("org/name", True), ("deepseek-community/Janus-Pro-7B", True), ("Alpha-VLLM/Lumina-mGPT-7B-768", True),
    ("ckpt", False), ("/abs/org/name", False), ("./org", False), ("a/b/c", False), ("org/../x", False),
    ("org--x/y", False), ("org/x.git", False), ("", False), (None, False),
])
def test_what_is_read_as_a_repository_id(name, expected):
    assert hub.is_repo_id(name) is expected


def test_heads_from_the_hub(hub_cache, janus_dir, tmp_path):
    pipe = load_pipeline(janus_dir)
    heads = pipe.make_heads(num_horizontal=2, vertical_depth=1)
    heads.save_pretrained(str(tmp_path / "heads"))
    hub_cache("me/janus-heads", tmp_path / "heads")
    loaded = load_pipeline(janus_dir, heads="me/janus-heads").heads
    assert torch.equal(loaded.state_dict()["res_weight"], heads.state_dict()["res_weight"])
    assert torch.equal(DraftHeads.from_pretrained("me/janus-heads").state_dict()["res_weight"],
                       heads.state_dict()["res_weight"])
    with pytest.raises(FileNotFoundError, match="heads: 'me/absent' is not a local directory"):
        load_pipeline(janus_dir, heads="me/absent")
    with pytest.raises(FileNotFoundError, match="heads: 'me/absent' is not a local directory"):
        load_demo_pipeline(heads="me/absent")


def test_lumina_takes_its_vqgan_from_a_path(tmp_path):
    """Lumina-mGPT's Hub repositories hold no VQGAN decoder (transformers has none): vqgan= gives Meta's file."""
    directory = build_chameleon(tmp_path / "lumina", vqgan=False)
    vqgan = tmp_path / "vqgan.ckpt"
    shutil.copy(build_chameleon(tmp_path / "with") / "vqgan.ckpt", vqgan)
    with pytest.warns(RuntimeWarning, match="vqgan=PATH"):
        assert not load_pipeline(directory).has_pixel_decoder
    pipe = load_pipeline(directory, vqgan=vqgan)
    assert pipe.has_pixel_decoder and pipe.vqgan_path == vqgan
    with pytest.raises(FileNotFoundError, match="vqgan: no such file"):
        load_pipeline(directory, vqgan=tmp_path / "none.ckpt")
    with pytest.raises(ValueError, match="vqgan: only Lumina-mGPT .chameleon. checkpoints take a VQGAN file; this is "
                                         "a janus checkpoint"):
        load_pipeline(build_janus(tmp_path / "janus"), vqgan=vqgan)


def test_hawk_generate_from_a_repository_id(hub_cache, janus_dir, tmp_path, capsys):
    hub_cache("deepseek-community/Janus-Tiny", janus_dir)
    out = tmp_path / "out"
    assert cli.main(["generate", "--model", "deepseek-community/Janus-Tiny", "--prompt", "a red cat", "--out",
                     str(out), *FAST]) == 0
    assert "loading deepseek-community/Janus-Tiny..." in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 1
    err = _error(capsys, ["generate", "--model", "org/absent", "--prompt", "a", "--out", tmp_path / "o2", *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--model: 'org/absent' is not a local directory, and as a Hugging Face "
                          f"Hub repository id it is not in the local cache"), err
    err = _error(capsys, ["generate", "--model", janus_dir, "--revision", "v2", "--prompt", "a", "--out",
                          tmp_path / "o3", *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--revision: with a Hub repository id as --model, not a local"), err
    err = _error(capsys, ["generate", "--demo", "--revision", "v2", "--prompt", "digit eight", "--out",
                          tmp_path / "o4", *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--revision: with --model, not --demo"), err
    err = _error(capsys, ["generate", "--model", janus_dir, "--vqgan", tmp_path / "none.ckpt", "--prompt", "a",
                          "--out", tmp_path / "o5", *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--vqgan: no such file"), err
    err = _error(capsys, ["generate", "--model", "a/b/c", "--prompt", "a", "--out", tmp_path / "o6", *FAST])
    assert "is not a model directory (no config.json) nor a Hugging Face Hub repository id" in err, err


def test_a_resume_on_another_checkpoint_or_dtype_is_refused(hub_cache, janus_dir, tmp_path, capsys):
    """The manifest records the model's fingerprint and dtype: a Hub repository updated since the first run (or
    another --model, or --dtype) would otherwise have its images counted as the first checkpoint's."""
    import json

    hub_cache("org/janus", janus_dir)
    out = tmp_path / "out"
    run = ["generate", "--prompt", "a red cat", "--out", out, *FAST]
    assert cli.main(["generate", "--model", "org/janus", *[str(a) for a in run[1:]]]) == 0
    row = json.loads((out / "manifest.jsonl").read_text())
    assert len(row["model"]) == 16 and row["dtype"] == "float64"
    err = _error(capsys, ["generate", "--model", build_janus(tmp_path / "other", seed=1), *run[1:]])
    assert f"already holds image 0 ({row['png']}) made with model {row['model']!r}, not " in err, err
    err = _error(capsys, ["generate", "--model", "org/janus", *run[1:], "--dtype", "float32"])
    assert "made with dtype 'float64', not 'float32'" in err, err
    assert cli.main(["generate", "--model", "org/janus", *[str(a) for a in run[1:]]]) == 0  # the same: a resume
    assert "made 0" in capsys.readouterr().out


def test_layouts_transformers_does_not_read_say_what_to_load(hub_cache, janus_dir, tmp_path):
    """DeepSeek's Janus-Pro and BAAI's Emu3 repositories are in their own layouts (.bin weights, custom code): the
    refusal says what loads instead; a repository with .bin weights only says that only safetensors are fetched."""
    import json

    for model_type, hint in (("multi_modality", "convert_janus_weights_to_hf.py"), ("Emu3", "BAAI/Emu3-Gen-hf")):
        original = tmp_path / model_type
        original.mkdir()
        (original / "config.json").write_text(json.dumps({"model_type": model_type}))
        hub_cache(f"org/{model_type.lower()}", original)
        with pytest.raises(ValueError, match=f"model_type='{model_type}'; supported: .*{hint}"):
            load_pipeline(f"org/{model_type.lower()}")
    bin_only = tmp_path / "bin-only"
    shutil.copytree(janus_dir, bin_only, ignore=shutil.ignore_patterns("*.safetensors*"))
    hub_cache("org/bin-only", bin_only)
    with pytest.raises(FileNotFoundError, match="no model weights in .*fetched with its safetensors weights only"):
        load_pipeline("org/bin-only")
    with pytest.raises(FileNotFoundError, match=r"no model weights in [^(]*\(expected one of [^)]*\)$"):
        load_pipeline(bin_only)  # a local directory: no word of the Hub


def test_a_lumina_checkpoint_without_a_tokenizer_takes_one_from_elsewhere(hub_cache, tmp_path, capsys):
    """Alpha-VLLM's Lumina-mGPT-7B-512 and -1024 repositories hold config, generation config and safetensors only:
    upstream reads the -768 repository's tokenizer. tokenizer= (and --tokenizer) gives it; without it a text prompt
    is refused saying so."""
    full = build_chameleon(tmp_path / "full")
    bare = tmp_path / "bare"
    shutil.copytree(full, bare, ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json"))
    hub_cache("Alpha-VLLM/Lumina-mGPT-7B-768", full)
    pipe = load_pipeline(bare)
    with pytest.raises(ValueError, match=r"prompts: text prompts need .*Lumina-mGPT-7B-512 and -1024 ship no tokenizer: "
                                         r"upstream reads Alpha-VLLM/Lumina-mGPT-7B-768's"):
        _tokens(pipe, size=64)
    with_tokenizer = load_pipeline(bare, tokenizer="Alpha-VLLM/Lumina-mGPT-7B-768")
    assert torch.equal(_tokens(with_tokenizer, size=64), _tokens(load_pipeline(full), size=64))
    with pytest.raises(FileNotFoundError, match=r"tokenizer: expected a directory holding tokenizer.json or "
                                                r"tokenizer.model"):
        load_pipeline(bare, tokenizer=tmp_path)
    err = _error(capsys, ["generate", "--model", bare, "--tokenizer", "Alpha-VLLM/absent", "--prompt", "a", "--out",
                          tmp_path / "o", *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--tokenizer: 'Alpha-VLLM/absent' is not a local directory"), err


def test_lumina_takes_the_size_its_checkpoint_is_named_for(hub_cache, tmp_path):
    """Upstream's inference asks for a target size "consistent with the checkpoint"; Alpha-VLLM names each one by
    its size. Loaded by that name (a Hub id, or a directory so named) the default size is the checkpoint's."""
    from tests.real_shapes import build

    directory = build("chameleon", tmp_path / "lumina", vq="reduced", save_weights=True).directory
    assert load_pipeline(directory, dtype="float32").layout(None).height == 48  # 768 px: 48 rows of codes
    hub_cache("Alpha-VLLM/Lumina-mGPT-7B-512", directory)
    pipe = load_pipeline("Alpha-VLLM/Lumina-mGPT-7B-512", dtype="float32")
    assert pipe.defaults["size"] == 512 and pipe.layout(None).height == 32 and pipe.layout(1024).height == 64
    renamed = tmp_path / "Lumina-mGPT-7B-1024"
    shutil.copytree(directory, renamed)
    assert load_pipeline(renamed, dtype="float32").layout(None).height == 64
