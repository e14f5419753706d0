"""philox_uniforms: the reference is Philox4x32-10 (Random123 known answers), every backend is bit-identical to
it (one seed and offset, per-row seeds, per-row offsets), the numbers look uniform, and a captured CUDA graph
that advances the offset replays with fresh numbers."""
from __future__ import annotations

import math
import random
import zlib

import pytest
import torch

from hawk_kernels import ops
from hawk_kernels.ops import reference
from hawk_kernels.ops.philox import STREAM_ACCEPT, STREAM_FIRST_DRAFT, STREAM_RESIDUAL, DeviceRNG
from hawk_kernels.ops.reference.philox import philox4x32_10
from conftest import backend_params, require

# Random123 tests/kat_vectors, rows "philox4x32 10": counter[4], key[2] -> output[4]
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
SHAPES = [(1,), (3,), (4,), (5,), (7, 3), (0,), (2, 0, 3), (), (2, 513, 3), (4099,)]
STREAMS = (0, STREAM_ACCEPT, STREAM_RESIDUAL, STREAM_FIRST_DRAFT, STREAM_FIRST_DRAFT + 7, 12345, 2**31, 2**32 - 1)
MASK64 = 2**64 - 1


def fresh_key(rng: random.Random):
    """(seed, offset) as int64 with random high bits set (and offsets past 2**32)."""
    to_int64 = lambda v: v - 2**64 if v >= 2**63 else v
    seed = to_int64(rng.getrandbits(64) | (1 << 63 if rng.random() < 0.5 else 1 << 40))
    offset = to_int64(rng.getrandbits(64) | (1 << 33))
    return seed, offset


def block_words(seed: int, offset: int, stream: int, block: int):
    seed, offset = seed & MASK64, offset & MASK64
    words = philox4x32_10((block, stream, offset & 0xFFFFFFFF, offset >> 32), (seed & 0xFFFFFFFF, seed >> 32))
    return [int(w) for w in words]


@pytest.mark.parametrize("ctr,key,want", KAT, ids=["zeros", "ones", "pi"])
def test_known_answers(ctr, key, want):
    assert tuple(int(w) for w in philox4x32_10(ctr, key)) == want
    # vectorised: the same vector broadcast against other counters
    c0 = torch.tensor([ctr[0], 0, 1], dtype=torch.int64)
    got = philox4x32_10((c0, ctr[1], ctr[2], ctr[3]), key)
    assert tuple(int(w[0]) for w in got) == want


def test_layout_matches_the_block_function():
    """Element i is lane i % 4 of counter block i // 4 of (j, stream, offset lo, offset hi), key = seed."""
    rng = random.Random(11)
    for _ in range(3):
        seed, offset = fresh_key(rng)
        stream = rng.randrange(2**32)
        u = reference.philox_uniforms(torch.tensor(seed), torch.tensor(offset), (11,), stream)
        for block in range(3):
            words = block_words(seed, offset, stream, block)
            for lane in range(4):
                if 4 * block + lane < 11:
                    assert float(u[4 * block + lane]) == (words[lane] >> 8) * 2.0**-24


def test_offset_high_word_is_c3():
    """offset = 2**32 * h + l: counter words (l, h), so offsets differing only in the high word differ."""
    seed = torch.tensor(987654321987)
    a = reference.philox_uniforms(seed, torch.tensor(5), (64,), 0)
    b = reference.philox_uniforms(seed, torch.tensor(5 + 2**32), (64,), 0)
    assert not torch.equal(a, b)
    words = block_words(987654321987, 5 + 2**32, 0, 0)
    assert float(b[0]) == (words[0] >> 8) * 2.0**-24


@pytest.mark.parametrize("backend", backend_params("philox_uniforms"))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(backend, shape):
    device = require(backend, "philox_uniforms")
    rng = random.Random(zlib.crc32(repr((backend, shape)).encode()))
    for stream in STREAMS:
        seed, offset = fresh_key(rng)
        for seed_t, offset_t in ((torch.tensor(seed), torch.tensor(offset)),
                                 (torch.tensor([seed]), torch.tensor([offset]))):
            want = reference.philox_uniforms(seed_t, offset_t, shape, stream)
            got = ops.philox_uniforms(seed_t.to(device), offset_t.to(device), shape, stream, backend=backend)
            assert got.dtype == torch.float32 and got.shape == torch.Size(shape) and got.device.type == device.type
            assert torch.equal(got.cpu(), want), f"{backend} differs: {shape=} {stream=} {seed=} {offset=}"


@pytest.mark.parametrize("backend", backend_params("philox_uniforms"))
def test_matches_reference_large(backend):
    device = require(backend, "philox_uniforms")
    numel = 1_000_003 if device.type == "cuda" or backend == "cpu" else 20_001
    seed, offset = fresh_key(random.Random(5))
    s, o = torch.tensor(seed), torch.tensor(offset)
    want = reference.philox_uniforms(s, o, (numel,), STREAM_RESIDUAL)
    got = ops.philox_uniforms(s.to(device), o.to(device), (numel,), STREAM_RESIDUAL, backend=backend)
    assert torch.equal(got.cpu(), want)


@pytest.mark.cuda
def test_reference_runs_on_cuda_like_any_device():
    """The reference is device-generic: on a GPU host it must agree with itself on CPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    s, o = torch.tensor(-77), torch.tensor(2**35 + 3)
    want = reference.philox_uniforms(s, o, (3, 1001), 2)
    got = reference.philox_uniforms(s.cuda(), o.cuda(), (3, 1001), 2)
    assert got.device.type == "cuda" and torch.equal(got.cpu(), want)


def test_prefix_property():
    s, o = torch.tensor(31337), torch.tensor(2**40 + 1)
    small = ops.philox_uniforms(s, o, (9,), 1)
    large = ops.philox_uniforms(s, o, (4, 25), 1)
    assert torch.equal(small, large.reshape(-1)[:9])


def test_distribution():
    seed, offset = fresh_key(random.Random(2024))
    u = ops.philox_uniforms(torch.tensor(seed), torch.tensor(offset), (1_000_000,), STREAM_ACCEPT).double()
    n = u.numel()
    assert 0.0 <= float(u.min()) and float(u.max()) <= 1.0 - 2.0**-24
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(float(u.var()) - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    bins = 1000
    counts = torch.bincount((u * bins).long(), minlength=bins).double()
    chi2 = float(((counts - n / bins) ** 2 / (n / bins)).sum())
    # chi-square with 999 dof: mean 999, sd ~44.7; 6 sd either side
    assert 999 - 6 * 44.7 < chi2 < 999 + 6 * 44.7, chi2
    # lag-1 correlation (within and across counter blocks) is ~0
    corr = float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])
    assert abs(corr) < 5 / math.sqrt(n)


def test_streams_offsets_seeds_give_different_numbers():
    seed, offset = fresh_key(random.Random(7))
    draw = lambda s, o, st: ops.philox_uniforms(torch.tensor(s), torch.tensor(o), (256,), st)
    base = draw(seed, offset, 0)
    others = [draw(seed, offset, 1), draw(seed, offset, 2), draw(seed, offset + 1, 0), draw(seed ^ 1, offset, 0),
              draw(seed ^ (1 << 40), offset, 0), draw(seed, offset ^ (1 << 40), 0)]
    for other in others:
        assert (other != base).float().mean() > 0.99
    assert torch.equal(draw(seed, offset, 0), base)  # stateless


def test_device_rng():
    seed, offset = fresh_key(random.Random(99))
    rng = DeviceRNG(seed, "cpu", offset=offset)
    assert rng.seed.dtype == rng.offset.dtype == torch.int64 and rng.seed.dim() == 0
    first = rng.uniforms((10,), 0)
    assert torch.equal(first, reference.philox_uniforms(torch.tensor(seed), torch.tensor(offset), (10,), 0))
    assert torch.equal(rng.uniforms((10,), 0), first)  # drawing does not advance
    offset_tensor = rng.offset
    rng.advance()
    assert rng.offset is offset_tensor  # in place
    second = rng.uniforms((10,), 0)
    assert not torch.equal(first, second)
    assert torch.equal(second, reference.philox_uniforms(torch.tensor(seed), torch.tensor(offset + 1), (10,), 0))
    rng.advance(5)
    assert not torch.equal(rng.uniforms((10,)), second)
    # unsigned 64-bit seeds are their int64 bits; tensor seeds are copied
    assert int(DeviceRNG(2**64 - 1, "cpu").seed) == -1
    t = torch.tensor([seed])
    assert DeviceRNG(t).seed.dim() == 0 and DeviceRNG(t).seed.data_ptr() != t.data_ptr()


def test_stream_constants():
    """One stream per purpose: accept tests, residual samples, and one per draft law from STREAM_FIRST_DRAFT."""
    assert (STREAM_ACCEPT, STREAM_RESIDUAL, STREAM_FIRST_DRAFT) == (1, 2, 16)
    assert not hasattr(ops.philox, "STREAM_DRAFT")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_device_rng_backend(backend):
    """DeviceRNG binds its kernel once: the named backend runs, with the same numbers as every other."""
    require(backend, "philox_uniforms")
    seed, offset = fresh_key(random.Random(12))
    rng = DeviceRNG(seed, "cpu", offset=offset, backend=backend)
    assert rng.backend == backend and backend in repr(rng)
    want = reference.philox_uniforms(torch.tensor(seed), torch.tensor(offset), (5, 7), STREAM_FIRST_DRAFT + 3)
    assert torch.equal(rng.uniforms((5, 7), STREAM_FIRST_DRAFT + 3), want)
    rng.advance(2)
    want = reference.philox_uniforms(torch.tensor(seed), torch.tensor(offset + 2), (9,), STREAM_ACCEPT)
    assert torch.equal(rng.uniforms((9,), STREAM_ACCEPT), want)
    with pytest.raises(ValueError, match="stream"):
        rng.uniforms((3,), -1)
    with pytest.raises(ValueError, match="shape"):
        rng.uniforms((3, -1))


def test_device_rng_auto_and_unavailable_backend():
    rng = DeviceRNG(3, "cpu")
    assert rng.backend in ("cpu", "reference")  # auto on CPU tensors: the C++ op when built
    with pytest.raises(RuntimeError, match=r"backend='cuda' cannot run philox_uniforms on cpu: .*not a CUDA device"):
        DeviceRNG(3, "cpu", backend="cuda")
    with pytest.raises(RuntimeError, match="unknown backend 'nope'"):
        DeviceRNG(3, "cpu", backend="nope")


def test_opcheck():
    require("cpu", "philox_uniforms")
    seed, offset = fresh_key(random.Random(3))
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default,
                          (torch.tensor(seed), torch.tensor(offset), [3, 5], 2))
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default,
                          (torch.tensor([seed]), torch.tensor([offset]), [0], 0))


@pytest.mark.cuda
def test_opcheck_cuda():
    require("cuda", "philox_uniforms")
    seed, offset = fresh_key(random.Random(4))
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default,
                          (torch.tensor(seed, device="cuda"), torch.tensor(offset, device="cuda"), [7, 9], 1))


def _captured_draw_and_advance(rng, shape):
    """A CUDA graph of `rng.uniforms(shape)` + `rng.advance()`, captured after a warm-up draw on a side stream
    (which compiles the Triton kernel); capture runs nothing. Returns (graph, the output tensor)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        rng.uniforms(shape, STREAM_ACCEPT)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = rng.uniforms(shape, STREAM_ACCEPT)
        rng.advance()
    return graph, out


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_replay_advances(backend):
    """Capture uniforms + advance in a graph: each replay draws at the next offset, from the device tensors."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    require(backend, "philox_uniforms")
    seed, offset = fresh_key(random.Random(8))
    rng = DeviceRNG(seed, "cuda", offset=offset, backend=backend)
    assert rng.backend == backend
    shape = (3, 1001)
    graph, out = _captured_draw_and_advance(rng, shape)
    torch.cuda.synchronize()
    assert int(rng.offset) == offset  # capture ran nothing
    graph.replay()
    first = out.clone()
    graph.replay()
    second = out.clone()
    torch.cuda.synchronize()
    ref = lambda o: reference.philox_uniforms(torch.tensor(seed), torch.tensor(o), shape, STREAM_ACCEPT)
    assert not torch.equal(first, second)
    assert torch.equal(first.cpu(), ref(offset)) and torch.equal(second.cpu(), ref(offset + 1))
    assert int(rng.offset) == offset + 2


def test_bad_inputs_name_the_argument():
    s, o = torch.tensor(1), torch.tensor(2)
    with pytest.raises(TypeError, match="seed.*int64"):
        ops.philox_uniforms(torch.tensor(1, dtype=torch.int32), o, (3,))
    with pytest.raises(TypeError, match="seed"):
        ops.philox_uniforms(1, o, (3,))
    with pytest.raises(ValueError, match=r"seed.*shape \(\) or \(1,\)"):
        ops.philox_uniforms(torch.tensor([1, 2]), o, (3,))
    with pytest.raises(ValueError, match="seed"):
        ops.philox_uniforms(torch.tensor([[1]]), o, (3,))
    with pytest.raises(TypeError, match="offset.*int64"):
        ops.philox_uniforms(s, torch.tensor(2.0), (3,))
    with pytest.raises(ValueError, match="offset"):
        ops.philox_uniforms(s, torch.zeros(0, dtype=torch.int64), (3,))
    with pytest.raises(ValueError, match="shape"):
        ops.philox_uniforms(s, o, (3, -1))
    with pytest.raises(TypeError, match="shape"):
        ops.philox_uniforms(s, o, (3, 1.5))
    with pytest.raises(TypeError, match="shape"):
        ops.philox_uniforms(s, o, "abc")
    with pytest.raises(ValueError, match=r"shape.*2\*\*34"):
        ops.philox_uniforms(s, o, (2**17, 2**17 + 1))
    with pytest.raises(ValueError, match="stream"):
        ops.philox_uniforms(s, o, (3,), stream=-1)
    with pytest.raises(ValueError, match="stream"):
        ops.philox_uniforms(s, o, (3,), stream=2**32)
    with pytest.raises(TypeError, match="stream"):
        ops.philox_uniforms(s, o, (3,), stream=1.0)
    with pytest.raises(RuntimeError, match="backend"):
        ops.philox_uniforms(s, o, (3,), backend="nope")
    with pytest.raises(ValueError, match="seed"):
        DeviceRNG(2**64, "cpu")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="offset.*device"):
            ops.philox_uniforms(s.cuda(), o, (3,))


def test_cpu_op_checks_without_wrapper_validation():
    require("cpu", "philox_uniforms")
    s, o = torch.tensor(1), torch.tensor(2)
    op = torch.ops.hawk.philox_uniforms
    with pytest.raises(RuntimeError, match="seed"):
        op(torch.tensor(1, dtype=torch.int32), o, [3], 0)
    with pytest.raises(RuntimeError, match="offset"):
        op(s, torch.tensor([1, 2]), [3], 0)
    with pytest.raises(RuntimeError, match="stream"):
        op(s, o, [3], 2**32)
    with pytest.raises(RuntimeError, match="shape"):
        op(s, o, [2**20, 2**15], 0)
    with pytest.raises(RuntimeError, match="shape"):
        op(s, o, [3, -2], 0)


# ------------------------------------------------------------------------------------------------ per-row seeds
# seed of shape (R,), R == shape[0]: row r is the one-key draw of seed[r] over shape[1:] (reference/philox.py).
ROW_SHAPES = [(3, 5), (5, 6), (4, 7, 3), (2, 4), (9, 2), (3, 1), (4,), (2, 2049), (6, 0), (0, 3), (1, 7)]


def row_seeds(rng: random.Random, rows: int) -> list[int]:
    """Distinct int64 seeds with random high bits (both signs)."""
    return [fresh_key(rng)[0] for _ in range(rows)]


@pytest.mark.parametrize("backend", backend_params("philox_uniforms", include_reference=True))
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_per_row_matches_reference(backend, shape):
    """Per-row output == the reference, and row r == the one-key draw of seed[r] over shape[1:] (also for row
    sizes that are not a multiple of 4, where the CUDA kernel must not use its vector store)."""
    device = require(backend, "philox_uniforms")
    rng = random.Random(zlib.crc32(repr(("rows", backend, shape)).encode()))
    for stream in (STREAM_ACCEPT, 2**32 - 1):
        seeds, offset = torch.tensor(row_seeds(rng, shape[0]), dtype=torch.int64), torch.tensor(fresh_key(rng)[1])
        want = reference.philox_uniforms(seeds, offset, shape, stream)
        got = ops.philox_uniforms(seeds.to(device), offset.to(device), shape, stream, backend=backend)
        assert got.dtype == torch.float32 and got.shape == torch.Size(shape) and got.device.type == device.type
        assert torch.equal(got.cpu(), want), f"{backend} differs: {shape=} {stream=}"
        for r in range(shape[0]):
            one = reference.philox_uniforms(seeds[r], offset, shape[1:], stream)
            assert torch.equal(want[r], one), f"reference row {r} is not the one-key draw of seed[{r}]"


@pytest.mark.parametrize("backend", backend_params("philox_uniforms", include_reference=True))
@pytest.mark.parametrize("row_shape", [(7, 3), (16,), (5,)], ids=str)
def test_per_row_row_depends_on_its_seed_alone(backend, row_shape):
    """The same seed gives the same row at R = 1, 3 and 8, at positions 0 and 5, whatever the other seeds."""
    device = require(backend, "philox_uniforms")
    rng = random.Random(zlib.crc32(repr(("alone", backend, row_shape)).encode()))
    seed, offset = fresh_key(rng)
    offset_t = torch.tensor(offset, device=device)
    alone = ops.philox_uniforms(torch.tensor(seed, device=device), offset_t, row_shape, STREAM_RESIDUAL,
                                backend=backend).cpu()
    assert torch.equal(alone, reference.philox_uniforms(torch.tensor(seed), torch.tensor(offset), row_shape,
                                                        STREAM_RESIDUAL))
    for rows, positions in ((1, (0,)), (3, (0, 2)), (8, (0, 5))):
        for position in positions:
            seeds = row_seeds(rng, rows)
            seeds[position] = seed
            got = ops.philox_uniforms(torch.tensor(seeds, device=device), offset_t, (rows, *row_shape),
                                      STREAM_RESIDUAL, backend=backend).cpu()
            assert torch.equal(got[position], alone), f"{backend}: row {position} of {rows} depends on the batch"
            others = [r for r in range(rows) if r != position]
            assert all((got[r] != alone).float().mean() > 0.9 for r in others)


@pytest.mark.parametrize("backend", backend_params("philox_uniforms", include_reference=True))
def test_per_row_strided_and_repeated_seeds(backend):
    """A strided seed view reads seed[r] (not the r-th int64 in memory); equal seeds give equal rows."""
    device = require(backend, "philox_uniforms")
    base = torch.tensor(row_seeds(random.Random(31), 10), dtype=torch.int64)
    strided = base.to(device)[::3]  # 4 seeds, stride 3
    o = torch.tensor(2**33 + 5)
    got = ops.philox_uniforms(strided, o.to(device), (4, 11), 1, backend=backend).cpu()
    assert torch.equal(got, reference.philox_uniforms(base[::3].contiguous(), o, (4, 11), 1))
    same = torch.full((3,), int(base[0]), dtype=torch.int64, device=device)
    rows = ops.philox_uniforms(same, o.to(device), (3, 5), 1, backend=backend).cpu()
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[0], rows[2])
    expanded = torch.tensor(int(base[0]), device=device).expand(3)  # stride 0
    assert torch.equal(ops.philox_uniforms(expanded, o.to(device), (3, 5), 1, backend=backend).cpu(), rows)


@pytest.mark.parametrize("backend", backend_params("philox_uniforms"))
def test_per_row_large_and_many_rows(backend):
    """Long rows (grid-strided blocks) and more rows than one CUDA grid holds along y (65535)."""
    device = require(backend, "philox_uniforms")
    interpreted = backend == "triton" and device.type == "cpu"
    rng = random.Random(6)
    if device.type == "cuda":
        shapes = [(8, 125_001), (70_001, 3), (70_000, 4)]
    else:  # the CPU op (parallel over rows x blocks), Triton under the interpreter
        shapes = [(3, 2_001)] if interpreted else [(8, 25_001), (4_097, 3)]
    for shape in shapes:
        seeds, offset = torch.tensor(row_seeds(rng, shape[0]), dtype=torch.int64), torch.tensor(fresh_key(rng)[1])
        want = reference.philox_uniforms(seeds, offset, shape, STREAM_ACCEPT)
        got = ops.philox_uniforms(seeds.to(device), offset.to(device), shape, STREAM_ACCEPT, backend=backend)
        assert torch.equal(got.cpu(), want), f"{backend} differs at {shape=}"


def test_triton_rows_beyond_one_grid(monkeypatch):
    """The Triton wrapper launches rows in chunks of MAX_GRID_ROWS (CUDA's grid-y limit); shrunk here so the
    chunking runs under the interpreter too."""
    device = require("triton", "philox_uniforms")
    from hawk_kernels.ops.triton import philox as triton_philox

    monkeypatch.setattr(triton_philox, "MAX_GRID_ROWS", 2)
    seeds, offset = torch.tensor(row_seeds(random.Random(41), 5), dtype=torch.int64), torch.tensor(9)
    got = ops.philox_uniforms(seeds.to(device), offset.to(device), (5, 7), 3, backend="triton")
    assert torch.equal(got.cpu(), reference.philox_uniforms(seeds, offset, (5, 7), 3))


def test_per_row_one_seed_reads_both_ways():
    """R == 1: a seed of shape (1,) is one key for any shape, and is also the per-row key of a 1-row draw."""
    s, o = torch.tensor([-5]), torch.tensor(17)
    assert torch.equal(ops.philox_uniforms(s, o, (1, 9), 2), reference.philox_uniforms(s[0], o, (9,), 2)[None])
    assert torch.equal(ops.philox_uniforms(s, o, (3, 4), 2), reference.philox_uniforms(s[0], o, (12,), 2).view(3, 4))


def test_device_rng_per_row_seeds():
    rng_py = random.Random(77)
    seeds = [2**64 - 1, 5, 2**63, -3]  # ints in [-2**63, 2**64): stored as their int64 bits
    bits = [-1, 5, -2**63, -3]
    offset = fresh_key(rng_py)[1]
    for given in (seeds, tuple(seeds), torch.tensor(bits, dtype=torch.int64)):
        rng = DeviceRNG(given, "cpu", offset=offset)
        assert rng.seed.dtype == torch.int64 and rng.seed.shape == (4,) and rng.seed.tolist() == bits
        assert rng.rows == 4 and "rows=4" in repr(rng)
        want = reference.philox_uniforms(torch.tensor(bits), torch.tensor(offset), (4, 9), STREAM_ACCEPT)
        assert torch.equal(rng.uniforms((4, 9), STREAM_ACCEPT), want)
        for r in range(4):
            one = DeviceRNG(seeds[r], "cpu", offset=offset)
            assert one.rows is None and torch.equal(one.uniforms((9,), STREAM_ACCEPT), want[r])
        rng.advance(3)
        want = reference.philox_uniforms(torch.tensor(bits), torch.tensor(offset + 3), (4, 2, 3), 0)
        assert torch.equal(rng.uniforms((4, 2, 3)), want)
        with pytest.raises(ValueError, match=r"shape: .*4 per-row seeds.*shape\[0\] must be 4.*\(3, 9\)"):
            rng.uniforms((3, 9))
        with pytest.raises(ValueError, match=r"shape: .*4 per-row seeds"):
            rng.uniforms(())
    t = torch.tensor(bits)
    assert DeviceRNG(t).seed.data_ptr() != t.data_ptr()  # copied
    one = DeviceRNG([12], "cpu")  # R == 1: one key for any shape
    assert one.rows == 1 and torch.equal(one.uniforms((5, 2)), DeviceRNG(12, "cpu").uniforms((5, 2)))
    with pytest.raises(ValueError, match=r"seed\[2\]"):
        DeviceRNG([1, 2, 2**64], "cpu")
    with pytest.raises(TypeError, match=r"seed\[1\]"):
        DeviceRNG([1, 2.5], "cpu")
    with pytest.raises(ValueError, match="seed: expected at least one"):
        DeviceRNG([], "cpu")
    with pytest.raises(ValueError, match=r"seed: .*\(R,\)"):
        DeviceRNG(torch.tensor([[1, 2]]), "cpu")
    with pytest.raises(ValueError, match=r"seed: .*\(R,\)"):
        DeviceRNG(torch.zeros(0, dtype=torch.int64), "cpu")
    with pytest.raises(TypeError, match="seed.*int64"):
        DeviceRNG(torch.tensor([1, 2], dtype=torch.int32), "cpu")


@pytest.mark.parametrize("backend", backend_params("philox_uniforms", include_reference=True))
def test_device_rng_per_row_backend(backend):
    device = require(backend, "philox_uniforms")
    seeds = row_seeds(random.Random(13), 3)
    rng = DeviceRNG(seeds, device, offset=2**35 + 1, backend=backend)
    assert rng.backend == backend and rng.seed.device.type == device.type
    want = reference.philox_uniforms(torch.tensor(seeds), torch.tensor(2**35 + 1), (3, 5, 3), STREAM_FIRST_DRAFT)
    assert torch.equal(rng.uniforms((3, 5, 3), STREAM_FIRST_DRAFT).cpu(), want)


def test_per_row_bad_inputs_name_the_argument():
    o = torch.tensor(2)
    with pytest.raises(ValueError, match=r"seed: .*\(R,\) with R == shape\[0\] = 3.*got shape \(2,\)"):
        ops.philox_uniforms(torch.tensor([1, 2]), o, (3, 4))
    with pytest.raises(ValueError, match=r"seed: .*\(R,\) with R == shape\[0\] = 3.*got shape \(0,\)"):
        ops.philox_uniforms(torch.zeros(0, dtype=torch.int64), o, (3,))
    with pytest.raises(ValueError, match=r"seed: a per-row seed of shape \(2,\) needs a shape with at least one"):
        ops.philox_uniforms(torch.tensor([1, 2]), o, ())
    with pytest.raises(ValueError, match=r"seed: .*got shape \(2, 1\)"):
        ops.philox_uniforms(torch.tensor([[1], [2]]), o, (2, 1))
    with pytest.raises(TypeError, match="seed.*int64"):
        ops.philox_uniforms(torch.tensor([1, 2], dtype=torch.int32), o, (2, 3))
    with pytest.raises(ValueError, match="offset"):
        ops.philox_uniforms(torch.tensor([1, 2]), torch.tensor([1, 2, 3]), (2, 3))  # per-row offsets: R rows too
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="offset.*device"):
            ops.philox_uniforms(torch.tensor([1, 2]).cuda(), o, (2, 3))


def test_cpu_op_per_row_checks_without_wrapper_validation():
    require("cpu", "philox_uniforms")
    o = torch.tensor(2)
    op = torch.ops.hawk.philox_uniforms
    with pytest.raises(RuntimeError, match=r"seed: .*\(R,\) with R == shape\[0\].*got \[2\] for shape \[3, 4\]"):
        op(torch.tensor([1, 2]), o, [3, 4], 0)
    with pytest.raises(RuntimeError, match=r"seed: a per-row seed of shape \[2\] needs a shape with at least one"):
        op(torch.tensor([1, 2]), o, [], 0)
    with pytest.raises(RuntimeError, match="seed: expected an int64"):
        op(torch.tensor([1, 2], dtype=torch.int32), o, [2, 3], 0)
    with pytest.raises(RuntimeError, match="seed"):
        op(torch.tensor([[1], [2]]), o, [2, 1], 0)


def test_opcheck_per_row():
    require("cpu", "philox_uniforms")
    seeds = torch.tensor(row_seeds(random.Random(21), 3), dtype=torch.int64)
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default, (seeds, torch.tensor(7), [3, 5], 2))
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default, (seeds, torch.tensor([7]), [3, 0, 2], 2))


@pytest.mark.cuda
def test_opcheck_per_row_cuda():
    require("cuda", "philox_uniforms")
    seeds = torch.tensor(row_seeds(random.Random(22), 4), dtype=torch.int64, device="cuda")
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default,
                          (seeds, torch.tensor(7, device="cuda"), [4, 7, 3], 1))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_replay_per_row(backend):
    """Per-row seeds in a captured graph: each replay draws every row at the next offset, seeds read on device."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    require(backend, "philox_uniforms")
    seeds = row_seeds(random.Random(9), 3)
    offset = fresh_key(random.Random(10))[1]
    rng = DeviceRNG(seeds, "cuda", offset=offset, backend=backend)
    shape = (3, 1001)
    graph, out = _captured_draw_and_advance(rng, shape)
    graph.replay()
    first = out.clone()
    rng.seed[1] = seeds[0]  # a new seed written on the device is read by the next replay
    graph.replay()
    second = out.clone()
    torch.cuda.synchronize()
    ref = lambda s, o: reference.philox_uniforms(torch.tensor(s), torch.tensor(o), shape, STREAM_ACCEPT)
    assert torch.equal(first.cpu(), ref(seeds, offset))
    assert torch.equal(second.cpu(), ref([seeds[0], seeds[0], seeds[2]], offset + 1))


# ------------------------------------------------------------------------------------------------ per-row offsets
# offset of shape (R,), R == shape[0]: row r is the draw of (seed_r, offset[r]) over shape[1:], with seed_r the
# row's seed (per-row seeds) or the one seed (reference/philox.py, Rows).
EDGE_OFFSETS = (0, 2**32, -1, -2**63, 2**63 - 1, 2**32 - 1)


def row_offsets(rng: random.Random, rows: int) -> list[int]:
    """Per-row int64 offsets: edge values first (0, 2**32, negative bit patterns), then random ones past 2**32."""
    return [EDGE_OFFSETS[r] if r < len(EDGE_OFFSETS) else fresh_key(rng)[1] for r in range(rows)]


def seed_layouts(rng: random.Random, rows: int):
    """(name, seed tensor, seed_r) for per-row seeds and for one shared seed as () and (1,)."""
    seeds, one = row_seeds(rng, rows), fresh_key(rng)[0]
    return [("per-row seeds", torch.tensor(seeds, dtype=torch.int64), lambda r: seeds[r]),
            ("one seed ()", torch.tensor(one), lambda r: one), ("one seed (1,)", torch.tensor([one]), lambda r: one)]


@pytest.mark.parametrize("backend", backend_params("philox_uniforms", include_reference=True))
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_per_row_offsets_match_reference(backend, shape):
    """Per-row offsets, with per-row seeds or one seed: == the reference, and row r == the single-row draw
    philox_uniforms(seed_r, offset[r], shape[1:])."""
    device = require(backend, "philox_uniforms")
    rng = random.Random(zlib.crc32(repr(("offsets", backend, shape)).encode()))
    offsets = torch.tensor(row_offsets(rng, shape[0]), dtype=torch.int64)
    for name, seed, seed_r in seed_layouts(rng, shape[0]):
        for stream in (STREAM_RESIDUAL, 2**32 - 1):
            want = reference.philox_uniforms(seed, offsets, shape, stream)
            got = ops.philox_uniforms(seed.to(device), offsets.to(device), shape, stream, backend=backend)
            assert got.dtype == torch.float32 and got.shape == torch.Size(shape) and got.device.type == device.type
            assert torch.equal(got.cpu(), want), f"{backend} differs: {name} {shape=} {stream=}"
            for r in range(shape[0]):
                one = reference.philox_uniforms(torch.tensor(seed_r(r)), offsets[r], shape[1:], stream)
                assert torch.equal(want[r], one), f"{name}: row {r} is not the draw of (seed_r, offset[{r}])"


@pytest.mark.parametrize("backend", backend_params("philox_uniforms", include_reference=True))
def test_per_row_offsets_strided_and_shared_rows(backend):
    """A strided offset view reads offset[r]; an offset expanded to (R,) (stride 0), or rows with equal offsets,
    draw what one shared offset draws."""
    device = require(backend, "philox_uniforms")
    rng = random.Random(32)
    base = torch.tensor(row_offsets(rng, 12), dtype=torch.int64)
    seeds = torch.tensor(row_seeds(rng, 4), dtype=torch.int64)
    got = ops.philox_uniforms(seeds.to(device), base.to(device)[::3], (4, 11), 1, backend=backend).cpu()
    assert torch.equal(got, reference.philox_uniforms(seeds, base[::3].contiguous(), (4, 11), 1))
    shared = reference.philox_uniforms(seeds, base[5], (4, 11), 1)
    for offsets in (base[5].expand(4), torch.full((4,), int(base[5]), dtype=torch.int64)):
        got = ops.philox_uniforms(seeds.to(device), offsets.to(device), (4, 11), 1, backend=backend).cpu()
        assert torch.equal(got, shared)


@pytest.mark.parametrize("backend", backend_params("philox_uniforms"))
def test_per_row_offsets_large_and_many_rows(backend):
    """Per-row offsets over long rows and more rows than one CUDA grid holds along y (65535)."""
    device = require(backend, "philox_uniforms")
    interpreted = backend == "triton" and device.type == "cpu"
    if device.type == "cuda":
        shapes = [(8, 125_001), (70_001, 3)]
    else:
        shapes = [(3, 2_001)] if interpreted else [(8, 25_001), (4_097, 3)]
    rng = random.Random(61)
    for shape in shapes:
        offsets = torch.tensor(row_offsets(rng, shape[0]), dtype=torch.int64)
        for seed in (torch.tensor(fresh_key(rng)[0]), torch.tensor(row_seeds(rng, shape[0]), dtype=torch.int64)):
            want = reference.philox_uniforms(seed, offsets, shape, STREAM_ACCEPT)
            got = ops.philox_uniforms(seed.to(device), offsets.to(device), shape, STREAM_ACCEPT, backend=backend)
            assert torch.equal(got.cpu(), want), f"{backend} differs at {shape=}"


def test_triton_per_row_offsets_beyond_one_grid(monkeypatch):
    """Triton's launches of MAX_GRID_ROWS rows read each row's offset (and seed) at its own row."""
    device = require("triton", "philox_uniforms")
    from hawk_kernels.ops.triton import philox as triton_philox

    monkeypatch.setattr(triton_philox, "MAX_GRID_ROWS", 2)
    rng = random.Random(42)
    offsets = torch.tensor(row_offsets(rng, 5), dtype=torch.int64)
    for seed in (torch.tensor(7), torch.tensor(row_seeds(rng, 5), dtype=torch.int64)):
        got = ops.philox_uniforms(seed.to(device), offsets.to(device), (5, 7), 3, backend="triton")
        assert torch.equal(got.cpu(), reference.philox_uniforms(seed, offsets, (5, 7), 3))


def test_per_row_offsets_bad_inputs_name_the_argument():
    s = torch.tensor(1)
    with pytest.raises(ValueError, match=r"offset: .*\(one offset\) or \(R,\) with R == shape\[0\] = 3 \(one offset per "
                                         r"row\), got shape \(2,\)"):
        ops.philox_uniforms(s, torch.tensor([1, 2]), (3, 4))
    with pytest.raises(ValueError, match=r"offset: .*R == shape\[0\] = 3.*got shape \(2,\)"):
        ops.philox_uniforms(torch.tensor([1, 2, 3]), torch.tensor([1, 2]), (3, 4))  # per-row seed and offset: one R
    with pytest.raises(ValueError, match=r"seed: .*R == shape\[0\] = 3.*got shape \(2,\)"):
        ops.philox_uniforms(torch.tensor([1, 2]), torch.tensor([1, 2, 3]), (3, 4))
    with pytest.raises(ValueError, match=r"offset: a per-row offset of shape \(2,\) needs a shape with at least one"):
        ops.philox_uniforms(s, torch.tensor([1, 2]), ())
    with pytest.raises(ValueError, match=r"offset: .*got shape \(0,\)"):
        ops.philox_uniforms(s, torch.zeros(0, dtype=torch.int64), (3,))
    with pytest.raises(ValueError, match=r"offset: .*got shape \(2, 1\)"):
        ops.philox_uniforms(s, torch.tensor([[1], [2]]), (2, 1))
    with pytest.raises(TypeError, match="offset.*int64"):
        ops.philox_uniforms(s, torch.tensor([1, 2], dtype=torch.int32), (2, 3))


def test_cpu_op_per_row_offset_checks_without_wrapper_validation():
    require("cpu", "philox_uniforms")
    s = torch.tensor(1)
    op = torch.ops.hawk.philox_uniforms
    with pytest.raises(RuntimeError, match=r"offset: .*\(R,\) with R == shape\[0\].*got \[2\] for shape \[3, 4\]"):
        op(s, torch.tensor([1, 2]), [3, 4], 0)
    with pytest.raises(RuntimeError, match=r"offset: .*got \[2\] for shape \[3, 4\]"):
        op(torch.tensor([1, 2, 3]), torch.tensor([1, 2]), [3, 4], 0)
    with pytest.raises(RuntimeError, match=r"offset: a per-row offset of shape \[2\] needs a shape with at least one"):
        op(s, torch.tensor([1, 2]), [], 0)
    with pytest.raises(RuntimeError, match="offset: expected an int64"):
        op(s, torch.tensor([1, 2], dtype=torch.int32), [2, 3], 0)
    with pytest.raises(RuntimeError, match="offset"):
        op(s, torch.tensor([[1], [2]]), [2, 1], 0)


def test_opcheck_per_row_offsets():
    require("cpu", "philox_uniforms")
    offsets = torch.tensor(row_offsets(random.Random(23), 3), dtype=torch.int64)
    seeds = torch.tensor(row_seeds(random.Random(24), 3), dtype=torch.int64)
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default, (torch.tensor(7), offsets, [3, 5], 2))
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default, (seeds, offsets, [3, 0, 2], 2))


@pytest.mark.cuda
def test_opcheck_per_row_offsets_cuda():
    require("cuda", "philox_uniforms")
    offsets = torch.tensor(row_offsets(random.Random(25), 4), dtype=torch.int64, device="cuda")
    torch.library.opcheck(torch.ops.hawk.philox_uniforms.default,
                          (torch.tensor(7, device="cuda"), offsets, [4, 7, 3], 1))


@pytest.mark.parametrize("backend", backend_params("philox_uniforms", include_reference=True))
def test_device_rng_per_row_offsets(backend):
    """offset as R ints or an (R,) tensor: held as an (R,) tensor; advance adds to every row; writing a row of
    rng.offset (rng.seed) in place restarts that row (gives it a new key), as a fresh DeviceRNG would draw it."""
    device = require(backend, "philox_uniforms")
    rng_py = random.Random(78)
    seeds, offsets = row_seeds(rng_py, 3), row_offsets(rng_py, 6)[3:]  # -2**63, 2**63 - 1, 2**32 - 1
    alone = lambda seed, offset: DeviceRNG(seed, device, offset=offset, backend=backend).uniforms((5, 3), 2).cpu()
    for given in (offsets, torch.tensor(offsets, dtype=torch.int64)):
        rng = DeviceRNG(seeds, device, offset=given, backend=backend)
        assert rng.offset.shape == (3,) and rng.offset.tolist() == offsets and rng.rows == 3
        got = rng.uniforms((3, 5, 3), 2).cpu()
        assert torch.equal(got, reference.philox_uniforms(torch.tensor(seeds), torch.tensor(offsets), (3, 5, 3), 2))
        assert all(torch.equal(got[r], alone(seeds[r], offsets[r])) for r in range(3))
        held = rng.offset
        rng.advance(3)
        assert rng.offset is held and rng.offset.tolist() == [(o + 3 + 2**63) % 2**64 - 2**63 for o in offsets]
        rng.offset[1] = 0  # row 1 restarts its step count
        rng.seed[2] = 99  # row 2 takes a new key
        got = rng.uniforms((3, 5, 3), 2).cpu()
        assert torch.equal(got[0], alone(seeds[0], offsets[0] + 3))
        assert torch.equal(got[1], alone(seeds[1], 0)) and torch.equal(got[2], alone(99, offsets[2] + 3))
    t = torch.tensor(offsets, dtype=torch.int64)
    assert DeviceRNG(seeds, "cpu", offset=t).offset.data_ptr() != t.data_ptr()  # copied
    assert DeviceRNG(seeds, "cpu", offset=torch.tensor([5])).offset.dim() == 0  # (1,): one offset


def test_device_rng_per_row_offsets_bad_inputs():
    with pytest.raises(ValueError, match=r"offset: one offset per row needs as many per-row seeds; got 2 offsets "
                                         r"for one key"):
        DeviceRNG(1, "cpu", offset=[0, 0])
    with pytest.raises(ValueError, match=r"offset: .*got 2 offsets for 3 per-row seeds"):
        DeviceRNG([1, 2, 3], "cpu", offset=torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"offset: .*got 0 offsets"):
        DeviceRNG([1, 2, 3], "cpu", offset=[])
    with pytest.raises(ValueError, match=r"offset\[1\]"):
        DeviceRNG([1, 2], "cpu", offset=[0, 2**64])
    with pytest.raises(TypeError, match=r"offset\[0\]"):
        DeviceRNG([1, 2], "cpu", offset=[0.5, 1])
    with pytest.raises(ValueError, match=r"offset: .*got shape \(2, 1\)"):
        DeviceRNG([1, 2], "cpu", offset=torch.tensor([[0], [1]]))
    with pytest.raises(TypeError, match="offset.*int64"):
        DeviceRNG([1, 2], "cpu", offset=torch.tensor([0, 1], dtype=torch.int32))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_replay_per_row_offsets(backend):
    """Per-row offsets in a captured graph: each replay advances every row; a row's offset written on the device
    between replays restarts that row at the next replay."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    require(backend, "philox_uniforms")
    seeds, offsets = row_seeds(random.Random(11), 3), row_offsets(random.Random(12), 3)
    rng = DeviceRNG(seeds, "cuda", offset=offsets, backend=backend)
    shape = (3, 1001)
    graph, out = _captured_draw_and_advance(rng, shape)
    graph.replay()
    first = out.clone()
    rng.offset[1] = 0
    graph.replay()
    second = out.clone()
    torch.cuda.synchronize()
    ref = lambda o: reference.philox_uniforms(torch.tensor(seeds), torch.tensor(o), shape, STREAM_ACCEPT)
    assert torch.equal(first.cpu(), ref(offsets))
    assert torch.equal(second.cpu(), ref([offsets[0] + 1, 0, offsets[2] + 1]))
    assert rng.offset.tolist() == [offsets[0] + 2, 1, offsets[2] + 2]
