"""End-to-end exactness of HawkDecoder (docs/method.md §5) on tiny random backbones of the real architectures."""
import itertools

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.target import SamplingConfig, TargetProcessor
from tests.test_verify import _chi2_pvalue
from tests.tiny_models import VOCAB, tiny_backbone, tiny_grid, tiny_heads

PROMPT = torch.tensor([[1, 5, 6, 4]])


@pytest.mark.parametrize("kind", ["llama", "chameleon", "emu3", "janus"])
def test_greedy_hawk_equals_greedy_ar(kind):
    model = tiny_backbone(kind)
    grid = tiny_grid(row_end=kind != "janus")
    heads = tiny_heads()
    ar = hk.HawkDecoder(model, heads, grid, mode="ar").generate(PROMPT, temperature=0)
    assert ar.num_forward_passes == grid.num_body_tokens - 1
    for mode in ("medusa", "vertical", "hawk"):
        out = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=16).generate(PROMPT, temperature=0)
        assert torch.equal(out.sequences, ar.sequences), mode
        assert out.num_forward_passes <= ar.num_forward_passes


def test_cfg_greedy_and_batch_rows_are_independent():
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    prompts = torch.tensor([[1, 5, 6, 4], [0, 1, 7, 4]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    kw = dict(cfg_scale=2.5, temperature=0, attention_mask=mask)
    both = hk.HawkDecoder(model, heads, grid, mode="hawk").generate(prompts, **kw)
    ar = hk.HawkDecoder(model, heads, grid, mode="ar").generate(prompts, **kw)
    assert torch.equal(both.sequences, ar.sequences)
    single = hk.HawkDecoder(model, heads, grid, mode="ar").generate(prompts[1:, 1:], cfg_scale=2.5, temperature=0)
    assert torch.equal(single.generated[0], ar.generated[1])
    assert both.image_tokens.shape == (2, grid.height, grid.width)
    assert bool(((both.image_tokens >= 8) & (both.image_tokens < VOCAB)).all())


@pytest.mark.parametrize("mode", ["ar", "hawk+jacobi"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_unconditional_prompts_of_several_lengths_share_a_batch(mode, temperature):
    """negative_attention_mask: each row's unconditional prompt left-padded to the batch's longest, decoded as
    that row's image alone with its own unpadded unconditional prompt (float64: rounding cannot flip a draw)."""
    dec = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode=mode, num_nodes=8)
    prompts, mask = torch.tensor([[1, 5, 6, 4], [0, 1, 7, 4]]), torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    negatives = [torch.tensor([3, 2, 9, 4]), torch.tensor([4])]
    padded = torch.tensor([[3, 2, 9, 4], [0, 0, 0, 4]])
    kw = dict(cfg_scale=2.5, temperature=temperature, top_k=20)
    both = dec.generate(prompts, padded, seed=[5, 6], attention_mask=mask, **kw,
                        negative_attention_mask=torch.tensor([[1, 1, 1, 1], [0, 0, 0, 1]]))
    for row, (prompt, valid, negative) in enumerate(zip(prompts, mask, negatives)):
        alone = dec.generate(prompt[valid.bool()][None], negative[None], seed=5 + row, **kw)
        assert torch.equal(both.generated[row], alone.generated[0]), row
    unmasked = dec.generate(prompts, padded, seed=[5, 6], attention_mask=mask, **kw)  # the pads read as text
    assert not torch.equal(unmasked.generated[1], both.generated[1])


def test_fixed_seed_reproducible():
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    dec = hk.HawkDecoder(model, heads, grid, mode="hawk")
    one, two = dec.generate(PROMPT, seed=3, top_k=20), dec.generate(PROMPT, seed=3, top_k=20)
    assert torch.equal(one.sequences, two.sequences) and one.accepted_lengths == two.accepted_lengths
    assert sum(one.accepted_by_source.values()) == sum(map(sum, one.accepted_lengths)) - one.num_forward_passes


def _exact_image_law(model, grid, sampling):
    """Exact AR law of every image on a tiny grid, by forwarding all sequences."""
    codes = range(grid.num_image_codes)
    images = list(itertools.product(codes, repeat=grid.height * grid.width))
    body = torch.tensor([[grid.image_token_range[0] + c for c in img] for img in images])
    body = body.view(-1, grid.height, grid.width)
    row_end = torch.full((len(images), grid.height, 1), grid.row_end_token)
    body = torch.cat([body, row_end], -1).view(len(images), -1)
    seq = torch.cat([PROMPT.expand(len(images), -1), body], 1)
    proc = TargetProcessor(grid, sampling)
    with torch.no_grad():
        hidden = model.get_decoder()(input_ids=seq).last_hidden_state[:, PROMPT.shape[1] - 1: -1]
        if sampling.uses_cfg:
            neg = torch.cat([PROMPT[:, -1:].expand(len(images), -1), body], 1)
            hidden_u = model.get_decoder()(input_ids=neg).last_hidden_state[:, :-1]
            hidden = torch.cat([hidden, hidden_u])
        rows = model.get_output_embeddings().weight[grid.local_vocab_ids()]
        logp = torch.log_softmax(proc(hidden @ rows.T, torch.arange(body.shape[1])[None]), -1)
    local = torch.where(body == grid.row_end_token, grid.row_end_local, body - grid.image_token_range[0])
    return logp.gather(-1, local[..., None])[..., 0].sum(-1).exp(), images


@pytest.mark.parametrize("mode, sampling, verify", [
    ("hawk", SamplingConfig(), "rejection"),
    ("hawk", SamplingConfig(cfg_scale=2.0, temperature=0.8, top_k=2), "rejection"),
    ("hawk", SamplingConfig(cfg_scale=2.0, temperature=0.8, top_k=2), "coupled"),
    ("ar", SamplingConfig(), "coupled"),
])
def test_sampled_images_follow_the_exact_ar_law(mode, sampling, verify):
    model = tiny_backbone()
    grid = hk.ImageGrid(height=2, width=2, row_end_token=3, image_token_range=(45, 48))  # 3 codes, 81 images
    heads = tiny_heads(num_horizontal=3, vertical_depth=1)
    probs, images = _exact_image_law(model, grid, sampling)
    assert abs(float(probs.sum()) - 1) < 1e-9
    dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=12, horizontal_candidates=2, verify=verify)
    index = {img: i for i, img in enumerate(images)}
    counts = torch.zeros(len(images), dtype=torch.int64)
    batch = 400
    for seed in range(5):
        out = dec.generate(PROMPT.expand(batch, -1), cfg_scale=sampling.cfg_scale, temperature=sampling.temperature,
                           top_k=sampling.top_k, seed=seed * batch)  # image i: seed + i, disjoint
        for img in (out.image_tokens.reshape(batch, -1) - 45).tolist():
            counts[index[tuple(img)]] += 1
    assert _chi2_pvalue(counts, probs, bins=12) > 1e-4
    if mode == "hawk":
        assert out.mean_accepted_length > 1.0


def test_bad_inputs():
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    with pytest.raises(ValueError, match="mode"):
        hk.HawkDecoder(model, heads, grid, mode="fast")
    with pytest.raises(ValueError, match="heads"):
        hk.HawkDecoder(model, None, grid, mode="hawk")
    with pytest.raises(ValueError, match="hidden_size"):
        hk.HawkDecoder(model, hk.DraftHeads(16, VOCAB), grid)
    with pytest.raises(ValueError, match="vocab"):
        hk.HawkDecoder(model, heads, hk.ImageGrid(height=2, width=2, image_token_range=(8, 99)))
    dec = hk.HawkDecoder(model, heads, grid)
    with pytest.raises(TypeError, match="input_ids"):
        dec.generate(PROMPT.float())
    with pytest.raises(ValueError, match="input_ids"):
        dec.generate(PROMPT + 100)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        hk.HawkDecoder(model, heads, hk.ImageGrid(height=30, width=30, image_token_range=(8, 48))).generate(PROMPT)
    with pytest.raises(ValueError, match="temperature"):
        dec.generate(PROMPT, temperature=-1)
    with pytest.raises(ValueError, match="attention_mask"):
        dec.generate(PROMPT, attention_mask=torch.tensor([[1, 1, 1, 0]]))
    broken = tiny_backbone()
    with torch.no_grad():
        broken.get_output_embeddings().weight[10, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="target logits"):
        hk.HawkDecoder(broken, heads, grid).generate(PROMPT)
