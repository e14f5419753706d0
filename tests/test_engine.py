"""The graph-ready decode step: a static slot KV cache, no host sync inside a step, CUDA-graph capture with a
clean fallback. CPU tests check the properties capture relies on; `cuda` tests capture for real."""
import contextlib
import warnings

import numpy as np
import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.backbones import CausalLMBackbone
from hawk_kernels.drafts import SpeculationCache
from hawk_kernels.engine import step as step_module
from hawk_kernels.engine.graphs import StepRunner
from hawk_kernels.tree import TreeBuffers, TreeTemplate
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPT = torch.tensor([[1, 5, 6, 4]])


class HostSync(AssertionError):
    pass


def _device_of(args, kwargs):
    """The device a Tensor.to(...) call targets, or None for a dtype-only cast."""
    target = kwargs.get("device")
    if target is None and args:
        first = args[0]
        target = first.device if isinstance(first, torch.Tensor) else first
    if isinstance(target, (str, torch.device)):
        return torch.device(target)
    return None


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


@contextlib.contextmanager
def forbid_host_sync():
    """Every way a CPU-run step could read a tensor value on the host, build a tensor from host data, or copy
    across devices (what would sync, or break capture, on a GPU) raises instead: .item/.tolist, bool/int/
    float/index of a tensor, nonzero, boolean-mask indexing; torch.tensor/as_tensor/asarray/from_numpy,
    new_tensor, indexing with a Python list or an array; .to/.copy_/.cuda/.cpu onto another device."""
    originals = {}

    def forbid(owner, name, what="host sync"):
        original = getattr(owner, name)
        originals[(owner, name)] = original

        def guarded(*args, **kwargs):
            raise HostSync(f"{what} inside the step: {owner.__name__}.{name}")

        setattr(owner, name, guarded)

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "unique"):
        forbid(torch.Tensor, name)
    for name in ("nonzero", "masked_select", "unique", "bincount"):
        forbid(torch, name)
    for name in ("tensor", "as_tensor", "asarray", "from_numpy"):
        forbid(torch, name, "a tensor built from host data")
    forbid(torch.Tensor, "new_tensor", "a tensor built from host data")
    forbid(torch.Tensor, "cuda", "a copy across devices")
    getitem, setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__
    to, copy_, cpu = torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu

    def _check_index(index):
        items = index if isinstance(index, tuple) else (index,)
        for item in items:
            if isinstance(item, torch.Tensor) and item.dtype == torch.bool:
                raise HostSync("host sync inside the step: boolean-mask indexing")
            if isinstance(item, (list, np.ndarray)):
                raise HostSync("a tensor built from host data inside the step: indexing with a list or array")

    def guarded_get(self, index):
        _check_index(index)
        return getitem(self, index)

    def guarded_set(self, index, value):
        _check_index(index)
        return setitem(self, index, value)

    def guarded_to(self, *args, **kwargs):
        target = _device_of(args, kwargs)
        if target is not None and not _same_device(target, self.device):
            raise HostSync(f"a copy across devices inside the step: Tensor.to({target}) of a {self.device} tensor")
        return to(self, *args, **kwargs)

    def guarded_copy(self, src, *args, **kwargs):
        if isinstance(src, torch.Tensor) and not _same_device(src.device, self.device):
            raise HostSync(f"a copy across devices inside the step: copy_ from {src.device} into {self.device}")
        return copy_(self, src, *args, **kwargs)

    def guarded_cpu(self, *args, **kwargs):
        if self.device.type != "cpu":
            raise HostSync("a copy across devices inside the step: Tensor.cpu")
        return cpu(self, *args, **kwargs)

    torch.Tensor.__getitem__, torch.Tensor.__setitem__ = guarded_get, guarded_set
    torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu = guarded_to, guarded_copy, guarded_cpu
    try:
        yield
    finally:
        torch.Tensor.__getitem__, torch.Tensor.__setitem__ = getitem, setitem
        torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu = to, copy_, cpu
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


def test_sync_guard_catches_syncs():  # the guard itself must be able to fail
    x = torch.arange(4)
    with forbid_host_sync():
        with pytest.raises(HostSync):
            int(x.max())
        with pytest.raises(HostSync):
            x[x > 1]
        with pytest.raises(HostSync):
            x.tolist()
        y = x[1:] + x.max()  # device-side ops are fine
    assert y.tolist() == [4, 5, 6]


def test_sync_guard_catches_host_data_and_device_copies():
    """The step once mapped local to global ids with a table built from a Python list on every call (a
    synchronous host-to-device copy on CUDA, which broke graph capture); the guard must catch that."""
    grid, local = tiny_grid(), torch.arange(4)

    def old_to_global(local_ids):  # the removed ImageGrid.to_global, as it was
        return grid.local_vocab_ids().to(local_ids.device)[local_ids]

    table = grid.local_vocab_ids()  # built once, outside the step: fine
    with forbid_host_sync():
        with pytest.raises(HostSync, match="host data"):
            old_to_global(local)
        with pytest.raises(HostSync, match="host data"):
            local[[0, 2]]
        with pytest.raises(HostSync, match="host data"):
            torch.as_tensor(np.arange(3))
        with pytest.raises(HostSync, match="across devices"):
            local.to("meta")
        with pytest.raises(HostSync, match="across devices"):
            torch.empty(4, device="meta").copy_(local)
        got = table[local].to(torch.float32)  # a device-resident table and a dtype cast are fine
    assert got.tolist() == [8.0, 9.0, 10.0, 11.0]


@pytest.mark.parametrize("mode", ["ar", "hawk"])
@pytest.mark.parametrize("greedy", [True, False])
def test_decode_step_never_syncs_with_the_host(mode, greedy, monkeypatch):
    """Run a whole generate() with every step under the guard: prefill and the between-step check may sync,
    the step (draft, tree, forward, verify, commit, heads, speculation cache, RNG, stats) may not."""
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=12)
    step = step_module.step
    calls = []

    def guarded_step(plan, state):
        with forbid_host_sync():
            step(plan, state)
        calls.append(1)

    monkeypatch.setattr(step_module, "step", guarded_step)
    out = dec.generate(PROMPT.repeat(2, 1), cfg_scale=2.0, temperature=0 if greedy else 1.0, seed=5)
    assert len(calls) == out.num_forward_passes > 0
    reference = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=12)
    assert torch.equal(reference.generate(PROMPT.repeat(2, 1), cfg_scale=2.0, temperature=0 if greedy else 1.0,
                                          seed=5).sequences, out.sequences)


def test_slot_cache_commit_equals_fresh_prefill():
    """After a tree forward and a commit of different paths per row, the cache answers the next query exactly
    as a model that read prompt + kept path from scratch (rows of different lengths, left padding)."""
    model = tiny_backbone()
    tree = TreeTemplate.from_budget(10, max_depth=3, width=2)
    buffers = TreeBuffers(tree, "cpu")
    backbone = CausalLMBackbone(model, tiny_grid(row_end=False))  # local id = global id - 8
    prompt = torch.randint(8, 48, (3, 5))
    valid = torch.ones_like(prompt, dtype=torch.bool)
    valid[2, :3] = False
    cache = backbone.new_cache(3, capacity=5 + 2 * tree.num_nodes + 8)
    backbone.prefill(cache, prompt, valid)
    nodes = torch.randint(8, 48, (3, tree.num_nodes))
    backbone.forward_tree(cache, backbone.embed_image_tokens(nodes - 8), buffers.depth, buffers.ancestor_mask)
    leaves = [tree.num_nodes - 1, 3, 0]
    paths = [[int(n) for n in buffers.retrieve[leaf] if n >= 0] for leaf in leaves]
    width = tree.max_depth + 1
    path = torch.tensor([p + [-1] * (width - len(p)) for p in paths])
    keep = torch.tensor([len(p) for p in paths])
    backbone.commit(cache, path, keep)
    # second tree: every node must see prompt + kept path + its own ancestors
    nodes2 = torch.randint(8, 48, (3, tree.num_nodes))
    hidden = backbone.forward_tree(cache, backbone.embed_image_tokens(nodes2 - 8), buffers.depth, buffers.ancestor_mask)
    for row in range(3):
        for node in (0, tree.num_nodes - 1):
            anc = [int(n) for n in buffers.retrieve[node] if n >= 0]
            seq = torch.cat([prompt[row][valid[row]], nodes[row, paths[row]], nodes2[row, anc]])[None]
            ref = model.get_decoder()(input_ids=seq).last_hidden_state[0, -1]
            assert torch.allclose(hidden[row, node], ref, atol=1e-9), (row, node)


def test_runner_on_cpu_stays_eager_and_true_refuses():
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    out = hk.HawkDecoder(model, heads, grid, mode="hawk").generate(PROMPT, temperature=0)
    assert out.cuda_graph is False
    with pytest.raises(ValueError, match="cuda_graphs"):
        StepRunner(lambda: None, torch.device("cpu"), cuda_graphs=True)
    with pytest.raises(ValueError, match="cuda_graphs"):
        hk.HawkDecoder(model, heads, grid, cuda_graphs="yes")
    with pytest.raises(ValueError, match="sync_every"):
        hk.HawkDecoder(model, heads, grid, sync_every=0)


def test_speculation_cache_sink_slot_is_never_read():
    cache = SpeculationCache(1, row_stride=3, vertical_depth=2, vocab=4)
    offsets = torch.tensor([[0, 1, 2]])
    logq = torch.randn(1, 3, 2, 4)
    cache.insert(offsets, logq, torch.tensor([[True, False, True]]), num_body_tokens=100)
    assert int(cache.num_entries()[0]) == 4  # 2 valid sources x 2 distances; the skipped one hit the sink
    got, ok = cache.lookup(torch.tensor([[4, 5, 7]]))  # targets of source 0 (d=1: 4), 1 (skipped: 5), 0 (d=2: 7)
    assert ok[0, 0, 0] and not ok[0, 1].any() and ok[0, 2, 1]
    assert torch.equal(got[0, 0, 0], logq[0, 0, 0]) and torch.equal(got[0, 2, 1], logq[0, 0, 1])


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["ar", "hawk"])
def test_cuda_graph_replay_equals_eager(mode):
    model = tiny_backbone(dtype=torch.float32).cuda()
    heads, grid = tiny_heads(dtype=torch.float32).cuda(), tiny_grid()
    kw = dict(cfg_scale=2.0, seed=11, top_k=20)
    prompts = PROMPT.repeat(3, 1).cuda()
    eager = hk.HawkDecoder(model, heads, grid, mode=mode, cuda_graphs=False).generate(prompts, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a silent fallback would make this test meaningless
        graphed = hk.HawkDecoder(model, heads, grid, mode=mode, cuda_graphs=True, sync_every=3).generate(prompts, **kw)
    assert graphed.cuda_graph and not eager.cuda_graph
    assert torch.equal(graphed.sequences, eager.sequences)
    assert graphed.accepted_lengths == eager.accepted_lengths
    assert graphed.accepted_by_source == eager.accepted_by_source


@pytest.mark.cuda
def test_cuda_step_has_no_sync(monkeypatch):
    model = tiny_backbone(dtype=torch.float32).cuda()
    heads, grid = tiny_heads(dtype=torch.float32).cuda(), tiny_grid()
    dec = hk.HawkDecoder(model, heads, grid, mode="hawk", cuda_graphs=False)
    step = step_module.step

    def guarded(plan, state):
        torch.cuda.set_sync_debug_mode("error")
        try:
            step(plan, state)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(step_module, "step", guarded)
    dec.generate(PROMPT.cuda(), cfg_scale=2.0, seed=1)


def _every_mode_run(device, mode, batch, temperature, cuda_graphs, guard):
    """One whole generation of the tiny model in `mode` (CFG on), each step inside `guard()`."""
    from hawk_kernels.drafts import needs_heads

    model = tiny_backbone(dtype=torch.float32).to(device)
    heads, grid = tiny_heads(dtype=torch.float32).to(device), tiny_grid()
    dec = hk.HawkDecoder(model, heads if needs_heads(mode) else None, grid, mode=mode, num_nodes=12,
                         cuda_graphs=cuda_graphs)
    step = step_module.step

    def guarded(plan, state):
        with guard():
            step(plan, state)

    original, step_module.step = step_module.step, guarded
    try:
        return dec.generate(PROMPT.repeat(batch, 1).to(device), cfg_scale=2.0, seed=7, temperature=temperature,
                            top_k=None if temperature == 0 else 20)
    finally:
        step_module.step = original


@contextlib.contextmanager
def _cuda_sync_is_an_error():
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.cuda
@pytest.mark.parametrize("mode", hk.MODES)
@pytest.mark.parametrize("batch, temperature", [(1, 0.0), (1, 1.0), (4, 0.0), (4, 1.0)])
def test_every_mode_graphed_without_a_sync_equals_eager(mode, batch, temperature):
    """Issue 11's acceptance run: every mode, greedy and sampled, CFG on, batch 1 and 4: the steps never sync
    (torch's sync debug mode raises), the generation replays a CUDA graph, and equals the eager run bit for bit."""
    eager = _every_mode_run("cuda", mode, batch, temperature, False, contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a silent eager fallback fails here
        graphed = _every_mode_run("cuda", mode, batch, temperature, True, _cuda_sync_is_an_error)
    assert graphed.cuda_graph and not eager.cuda_graph
    assert torch.equal(graphed.sequences, eager.sequences)
    assert graphed.accepted_lengths == eager.accepted_lengths


@pytest.mark.parametrize("mode", hk.MODES)
def test_every_mode_run_on_the_cpu(mode):
    """The CPU twin of the test above (the same helper, the CPU's host-sync guard): CI keeps the helper honest
    for the GPU session."""
    greedy = _every_mode_run("cpu", mode, 4, 0.0, "auto", forbid_host_sync)
    ar = _every_mode_run("cpu", "ar", 4, 0.0, "auto", contextlib.nullcontext)
    assert not greedy.cuda_graph and torch.equal(greedy.sequences, ar.sequences)
    assert _every_mode_run("cpu", mode, 1, 1.0, "auto", forbid_host_sync).num_forward_passes > 0


def test_sliding_window_shorter_than_the_image_is_refused():
    from transformers import MistralConfig, MistralForCausalLM

    from tests.tiny_models import COMMON

    grid, heads = tiny_grid(), tiny_heads()
    short = MistralForCausalLM(MistralConfig(**COMMON, sliding_window=4)).double().eval()
    with pytest.raises(NotImplementedError, match="sliding_window=4"):
        hk.HawkDecoder(short, heads, grid, mode="ar").generate(PROMPT, temperature=0)
    wide = MistralForCausalLM(MistralConfig(**COMMON, sliding_window=256)).double().eval()  # covers everything: exact
    assert hk.HawkDecoder(wide, heads, grid, mode="hawk").generate(PROMPT, temperature=0).num_forward_passes > 0
