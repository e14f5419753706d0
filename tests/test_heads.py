import copy
from functools import partial

import pytest
import torch

import hawk_kernels as hk
from tests.tiny_models import tiny_heads


def test_zero_init_heads_equal_lm_head():
    heads = hk.DraftHeads(16, 40, num_horizontal=2, vertical_depth=1)
    lm = torch.randn(40, 16)
    hidden = torch.randn(5, 16)
    logq = heads.inference_weights(torch.float32, lm).draft_logq(hidden, kernel=partial(hk.ops.draft_heads,
                                                                                          backend="reference"))
    assert logq.shape == (5, 3, 40)
    assert torch.allclose(logq, torch.log_softmax(hidden @ lm.T, -1)[:, None].expand(-1, 3, -1), atol=1e-5)
    assert heads.offsets(row_stride=7) == [1, 2, 7]


def test_forward_matches_fused_op():
    heads = tiny_heads(dtype=torch.float64, num_layers=2)
    lm = torch.randn(48, 32, dtype=torch.float64)
    hidden = torch.randn(6, 32, dtype=torch.float64)
    assert torch.allclose(torch.log_softmax(heads(hidden, lm), -1), heads.inference_weights(torch.float64, lm).draft_logq(hidden),
                          atol=1e-10)


@pytest.mark.parametrize("shared", [True, False])
def test_save_load_round_trip(tmp_path, shared):
    heads = tiny_heads(dtype=torch.float32, shared_lm_head=shared, image_token_range=(8, 48))
    heads.save_pretrained(tmp_path)
    loaded = hk.DraftHeads.from_pretrained(tmp_path)
    assert loaded.config == heads.config
    for name, tensor in heads.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_bad_heads():
    with pytest.raises(ValueError, match="image_token_range"):
        hk.DraftHeads(8, 10, image_token_range=(5, 20))
    with pytest.raises(ValueError, match="at least one head"):
        hk.DraftHeads(8, 10, num_horizontal=0, vertical_depth=0)
    with pytest.raises(ValueError, match="hidden"):
        hk.DraftHeads(8, 10)(torch.randn(2, 9), torch.randn(10, 8))
    with pytest.raises(FileNotFoundError, match="directory"):
        hk.DraftHeads.from_pretrained("/nonexistent")


def test_heads_record_their_model_and_refuse_another(tmp_path):
    from hawk_kernels.fingerprint import model_fingerprint
    from tests.tiny_models import tiny_backbone, tiny_grid

    model, other, grid = tiny_backbone(seed=0), tiny_backbone(seed=1), tiny_grid()
    fingerprint = model_fingerprint(model)
    assert fingerprint == model_fingerprint(tiny_backbone(seed=0).to(torch.bfloat16))  # dtype-independent
    assert fingerprint != model_fingerprint(other)
    heads = tiny_heads(model_fingerprint=fingerprint)
    heads.save_pretrained(tmp_path)
    loaded = hk.DraftHeads.from_pretrained(tmp_path, dtype=torch.float64)
    assert loaded.config.model_fingerprint == fingerprint
    hk.HawkDecoder(model, loaded, grid, mode="hawk")
    with pytest.raises(ValueError, match="heads: trained for the model with fingerprint"):
        hk.HawkDecoder(other, loaded, grid, mode="hawk")


def test_a_fingerprint_names_its_model_in_every_dtype_and_no_other():
    """The same weights in float32, float16, bfloat16 and float64 are one model; a hash of rounded values could not
    say so (float32 -> float16 -> bfloat16 is not float32 -> bfloat16 for some values: heads trained on a float32
    model were refused on it in float16). Another seed, or the same weights a little changed, are another model;
    heads that recorded the first format (16 hex digits) still load on their model."""
    from hawk_kernels.fingerprint import exact_digest, model_fingerprint, same_model
    from tests.tiny_models import tiny_backbone

    model = tiny_backbone(seed=0)
    with torch.no_grad():  # values at many scales, tiny ones included (float16 flushes them)
        for i, param in enumerate(model.parameters()):
            param.mul_(10.0 ** (i % 7 - 4))
    recorded = model_fingerprint(model)
    rounded = {dtype: copy.deepcopy(model).to(dtype) for dtype in (torch.float16, torch.bfloat16, torch.float64)}
    assert any(model_fingerprint(m) != recorded for m in rounded.values())  # the values do differ by rounding
    for dtype, other_dtype in rounded.items():
        assert same_model(recorded, other_dtype), dtype
        assert same_model(model_fingerprint(other_dtype), model), dtype
    assert not same_model(recorded, tiny_backbone(seed=1))
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).mul_(1.1)  # one tensor 10% off
    assert not same_model(recorded, changed)
    legacy = exact_digest(model)
    assert len(legacy) == 16 and same_model(legacy, model) and not same_model(legacy, tiny_backbone(seed=1))
    from tests.tiny_models import tiny_grid

    heads = tiny_heads(model_fingerprint=recorded)  # trained on the float32 model
    hk.HawkDecoder(rounded[torch.float16], heads.to(torch.float32), tiny_grid(), mode="hawk")  # its float16 copy


def test_loading_damaged_heads_names_the_problem(tmp_path):
    import json

    tiny_heads(dtype=torch.float32).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "draft_heads_config.json").read_text())
    (tmp_path / "draft_heads_config.json").write_text(json.dumps({**config, "colour": "red"}))
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        hk.DraftHeads.from_pretrained(tmp_path)
    (tmp_path / "draft_heads_config.json").write_text(json.dumps({**config, "num_horizontal": 4}))
    with pytest.raises(ValueError, match="do not match"):
        hk.DraftHeads.from_pretrained(tmp_path)
    (tmp_path / "draft_heads_config.json").write_text("{broken")
    with pytest.raises(ValueError, match="unreadable draft heads"):
        hk.DraftHeads.from_pretrained(tmp_path)
    (tmp_path / "draft_heads_config.json").write_text(json.dumps(config))
    (tmp_path / "draft_heads.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no draft_heads.safetensors"):
        hk.DraftHeads.from_pretrained(tmp_path)
    heads = tiny_heads(dtype=torch.float32)
    with torch.no_grad():
        heads.res_bias[0, 0, 0] = float("inf")
    heads.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="res_bias has NaN or infinite"):
        hk.DraftHeads.from_pretrained(tmp_path)
