import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.target import SamplingConfig, TargetProcessor, filter_logits


def test_lumina_presets():
    grid = hk.ImageGrid.lumina_mgpt(768)
    assert (grid.height, grid.width, grid.row_stride) == (48, 48, 49)
    assert grid.num_body_tokens == 48 * 49 and grid.local_vocab_size == 8193
    assert hk.ImageGrid.lumina_mgpt(512).row_stride == 33 and hk.ImageGrid.lumina_mgpt(1024).height == 64
    offsets = torch.arange(grid.num_body_tokens)
    assert int(grid.is_forced(offsets).sum()) == 48
    assert grid.local_vocab_ids()[[0, 8191, 8192]].tolist() == [4, 8195, 8803]


@pytest.mark.parametrize("kwargs, word", [
    (dict(height=0, width=4, image_token_range=(0, 8)), "height"),
    (dict(height=2, width=4, image_token_range=(8, 8)), "image_token_range"),
    (dict(height=2, width=4, image_token_range=(9, 3)), "image_token_range"),
    (dict(height=2, width=4, image_token_range=(0, 8), row_end_token=5), "row_end_token"),
])
def test_bad_grid(kwargs, word):
    with pytest.raises(ValueError, match=word):
        hk.ImageGrid(**kwargs)


def test_grid_must_fit_vocab():
    with pytest.raises(ValueError, match="vocab"):
        hk.ImageGrid(height=2, width=2, image_token_range=(0, 100)).check_vocab(50)


def test_filter_order_topk_topp_temperature():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    out = filter_logits(logits, SamplingConfig(temperature=2.0, top_k=3, top_p=0.7))
    assert torch.isinf(out[0, 2:]).all() and torch.allclose(out[0, :2], logits[0, :2] / 2)
    greedy = filter_logits(logits, SamplingConfig(temperature=0))
    assert torch.softmax(greedy, -1)[0].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_layout_forced_and_masked():
    grid = hk.ImageGrid(height=2, width=3, row_end_token=1, image_token_range=(4, 8))
    proc = TargetProcessor(grid, SamplingConfig(cfg_scale=2.0))
    cond, uncond = torch.randn(1, 4, 5), torch.randn(1, 4, 5)
    out = proc(torch.cat([cond, uncond]), torch.tensor([[0, 2, 3, 5]]))
    assert torch.isinf(out[0, [0, 1, 3], 4]).all()  # row-end masked at image offsets
    assert torch.allclose(out[0, 0, :4], (uncond + 2 * (cond - uncond))[0, 0, :4])
    assert torch.softmax(out[0, 2], -1)[4] == 1  # offset 3 is a row end: forced


def test_the_processor_keeps_its_numbers_on_the_logits_device():
    """A SamplingConfig's numbers become one-element tensors, which do not mix devices the way 0-d tensors do:
    they are made on the device given (benchmarks/sjd.py on a GPU); "meta" stands in for CUDA here."""
    grid = hk.ImageGrid(height=2, width=3, row_end_token=1, image_token_range=(4, 8))
    sampling = SamplingConfig(cfg_scale=2.0, temperature=0.7, top_k=3, top_p=0.9)
    logits, offsets = torch.randn(2, 4, 5, device="meta"), torch.zeros(1, 4, dtype=torch.int64, device="meta")
    assert TargetProcessor(grid, sampling, "meta")(logits, offsets).shape == (1, 4, 5)
    with pytest.raises(RuntimeError, match="device"):
        TargetProcessor(grid, sampling)(logits, offsets)  # numbers on the CPU, logits elsewhere


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        SamplingConfig(**kwargs)
