"""Per-image seeds (issue 21): image i of a batch depends on its own seed alone (seed + i, or the seed given for
it), not on its row or the batch: decoding it alone with that seed gives the same image (the tiny model runs in
float64, so batched matmul rounding cannot flip a draw)."""
import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.drafts import needs_heads
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPTS = torch.tensor([[1, 5, 6, 4], [2, 7, 9, 4], [1, 1, 3, 4]])


@pytest.mark.parametrize("mode", ["ar", "hawk", "jacobi", "hawk+jacobi"])
def test_an_image_depends_on_its_own_seed_alone(mode):
    model, grid = tiny_backbone(), tiny_grid()
    dec = hk.HawkDecoder(model, tiny_heads() if needs_heads(mode) else None, grid, mode=mode, num_nodes=8)
    kw = dict(cfg_scale=2.0, temperature=1.0, top_k=20)
    batch = dec.generate(PROMPTS, seed=7, **kw)
    for i in range(PROMPTS.shape[0]):
        alone = dec.generate(PROMPTS[i:i + 1], seed=7 + i, **kw)
        assert torch.equal(alone.image_tokens[0], batch.image_tokens[i]), (mode, i)
    shuffled = dec.generate(PROMPTS[[2, 0, 1]], seed=[9, 7, 8], **kw)  # other rows, the same seeds per image
    assert torch.equal(shuffled.image_tokens, batch.image_tokens[[2, 0, 1]])
    other = dec.generate(PROMPTS, seed=8, **kw)
    assert not torch.equal(other.image_tokens, batch.image_tokens)


def test_seed_arguments():
    dec = hk.HawkDecoder(tiny_backbone(), None, tiny_grid(), mode="ar")
    with pytest.raises(ValueError, match=r"seed: expected one seed per image \(3\), got 2"):
        dec.generate(PROMPTS, seed=[1, 2])
    with pytest.raises(ValueError, match=r"seed\[1\]"):
        dec.generate(PROMPTS, seed=[1, -2, 3])
    near_end = dec.generate(PROMPTS[:2], seed=2**64 - 1, temperature=1.0)  # seed + i wraps modulo 2**64
    assert torch.equal(near_end.image_tokens[1], dec.generate(PROMPTS[1:2], seed=0, temperature=1.0).image_tokens[0])
