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
