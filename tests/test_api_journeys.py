"""The documented Python API used the way a user reads it (README "API"): a user's own transformers model, their
own DraftHeads and ImageGrid, the pipelines' seed and tree-size contract. Each test is a journey that once broke
(a crash deep inside a step, an error naming the wrong thing) or a documented claim a user relies on."""
from __future__ import annotations

import pytest
import torch

import hawk_kernels as hk

GRID = hk.ImageGrid(height=3, width=4, row_end_token=60, image_token_range=(20, 52))


def _llama(**config):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, **config)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def llama():
    return _llama()


PROMPTS = torch.tensor([[1, 5, 7, 9, 62], [1, 6, 8, 10, 62]])


def test_heads_with_their_own_projection_over_the_whole_vocabulary_are_refused_by_name(llama):
    """DraftHeads(h, V, shared_lm_head=False) (image_token_range None: one projection row per vocabulary id) passed
    every check and then crashed inside the first step ("The size of tensor a (65) must match ... (33)"): drafts
    are laws over the grid's image codes. Now the decoder names the heads and the fix; restricted heads decode."""
    whole = hk.DraftHeads(32, 64, shared_lm_head=False)
    for mode in ("medusa", "vertical", "hawk", "hawk+jacobi"):
        with pytest.raises(ValueError, match=r"heads: their own projection .* image_token_range=\(20, 52\)"):
            hk.HawkDecoder(llama, whole, GRID, mode=mode)
    restricted = hk.DraftHeads(32, 64, shared_lm_head=False, image_token_range=GRID.image_token_range)
    ar = hk.HawkDecoder(llama, None, GRID, mode="ar").generate(PROMPTS, temperature=0, cfg_scale=2.0)
    out = hk.HawkDecoder(llama, restricted, GRID, mode="hawk", num_nodes=8).generate(PROMPTS, temperature=0,
                                                                                     cfg_scale=2.0)
    assert torch.equal(out.sequences, ar.sequences)
    # a grid whose codes are the whole vocabulary: the whole-vocabulary projection is the right size
    grid = hk.ImageGrid(height=2, width=3, image_token_range=(0, 64))
    hk.HawkDecoder(llama, whole, grid, mode="hawk", num_nodes=4).generate(PROMPTS, temperature=0)


def test_a_flex_attention_model_on_the_cpu_is_refused_before_a_tree_step():
    """A user's CPU model loaded with attn_implementation="flex_attention" (which load_pipeline refuses on the CPU)
    ran AR, but a drafting mode died in its first tree step with an InductorError (a C++ compile error) after
    seconds of compiling. Now start() raises a ValueError naming the model and the remedy, before the prefill."""
    model = _llama(attn_implementation="flex_attention")
    dec = hk.HawkDecoder(model, hk.DraftHeads(32, 64), GRID, mode="hawk", num_nodes=8)
    with pytest.raises(ValueError, match=r"model: runs attn_implementation='flex_attention' on the CPU.*'sdpa'"):
        dec.generate(PROMPTS[:1], temperature=0)
    with pytest.raises(ValueError, match="flex_attention"):
        dec.start(PROMPTS[:1], temperature=0)
    model.set_attn_implementation("sdpa")  # the remedy the message names; the decoder reads it at each call
    ar = hk.HawkDecoder(model, None, GRID, mode="ar").generate(PROMPTS[:1], temperature=0)
    assert torch.equal(dec.generate(PROMPTS[:1], temperature=0).sequences, ar.sequences)


def test_a_grid_beyond_the_vocabulary_names_its_range_as_given(llama):
    """image_token_range=(20, 70) on a 64-id model said "grid image_token_range hi=69": neither the hi the user
    wrote nor a range. Now the message quotes the range (hi exclusive) and the model's ids."""
    with pytest.raises(ValueError, match=r"grid: image_token_range=\(20, 70\) \(hi exclusive: ids 20\.\.69\) does not "
                                         r"fit the model vocab_size 64 \(ids 0\.\.63\)"):
        hk.HawkDecoder(llama, None, hk.ImageGrid(3, 4, image_token_range=(20, 70)), mode="ar")
    with pytest.raises(ValueError, match=r"grid: row_end_token=64 does not fit"):
        hk.HawkDecoder(llama, None, hk.ImageGrid(3, 4, image_token_range=(20, 50), row_end_token=64), mode="ar")


def test_heads_from_pretrained_names_a_bad_dtype_or_device_not_the_saved_files(tmp_path):
    """from_pretrained(dir, dtype="float64") blamed the directory ("draft_heads_config.json in DIR: dtype: ..."):
    a dtype's name is now taken (as load_pipeline takes it) and a bad one named; device="cuda" on a CPU build
    raised a bare AssertionError and a typo'd device torch's RuntimeError."""
    hk.DraftHeads(32, 64, num_horizontal=2, vertical_depth=1).save_pretrained(tmp_path)
    assert hk.DraftHeads.from_pretrained(tmp_path, dtype="float64").res_weight.dtype == torch.float64
    with pytest.raises(ValueError, match=r"^dtype: expected None or one of .* got 'int8'"):
        hk.DraftHeads.from_pretrained(tmp_path, dtype="int8")
    with pytest.raises(ValueError, match=r"^device: expected a device such as 'cpu' or 'cuda', got 'gpu0'"):
        hk.DraftHeads.from_pretrained(tmp_path, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device: 'cuda' requested"):
            hk.DraftHeads.from_pretrained(tmp_path, device="cuda")
    loaded = hk.DraftHeads.from_pretrained(tmp_path, dtype=torch.float64, device=torch.device("cpu"))
    assert loaded.res_weight.dtype == torch.float64 and loaded.config.num_horizontal == 2


def test_accept_rates_errors_name_accept_rates_in_every_mode(llama):
    """HawkDecoder(accept_rates=[[2.0]]) said "accept_rate: ..." (the tree's internal name), only in drafting modes
    (an "ar" decoder took any table), and a callable died in len(). Now every mode checks the table and names
    accept_rates."""
    for mode, heads in (("ar", None), ("hawk", hk.DraftHeads(32, 64))):
        with pytest.raises(ValueError, match=r"^accept_rates: expected a finite number in \[0.0, 1.0\], got 2.0"):
            hk.HawkDecoder(llama, heads, GRID, mode=mode, accept_rates=[[2.0]])
        with pytest.raises(TypeError, match=r"^accept_rates: expected None or a non-empty table"):
            hk.HawkDecoder(llama, heads, GRID, mode=mode, accept_rates=lambda depth, rank: 0.5)


def test_readme_session_and_seed_contract_on_a_users_model(llama):
    """README: start() + run(n) + output() is generate(); image i gets seed + i, and with one decoder an image
    depends on its own seed alone (batch of 2 with seed=5 vs the second prompt alone with seed=6)."""
    dec = hk.HawkDecoder(llama, hk.DraftHeads(32, 64), GRID, mode="hawk", num_nodes=8)
    session = dec.start(PROMPTS, cfg_scale=3.0, seed=0)
    while session.least_committed() < dec.grid.num_body_tokens:
        session.run(2)
    assert torch.equal(session.output().sequences, dec.generate(PROMPTS, cfg_scale=3.0, seed=0).sequences)
    both = dec.generate(PROMPTS, seed=5, top_k=8).image_tokens
    alone = dec.generate(PROMPTS[1:], seed=6, top_k=8).image_tokens
    assert torch.equal(both[1], alone[0])


def test_pipeline_num_nodes_passed_back_gives_the_image_alone():
    """README: a sampled image depends on its seed and tree size, and num_nodes="auto" chooses per batch size; the
    output's num_nodes passed back reproduces an image of a batch decoded alone."""
    pipe = hk.load_demo_pipeline()
    prompts = ["a handwritten digit seven", "a handwritten digit three"]
    both = pipe.generate_tokens(prompts, mode="hawk+jacobi", seed=5)
    alone = pipe.generate_tokens(prompts[1:], mode="hawk+jacobi", seed=6, num_nodes=both.num_nodes[1])
    assert alone.num_nodes == both.num_nodes[1:]
    assert torch.equal(alone.image_tokens[0], both.image_tokens[1])
