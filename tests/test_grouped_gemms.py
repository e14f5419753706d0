"""One GEMM per group of projections in the compiled step (engine/grouped_gemms.py): the weights move into one
buffer without changing the model, only while no session is alive, and compiled code never runs on a layout it was
not compiled for. (That the compiled step then launches 4 GEMMs per layer instead of 7: tests/test_benchmarks_smoke.py,
on the CPU's code and, with a CUDA build of torch, on inductor's sm_90 code.)"""
import gc

import pytest
import torch
from torch._dynamo.utils import counters

import hawk_kernels as hk
from hawk_kernels.engine import grouped_gemms
from hawk_kernels.engine.compiled import inductor_options
from tests.tiny_models import tiny_backbone, tiny_grid

PROMPT = torch.tensor([[1, 5, 6, 4]])


def _pointers(model) -> list[list[int]]:
    return [[w.data_ptr() for w in weights] for weights in grouped_gemms.weight_groups(model.model)]


@pytest.mark.parametrize("kind", ["llama", "chameleon", "emu3"])
def test_grouping_moves_the_bytes_and_nothing_else(kind):
    """Every layer's q/k/v and gate/up land back to back in one buffer each; the parameters stay the same objects
    with the same values, and the eager forward gives the same logits, bit for bit."""
    model = tiny_backbone(kind)
    ids = torch.tensor([[1, 7, 9, 11, 3]])
    params, state = list(model.parameters()), {k: v.clone() for k, v in model.state_dict().items()}
    want = model(ids).logits
    assert grouped_gemms.adjacent_projections(model.model) == 4  # 2 layers x (q/k/v, gate/up)
    assert all(grouped_gemms.layout_of(grouped_gemms.weight_groups(model.model)))
    assert list(model.parameters()) == params and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(model(ids).logits, want)
    grouped_gemms.separate_projections(model.model)
    assert not any(grouped_gemms.layout_of(grouped_gemms.weight_groups(model.model)))
    assert torch.equal(model(ids).logits, want)


def test_a_live_session_keeps_the_weights_where_they_are():
    """A session's CUDA graph replays the weights' addresses: while one is alive no decoder moves them (its step
    then keeps separate GEMMs); once it is gone, the next compiling decoder groups them."""
    model, grid = tiny_backbone(), tiny_grid()
    session = hk.HawkDecoder(model, None, grid, mode="ar").start(PROMPT, temperature=0)
    before = _pointers(model)
    compiled = hk.HawkDecoder(model, None, grid, mode="ar", compile=True)
    assert _pointers(model) == before and not any(compiled.compiled_step.layout)
    assert grouped_gemms.adjacent_projections(model.model) == 0
    del session
    gc.collect()
    later = hk.HawkDecoder(model, None, grid, mode="ar", compile=True)
    assert all(later.compiled_step.layout) and _pointers(model) != before


def test_compiled_code_is_never_run_on_another_layout():
    """A compiled step built for grouped weights, then a regional decoder on the same model separates them: the
    first decoder compiles anew for the new layout before its next step, and still gives the eager step's image."""
    model, grid = tiny_backbone(), tiny_grid()
    kw = dict(temperature=0, seed=3)
    compiled = hk.HawkDecoder(model, None, grid, mode="ar", compile=True)
    want = hk.HawkDecoder(model, None, grid, mode="ar").generate(PROMPT, **kw)
    assert all(compiled.compiled_step.layout)
    assert torch.equal(compiled.generate(PROMPT, **kw).sequences, want.sequences)
    hk.HawkDecoder(model, None, grid, mode="ar", compile="regional")  # separates the weights (no session alive)
    assert not any(grouped_gemms.layout_of(grouped_gemms.weight_groups(model.model)))
    counters.clear()
    again = compiled.generate(PROMPT, **kw)
    assert counters["stats"]["unique_graphs"] >= 1 and not any(compiled.compiled_step.layout)  # compiled anew
    assert torch.equal(again.sequences, want.sequences)


def test_the_pass_is_named_by_its_layout():
    """inductor's on-disk cache keys compiled code by the graph and the options, custom passes by their uuid, and
    never by how inputs share storage: the layout is in the uuid, so code merged for one layout is never loaded
    for another; with nothing grouped there is no pass at all."""
    one, other = grouped_gemms.MergeAdjacentGemms((True, False)), grouped_gemms.MergeAdjacentGemms((False, True))
    assert one.uuid() != other.uuid() and one.uuid() == grouped_gemms.MergeAdjacentGemms((True, False)).uuid()
    assert "post_grad_custom_post_pass" not in inductor_options((False, False))
    assert inductor_options((True, False))["post_grad_custom_post_pass"].layout == (True, False)


def test_a_grouped_model_saves_and_loads_as_it_came(tmp_path):
    """The grouped weights share one storage each group; transformers' save_pretrained writes them apart, and the
    checkpoint loads to the same tensors."""
    from transformers import AutoModelForCausalLM

    model = tiny_backbone()
    want = {name: value.clone() for name, value in model.state_dict().items()}
    assert grouped_gemms.adjacent_projections(model.model) == 4
    model.save_pretrained(tmp_path)
    got = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64).state_dict()
    assert set(got) == set(want) and all(torch.equal(got[name], want[name]) for name in want)
