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
from tests.host_guard import HostTouch, forbid_host_touch
from tests.tiny_models import path_to, tiny_backbone, tiny_grid, tiny_heads

PROMPT = torch.tensor([[1, 5, 6, 4]])


def test_guard_catches_each_kind_of_host_touch():  # the guard itself must be able to fail
    t, table = torch.zeros(5), torch.arange(8)
    faults = {
        "the old jacobi.py line": lambda: t.__setitem__(1, float("-inf")),  # a Python float into a 0-dim view
        "torch.tensor(list) copied in": lambda: t[:3].copy_(torch.tensor([1.0, 2.0, 3.0])),
        "from_numpy added in": lambda: t.add_(torch.from_numpy(np.ones(5, dtype=np.float32))),
        "a host table indexed with a list": lambda: table[[0, 2]],
        "a Python number index-put": lambda: t.__setitem__(torch.arange(2), 5.0),
        ".item()": lambda: t.sum().item(),
        "bool(t)": lambda: bool(t[0] > 0),
        "int(t)": lambda: int(table.max()),
        ".tolist()": lambda: t.tolist(),
        "boolean-mask indexing": lambda: t[t > 0],
        "nonzero": lambda: (t > 0).nonzero(),
        "torch.equal": lambda: torch.equal(t, t),
        "a copy across devices": lambda: torch.empty(5, device="meta").copy_(t),
    }
    for what, fault in faults.items():
        with pytest.raises(HostTouch):
            with forbid_host_touch():
                fault()
            pytest.fail(f"the guard missed {what}")
    with forbid_host_touch():  # scalars as op arguments stay fine
        t[1:3] = 0.5
        t[3:4].fill_(2.0)
        t.masked_fill_(t > 1, 3.0)
        y = torch.where(t > 0, t, 0.0) + table[torch.arange(2)].to(torch.float32).sum() + t.max()
    assert t.tolist() == [0.0, 0.5, 0.5, 3.0, 0.0] and y.shape == (5,)


def _step_with(fault):
    """The real decode step with `fault(plan, state)` run after it (a seeded bug inside the step)."""
    real = step_module.step

    def faulty(plan, state):
        real(plan, state)
        fault(plan, state)

    return faulty


def _old_initial_law(memory, offsets, init):  # drafts/jacobi.py's initial law as it was on the H200
    uniform = torch.zeros(memory.grid.local_vocab_size, device=offsets.device)
    if memory.grid.row_end_local is not None:
        uniform[memory.grid.row_end_local] = float("-inf")
    return uniform.expand(*offsets.shape, -1)


@pytest.mark.parametrize("fault", ["old_jacobi_line", "tensor_list", "item", "tolist", "bool"])
def test_guard_over_the_whole_step_catches_seeded_faults(fault, monkeypatch):
    """Seeded bugs inside a real generation's step (backbone forward included) fail the guard; the clean step
    passes it (test_every_mode_run_on_the_cpu)."""
    from hawk_kernels.drafts import jacobi

    if fault == "old_jacobi_line":
        monkeypatch.setattr(jacobi, "initial_law", _old_initial_law)
    else:
        seeded = {
            "tensor_list": lambda plan, state: state.committed.copy_(torch.tensor([3])),
            "item": lambda plan, state: state.committed.max().item(),
            "tolist": lambda plan, state: state.body.tolist(),
            "bool": lambda plan, state: bool(state.bad_rows.any()),
        }[fault]
        monkeypatch.setattr(step_module, "step", _step_with(seeded))
    with pytest.raises(HostTouch):
        _every_mode_run("cpu", "hawk+jacobi", 1, 1.0, "auto", forbid_host_touch)


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
        with forbid_host_touch():
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
    paths = [path_to(tree, leaf) for leaf in leaves]
    width = tree.max_depth + 1
    path = torch.tensor([p + [-1] * (width - len(p)) for p in paths])
    keep = torch.tensor([len(p) for p in paths])
    backbone.commit(cache, path, keep)
    # second tree: every node must see prompt + kept path + its own ancestors
    nodes2 = torch.randint(8, 48, (3, tree.num_nodes))
    hidden = backbone.forward_tree(cache, backbone.embed_image_tokens(nodes2 - 8), buffers.depth, buffers.ancestor_mask)
    for row in range(3):
        for node in (0, tree.num_nodes - 1):
            anc = path_to(tree, node)
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
    cache = SpeculationCache(1, row_stride=3, vertical_depth=2, vocab=4, num_body_tokens=100)
    offsets = torch.tensor([[0, 1, 2]])
    logq = torch.randn(1, 3, 2, 4)
    cache.insert(offsets, logq, torch.tensor([[True, False, True]]))
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
    eager = hk.HawkDecoder(model, heads, grid, mode=mode, cuda_graphs=False, compile=False).generate(prompts, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a silent fallback would make this test meaningless
        graphed = hk.HawkDecoder(model, heads, grid, mode=mode, cuda_graphs=True, sync_every=3,
                                 compile=False).generate(prompts, **kw)
    assert graphed.cuda_graph and not eager.cuda_graph
    assert torch.equal(graphed.sequences, eager.sequences)
    assert graphed.accepted_lengths == eager.accepted_lengths
    assert graphed.accepted_by_source == eager.accepted_by_source


@pytest.mark.cuda
def test_cuda_step_has_no_sync(monkeypatch):
    model = tiny_backbone(dtype=torch.float32).cuda()
    heads, grid = tiny_heads(dtype=torch.float32).cuda(), tiny_grid()
    dec = hk.HawkDecoder(model, heads, grid, mode="hawk", cuda_graphs=False, compile=False)
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
                         cuda_graphs=cuda_graphs, compile=False)  # the eager step: the guard wraps it
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
    greedy = _every_mode_run("cpu", mode, 4, 0.0, "auto", forbid_host_touch)
    ar = _every_mode_run("cpu", "ar", 4, 0.0, "auto", contextlib.nullcontext)
    assert not greedy.cuda_graph and torch.equal(greedy.sequences, ar.sequences)
    assert _every_mode_run("cpu", mode, 1, 1.0, "auto", forbid_host_touch).num_forward_passes > 0


def test_sliding_window_shorter_than_the_image_is_refused():
    from transformers import MistralConfig, MistralForCausalLM

    from tests.tiny_models import COMMON

    grid, heads = tiny_grid(), tiny_heads()
    short = MistralForCausalLM(MistralConfig(**COMMON, sliding_window=4)).double().eval()
    with pytest.raises(NotImplementedError, match="sliding_window=4"):
        hk.HawkDecoder(short, heads, grid, mode="ar").generate(PROMPT, temperature=0)
    wide = MistralForCausalLM(MistralConfig(**COMMON, sliding_window=256)).double().eval()  # covers everything: exact
    assert hk.HawkDecoder(wide, heads, grid, mode="hawk").generate(PROMPT, temperature=0).num_forward_passes > 0


def test_a_failed_capture_is_reported_in_the_output(monkeypatch, capsys):
    """Where CUDA-graph capture fails, "auto" runs eagerly and the output says why (the CLI summaries print
    `step_engine`), not only a warning. The capture is made to fail as it did on the GPU (a host copy)."""
    from hawk_kernels.cli.demo import print_table

    def failing_capture(self):
        self.fallback_reason = "RuntimeError: Cannot copy between CPU and CUDA tensors during CUDA graph capture"
        self.wants_graph = False

    monkeypatch.setattr(StepRunner, "_capture", failing_capture)
    monkeypatch.setattr(StepRunner, "_warm_up", lambda self: self.step())
    model, heads, grid = tiny_backbone(), tiny_heads(), tiny_grid()
    dec = hk.HawkDecoder(model, heads, grid, mode="hawk")
    session = dec.start(PROMPT, temperature=0)
    session.runner.wants_graph = True  # as on a CUDA device
    while session.least_committed() < grid.num_body_tokens:
        session.run(1)
    out = session.output()
    assert not out.cuda_graph and "Cannot copy between CPU and CUDA" in out.fallbacks["cuda_graphs"]
    assert out.step_engine.startswith("eager (cuda_graphs: capture failed")
    assert hk.HawkDecoder(model, heads, grid, mode="hawk").generate(PROMPT, temperature=0).step_engine == "eager"

    class Result:  # what the demo table reads of a PipelineOutput
        num_forward_passes, seconds, tokens_per_pass, num_nodes = [out.num_forward_passes], 1.0, 2.0, [32]
        step_engine = out.step_engine

    print_table({"hawk": Result()})
    assert "Cannot copy between CPU and CUDA" in capsys.readouterr().out


def test_cache_capacity_rounds_up_to_whole_blocks():
    from hawk_kernels.backbones.kv_cache import CAPACITY_MULTIPLE, cache_capacity

    assert CAPACITY_MULTIPLE == 128
    assert [cache_capacity(n) for n in (1, 127, 128, 129, 2431)] == [128, 128, 128, 256, 2432]
    assert cache_capacity(130, sliding_window=200) == 200  # never past a window the exact size fits in
    assert cache_capacity(130, sliding_window=4096) == 256
    assert cache_capacity(300, sliding_window=200) == 384  # does not fit anyway: new_cache says so
