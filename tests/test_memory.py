"""A session's KV cache is sized before it is allocated (hawk_kernels/memory.py): the estimate equals the bytes the
cache really takes, for every family's backbone, and a batch that does not fit the free memory is refused by
argument, before any model work, with the number of images that do fit."""
import pytest
import torch

import hawk_kernels as hk
from hawk_kernels import memory
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPTS = torch.tensor([[1, 5, 6, 4], [2, 7, 9, 4]])


def _cache_bytes(session) -> int:
    layers = session.state.cache.layers
    return sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))


@pytest.mark.parametrize("kind", ["llama", "chameleon", "emu3", "janus"])
@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_the_estimate_is_the_cache_a_session_allocates(kind, cfg_scale):
    model = tiny_backbone(kind)
    dec = hk.HawkDecoder(model, tiny_heads(), tiny_grid(row_end=kind != "janus"), mode="hawk", num_nodes=8)
    session = dec.start(PROMPTS, cfg_scale=cfg_scale, seed=[1, 2])
    rows = PROMPTS.shape[0] * (2 if cfg_scale != 1 else 1)
    per_slot = memory.cache_bytes_per_slot(dec.backbone)
    assert per_slot is not None and _cache_bytes(session) == per_slot * session.state.cache.capacity * rows


def test_the_estimate_reads_a_llamagen_gpt(tmp_path):
    from tests.tiny_llamagen import build_llamagen

    pipe = hk.load_pipeline(build_llamagen(tmp_path))
    backbone = pipe.backbone(pipe.layout(None))
    session = pipe.decoder("ar").start(torch.tensor([[3], [5]]), cfg_scale=4.0, seed=[1, 2])
    assert _cache_bytes(session) == memory.cache_bytes_per_slot(backbone) * session.state.cache.capacity * 4


def test_a_batch_beyond_the_free_memory_is_refused_by_argument_before_any_model_work(monkeypatch):
    dec = hk.HawkDecoder(tiny_backbone(), tiny_heads(), tiny_grid(), mode="hawk", num_nodes=8)
    need = dec.start(PROMPTS, cfg_scale=3.0, seed=[1, 2])
    need = _cache_bytes(need)

    def no_model_work(*args, **kw):
        raise AssertionError("the backbone ran before the cache was sized")

    monkeypatch.setattr(memory, "free_bytes", lambda device: need - 1)
    monkeypatch.setattr(dec.backbone, "prefill", no_model_work)
    with pytest.raises(ValueError, match=r"input_ids: 2 images \(4 rows with CFG\) need a KV cache .* at most 1 "
                                         r"images fit .* batch_size=k"):
        dec.start(PROMPTS, cfg_scale=3.0, seed=[1, 2])
    monkeypatch.setattr(memory, "free_bytes", lambda device: need)  # exactly enough: on to the prefill
    with pytest.raises(AssertionError, match="the backbone ran"):
        dec.start(PROMPTS, cfg_scale=3.0, seed=[1, 2])


def test_unknown_shapes_and_devices_are_not_checked():
    assert memory.free_bytes(torch.device("cpu")) > 0  # this Linux host's MemAvailable
    assert memory.free_bytes(torch.device("meta")) is None

    class Shapeless:
        text_config, dtype = object(), torch.float32

    assert memory.cache_bytes_per_slot(Shapeless()) is None
    memory.check_cache_fits(Shapeless(), 10**6, 2, 10**6)  # nothing to size: no error
