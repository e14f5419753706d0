"""Attention that reads only what is filled (issue 20, item 2): with attn_implementation="flex_attention" the
backbones pass FlexAttention block masks whose KV block count is the filled length ceil((P + N) / block), and
whose mask_mod is the dense mask's predicate. Checked here: the block mask equals the dense mask slot for slot
(prefill and tree, random row bookkeeping), its bound is the filled length, building it never touches the host
(graph-safe), and whole generations give the same tokens and passes as the dense-mask path.

On the CPU, torch's compiled FlexAttention kernel fails to compile these mask_mods (torch 2.13: a C++ compile
error), so the end-to-end test runs FlexAttention's eager implementation (transformers compiles it unless it
is already under torch.compile; the test makes it believe so). That checks our masks; the block-sparse kernel
itself is torch's, timed on a GPU by scripts/gpu_check.sh."""
import pytest
import torch
from torch.nn.attention.flex_attention import create_mask

import hawk_kernels as hk
from hawk_kernels.backbones.kv_cache import SlotKVCache
from hawk_kernels.checks import check_attn_implementation
from tests.host_guard import forbid_host_touch

BLOCK = 16  # small blocks, so a few hundred slots span many of them


def _dense_from_block_mask(block_mask, rows: int, queries: int, capacity: int) -> torch.Tensor:
    """What a block-sparse kernel computes with: mask_mod inside the listed blocks, nothing outside them."""
    allowed = create_mask(block_mask.mask_mod, rows, 1, queries, capacity, device="cpu")[:, 0]
    listed = torch.arange(capacity)[None, :] < block_mask.kv_num_blocks[:, 0, 0, None] * BLOCK
    return allowed & listed[:, None, :]


def _random_cache(rows: int, capacity: int, generator: torch.Generator) -> SlotKVCache:
    cache = SlotKVCache(rows, capacity, torch.device("cpu"))
    prompt = int(torch.randint(3, 20, (), generator=generator))
    valid = torch.ones(rows, prompt, dtype=torch.bool)
    for r in range(rows):
        valid[r, : int(torch.randint(0, prompt - 1, (), generator=generator))] = False  # left padding
    cache.begin_prefill(valid)
    cache.length.add_(torch.randint(0, capacity // 3, (rows,), generator=generator))  # rows committed unevenly
    return cache, valid


@pytest.mark.parametrize("seed", range(4))
def test_block_masks_equal_the_dense_masks(seed):
    generator = torch.Generator().manual_seed(seed)
    rows, capacity = 3, 211  # not a multiple of the block
    cache, valid = _random_cache(rows, capacity, generator)
    prefill = _dense_from_block_mask(cache.prefill_block_mask(valid, BLOCK), rows, valid.shape[1], capacity)
    assert torch.equal(prefill, cache.prefill_mask(valid))
    parents = [-1] + [int(torch.randint(0, i, (), generator=generator)) for i in range(1, 12)]
    ancestor = _ancestor_mask(parents)
    cache.begin_tree()
    block_mask = cache.tree_block_mask(ancestor, BLOCK)
    filled = int(cache.write_slot) + len(parents)
    assert block_mask.kv_num_blocks.flatten().tolist() == [-(-filled // BLOCK)] * rows
    assert int(block_mask.kv_num_blocks.max()) < -(-capacity // BLOCK)  # the empty tail is not listed
    assert torch.equal(_dense_from_block_mask(block_mask, rows, len(parents), capacity), cache.tree_mask(ancestor))


def _ancestor_mask(parents: list[int]) -> torch.Tensor:
    nodes = len(parents)
    mask = torch.eye(nodes, dtype=torch.bool)
    for node in range(1, nodes):
        mask[node] |= mask[parents[node]]
    return mask


def test_building_the_tree_block_mask_never_touches_the_host():
    cache, _ = _random_cache(2, 130, torch.Generator().manual_seed(0))
    cache.begin_tree()
    ancestor = _ancestor_mask([-1, 0, 0, 1, 2])
    with forbid_host_touch():
        cache.tree_block_mask(ancestor, BLOCK)


@pytest.fixture
def eager_flex(monkeypatch):
    import transformers.integrations.flex_attention as transformers_flex

    monkeypatch.setattr(transformers_flex, "is_torchdynamo_compiling", lambda: True)
    # and the decoder's refusal of flex_attention on the CPU (meant for the compiled kernel) lets this one through
    monkeypatch.setattr(hk.HawkDecoder, "_check_attention", lambda self: None)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_flex_attention_generations_equal_the_dense_mask_path(temperature, eager_flex, monkeypatch):
    """hawk+jacobi, batch 2, CFG on, float64: the same tokens and passes through block masks as through the
    dense additive masks (one pipeline; the model's attention switched between the runs)."""
    torch.set_num_threads(1)
    pipe = hk.load_demo_pipeline(device="cpu", dtype=torch.float64, compile=False)
    prompts = ["a handwritten digit three", "seven"]
    built, original = [], SlotKVCache.tree_block_mask
    monkeypatch.setattr(SlotKVCache, "tree_block_mask", lambda *a, **k: built.append(1) or original(*a, **k))
    runs = []
    for attention in ("sdpa", "flex_attention"):
        pipe.model.set_attn_implementation(attention)
        backbone = pipe.backbone(pipe.layout(None))
        assert backbone.block_sparse_attention == (attention == "flex_attention")
        runs.append(pipe.generate_tokens(prompts, mode="hawk+jacobi", temperature=temperature, seed=3, num_nodes=16))
    dense, sparse = runs
    assert len(built) == sparse.total_forward_passes  # every tree forward went through a block mask
    assert torch.equal(dense.image_tokens, sparse.image_tokens)
    assert dense.num_forward_passes == sparse.num_forward_passes


def test_flex_attention_is_refused_on_the_cpu():
    with pytest.raises(ValueError, match="attn_implementation: 'flex_attention' runs on CUDA only"):
        check_attn_implementation("flex_attention", torch.device("cpu"))
    with pytest.raises(ValueError, match="attn_implementation: expected None or one of"):
        check_attn_implementation("flash", torch.device("cpu"))
    with pytest.raises(ValueError, match="attn_implementation"):
        hk.load_demo_pipeline(device="cpu", attn_implementation="flex_attention")


@pytest.mark.cuda
@pytest.mark.parametrize("mode, compile", [("ar", False), ("hawk+jacobi", False), ("hawk+jacobi", True)])
def test_cuda_flex_attention_equals_sdpa(mode, compile):
    """On CUDA: the block-sparse path (torch's FlexAttention kernel) gives the sdpa path's tokens, greedy,
    float32, CUDA graphs on, eager and compiled steps, with neither falling back."""
    pipe = hk.load_demo_pipeline(device="cuda", dtype=torch.float32, compile=compile)
    prompts = ["a handwritten digit three", "seven"]
    runs = []
    for attention in ("sdpa", "flex_attention"):
        pipe.model.set_attn_implementation(attention)
        out = pipe.generate_tokens(prompts, mode=mode, temperature=0.0, seed=3, num_nodes=16)
        for decoded in out.outputs:
            assert decoded.cuda_graph and decoded.compiled == compile and not decoded.fallbacks, decoded.fallbacks
        runs.append(out)
    assert torch.equal(runs[0].image_tokens, runs[1].image_tokens)
