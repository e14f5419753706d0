import torch

from hawk_kernels.drafts.spec_cache import SpeculationCache


def test_indexing_by_target_offset():
    stride, vsd, vocab = 5, 2, 7
    cache = SpeculationCache(2, stride, vsd, vocab, num_body_tokens=100)
    logq = torch.randn(2, 3, vsd, vocab)
    offsets = torch.tensor([[3, 4, 5], [0, 1, 2]])
    cache.evict_before(torch.tensor([4, 1]))
    cache.insert(offsets, logq, torch.ones(2, 3, dtype=torch.bool))
    got, valid = cache.lookup(torch.tensor([[9, 14], [6, 12]]))  # j + 1 + S*d
    assert valid[0, 0, 0] and valid[0, 1, 1] and not valid[0, 0, 1]
    assert torch.equal(got[0, 0, 0], logq[0, 0, 0]) and torch.equal(got[0, 1, 1], logq[0, 0, 1])  # j=3
    assert valid[1, 0, 0] and torch.equal(got[1, 0, 0], logq[1, 0, 0])
    assert valid[1, 1, 1] and torch.equal(got[1, 1, 1], logq[1, 1, 1])
    cache.evict_before(torch.tensor([100, 100]))  # every target committed
    assert int(cache.num_entries().sum()) == 0


def test_bound_holds_over_a_decode():
    stride, vsd, body = 6, 3, 60
    cache = SpeculationCache(1, stride, vsd, 4, body)
    committed, gen = 0, torch.Generator().manual_seed(0)
    peak = 0
    while committed < body:
        step = int(torch.randint(1, 5, (1,), generator=gen))
        new = torch.arange(committed - 1, committed - 1 + step)[None]
        committed += step
        cache.evict_before(torch.tensor([committed]))
        cache.insert(new, torch.randn(1, step, vsd, 4), torch.ones(1, step, dtype=torch.bool))
        live = int(cache.num_entries())
        peak = max(peak, live)
        assert live <= cache.capacity == stride * vsd * (vsd + 1) // 2
        keys = cache.key[cache.key >= 0]
        assert bool((keys >= committed).all()) and bool((keys < body).all())
    assert peak == cache.capacity  # the bound is tight in steady state
