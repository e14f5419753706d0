"""num_nodes="auto" (hawk_kernels/tree_size.py): the expected tokens per pass of a tree from its rates, the
on-disk step-cost table, and the choice (AR when drafting does not pay)."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels import tree_size
from hawk_kernels.tree import TreeTemplate
from hawk_kernels.target import SamplingConfig
from hawk_kernels.tree_size import (CANDIDATE_SIZES, SizeChoice, StepCostTable, choose_num_nodes, expected_batch_passes,
                                    expected_tokens_per_pass, step_form, step_key)
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads


def test_expected_tokens_per_pass_in_closed_form():
    chain = TreeTemplate.from_paths([(0,), (0, 0), (0, 0, 0)])
    assert expected_tokens_per_pass(chain, lambda depth, rank: 0.5) == pytest.approx(1 + 0.5 + 0.25 + 0.125)
    siblings = TreeTemplate.from_paths([(0,), (1,), (0, 0)])
    rates = [[0.6, 0.3], [0.5]]  # depth 1: ranks 0, 1; depth 2: rank 0
    assert expected_tokens_per_pass(siblings, rates) == pytest.approx(1 + 0.6 + 0.3 + 0.6 * 0.5)
    assert expected_tokens_per_pass(TreeTemplate.from_paths([]), rates) == 1.0  # root only: AR


def test_batch_passes_are_the_slowest_rows():
    """The simulation agrees with the closed form for one row, and a batch waits for its slowest row."""
    chain = TreeTemplate.from_paths([(0,), (0, 0), (0, 0, 0)])
    rate = lambda depth, rank: 0.5  # noqa: E731
    one = expected_batch_passes(chain, rate, 2000, batch=1, sims=32)
    assert 2000 / one == pytest.approx(expected_tokens_per_pass(chain, rate), rel=0.02)
    assert expected_batch_passes(chain, rate, 200, batch=64, sims=16) > expected_batch_passes(chain, rate, 200, 1)
    assert expected_batch_passes(TreeTemplate.from_paths([]), rate, 50, batch=8) == 50  # AR: one token a pass


def test_step_costs_are_measured_once_and_kept_on_disk(tmp_path):
    path = tmp_path / "costs" / "step_costs.json"
    calls = []
    table = StepCostTable(path)
    assert table.seconds("k", lambda: calls.append(1) or 0.25) == 0.25
    assert table.seconds("k", lambda: calls.append(1) or 9.0) == 0.25 and len(calls) == 1
    assert json.loads(path.read_text()) == {"k": 0.25}
    assert StepCostTable(path).seconds("k", lambda: 9.0) == 0.25  # a new process reads it back
    path.write_text("{not json")
    assert StepCostTable(path).seconds("k", lambda: 0.5) == 0.5  # an unreadable table is measured again
    for value in ("fast", None, -1.0, 0, True, [0.1]):  # a hand-edited value that is no cost: measured again
        path.write_text(json.dumps({"k": value}))
        assert StepCostTable(path).seconds("k", lambda: 0.75) == 0.75
        assert StepCostTable(path).lower("k", 0.5) == 0.5
    path.write_text('["a list"]')
    assert StepCostTable(path).seconds("k", lambda: 0.5) == 0.5  # a table that is no JSON object: as unreadable


def test_a_file_system_that_refuses_locks_still_keeps_the_table(tmp_path, monkeypatch):
    """Some network homes refuse flock (ENOLCK): the table is measured, saved and read back without the lock, not
    a crash of the user's generation."""
    import errno
    import fcntl

    def refuse(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    path = tmp_path / "step_costs.json"
    assert StepCostTable(path).seconds("k", lambda: 0.25) == 0.25
    assert StepCostTable(path).seconds("k", lambda: 9.0) == 0.25 and json.loads(path.read_text()) == {"k": 0.25}


def _decoder_for(n, compile=False):
    model, grid = tiny_backbone(), tiny_grid()
    if n == 1:
        return hk.HawkDecoder(model, None, grid, mode="ar", compile=compile)
    return hk.HawkDecoder(model, tiny_heads(), grid, mode="hawk", num_nodes=n, compile=compile)


CFG2 = SamplingConfig(2.0)  # the tests' sampling: CFG 2, temperature 1


def _key(n, batch=2, sampling=CFG2):
    decoder = _decoder_for(n)
    return step_key(decoder.backbone.device, "tiny", "hawk", n, batch, sampling, step_form(decoder))


@pytest.mark.parametrize("step_cost, expected", [(lambda n: 1.0, 16), (lambda n: 1.0 if n == 1 else 10.0 * n, 1)])
def test_the_choice_maximises_tokens_per_second(tmp_path, step_cost, expected):
    """Free nodes: the biggest tree wins; a tree costing many AR steps: AR (size 1) wins. The costs come from the
    table (prefilled here), so nothing is timed."""
    table = StepCostTable(tmp_path / "t.json")
    sizes = (1, 4, 16)
    for n in sizes:
        table.costs[_key(n)] = step_cost(n)
    choice = choose_num_nodes(_decoder_for, "hawk", [[0.9, 0.5]] * 8, 2, CFG2, "tiny", table, sizes)
    assert isinstance(choice, SizeChoice) and choice.num_nodes == expected
    assert choice.estimates[1]["relative_speed"] == 1.0


def test_a_tree_within_the_timing_noise_of_ar_is_not_chosen(tmp_path):
    """A tree predicted only a few percent faster than AR may be slower (the step costs are timed with ~10% noise):
    AR is kept unless the best tree's predicted speed is more than TREE_MARGIN of AR's."""
    table = StepCostTable(tmp_path / "t.json")
    rates = [[0.9, 0.5]] * 8
    table.costs[_key(1)] = 1.0
    for n, expected in ((4, 1), (16, 16)):
        table.costs[_key(n)] = 1.0  # nothing is timed: every cost comes from the table
        tokens = choose_num_nodes(_decoder_for, "hawk", rates, 2, CFG2, "tiny", table, (1, n)).estimates[n][
            "tokens_per_pass"]
        gain = 1.05 if expected == 1 else 1.2  # predicted speed over AR's
        table.costs[_key(n)] = tokens / gain
        choice = choose_num_nodes(_decoder_for, "hawk", rates, 2, CFG2, "tiny", table, (1, n))
        assert choice.estimates[n]["relative_speed"] == pytest.approx(gain)
        assert choice.num_nodes == expected, (n, gain)
    assert tree_size.TREE_MARGIN == pytest.approx(1 / tree_size.COST_NOISE)


def test_refilled_rows_count_a_mean_rows_passes(tmp_path):
    """With rows refilled as they finish (continuous batching), an image costs a mean row's passes; a fixed batch
    waits for its slowest row, so the same tree commits fewer tokens per pass of the batch."""
    table = StepCostTable(tmp_path / "t.json")
    for n in (1, 4, 16):
        table.costs[_key(n, batch=16)] = 1.0
    rates = [[0.7, 0.3]] * 8
    fixed = choose_num_nodes(_decoder_for, "hawk", rates, 16, CFG2, "tiny", table, (1, 4, 16))
    refilled = choose_num_nodes(_decoder_for, "hawk", rates, 16, CFG2, "tiny", table, (1, 4, 16), continuous=True)
    for n in (4, 16):
        assert refilled.estimates[n]["tokens_per_pass"] > 1.05 * fixed.estimates[n]["tokens_per_pass"], n
    assert refilled.estimates[1]["tokens_per_pass"] == fixed.estimates[1]["tokens_per_pass"] == 1.0


def test_a_size_that_cannot_win_is_not_measured(tmp_path):
    """Sizes are tried smallest first; a bigger tree costs at least the largest cost measured so far, so a size
    whose tokens per pass cannot beat the best speed at that cost is not measured (nor compiled, on a GPU)."""
    table = StepCostTable(tmp_path / "t.json")
    table.costs[_key(1)], table.costs[_key(4)] = 1.0, 50.0  # a 4-node step costs 50 AR steps
    choice = choose_num_nodes(_decoder_for, "hawk", [[0.9, 0.5]] * 8, 2, CFG2, "tiny", table, (1, 4, 16))
    assert choice.num_nodes == 1
    assert choice.estimates[16]["seconds_per_step"] is None and "not_measured" in choice.estimates[16]
    assert set(table.costs) == {_key(1), _key(4)}  # nothing was timed
    table.costs[_key(4)] = 1.0  # free nodes: 16 may win, so it is measured
    choice = choose_num_nodes(_decoder_for, "hawk", [[0.9, 0.5]] * 8, 2, CFG2, "tiny", table, (1, 4, 16))
    assert _key(16) in table.costs and choice.estimates[16]["seconds_per_step"] > 0


def test_a_cost_is_kept_per_step_form():
    """An eager step's cost is never used for a compiled (or regional) one: the form is in the key."""
    keys = {step_key(torch.device("cpu"), "tiny", "hawk", 4, 2, CFG2, step_form(_decoder_for(4, compile)))
            for compile in (False, True, "regional")}
    assert len(keys) == 3
    assert "eager" in step_form(_decoder_for(4)) and "dense attention" in step_form(_decoder_for(4))


def test_a_real_measurement_is_cached(tmp_path, capsys):
    table = StepCostTable(tmp_path / "t.json")
    choice = choose_num_nodes(_decoder_for, "hawk", None, 1, CFG2, "tiny", table, (1, 4))
    assert choice.num_nodes in (1, 4) and len(table.costs) == 2
    assert all(v > 0 for v in table.costs.values())
    assert capsys.readouterr().err == ""  # eager timing is quick: nothing said


def test_timing_compiled_steps_is_said_while_it_happens(tmp_path, capsys, monkeypatch):
    """Each size of a compiled step compiles before it is timed (minutes at the 7B shape on a GPU): said on stderr,
    once per choice, with each size's cost; nothing when the costs come from the table."""
    monkeypatch.setattr(tree_size, "measure_step_seconds", lambda *args, **kwargs: 0.01)  # no compile here
    table = StepCostTable(tmp_path / "t.json")
    compiled = lambda n: _decoder_for(n, compile=True)  # noqa: E731
    choose_num_nodes(compiled, "hawk", None, 1, CFG2, "tiny", table, (1, 4))
    said = capsys.readouterr().err
    assert said.count("num_nodes='auto' is timing hawk steps at batch 1 (compiled") == 1, said
    assert f"every size uncompiled, then at most {tree_size.MAX_COMPILED} compiled, each compiling first" in said
    assert "4 nodes: 10.00 ms per step" in said
    choose_num_nodes(compiled, "hawk", None, 1, CFG2, "tiny", table, (1, 4))
    assert capsys.readouterr().err == ""  # read from the table: nothing to say
    assert torch.get_num_threads() >= 1


SIZES = (1, 4, 8, 16, 32, 64)
RATES = [[0.9, 0.5]] * 64  # long chains pay: tokens per pass grows with the tree up to 64 nodes


@pytest.mark.parametrize("uncompiled, compiled", [
    # compiling takes away overhead that does not grow with the tree (more of it for a tree than for AR)
    (lambda n: 2.4 if n == 1 else 4.0 + 0.06 * n, lambda n: 1.0 if n == 1 else 1.4 + 0.06 * n),
    # the same, with steps whose cost grows faster than the tree (the uncompiled form alone would favour 64)
    (lambda n: 10.0 if n == 1 else 14.0 + 0.002 * n ** 2, lambda n: 1.0 if n == 1 else 1.3 + 0.002 * n ** 2),
    # trees never pay: AR, after compiling AR and one tree
    (lambda n: 1.0 if n == 1 else 5.0 * n, lambda n: 1.0 if n == 1 else 3.0 * n),
    # flat costs (a GPU far from its compute bound): the biggest tree
    (lambda n: 10.0 + 0.001 * n, lambda n: 4.0 + 0.001 * n),
])
def test_a_compiled_step_is_screened_uncompiled_and_few_sizes_compile(tmp_path, monkeypatch, uncompiled, compiled):
    """Where the step compiles, "auto" times every size uncompiled (no compile) and compiles at most MAX_COMPILED
    sizes (AR first), yet chooses the size a compiled sweep of every size would."""
    decoders = {n: _decoder_for(n, compile=True) for n in SIZES}
    size_of = {id(d): n for n, d in decoders.items()}
    timed = []

    def fake_measure(decoder, batch, sampling, prompt_length=4, compiled=True):
        timed.append((size_of[id(decoder)], compiled))
        return (compiled_cost if compiled else uncompiled)(size_of[id(decoder)])

    compiled_cost = compiled
    monkeypatch.setattr(tree_size, "measure_step_seconds", fake_measure)
    choice = choose_num_nodes(decoders.__getitem__, "hawk", RATES, 1, CFG2, "tiny", StepCostTable(tmp_path / "t.json"),
                              SIZES)
    compiled_sizes = [n for n, form in timed if form]
    assert sorted(n for n, form in timed if not form) == list(SIZES)  # the screen: every size, once
    assert compiled_sizes[0] == 1 and len(set(compiled_sizes)) <= tree_size.MAX_COMPILED, timed
    speeds = {n: choice.estimates[n]["tokens_per_pass"] / compiled(n) for n in SIZES}
    best = max(speeds, key=speeds.get)
    assert choice.num_nodes == (best if speeds[best] >= tree_size.TREE_MARGIN * speeds[1] else 1), choice.estimates
    for n in SIZES:  # what was not compiled says so, with its prediction; nothing is chosen from a prediction
        estimate = choice.estimates[n]
        assert estimate["uncompiled_seconds_per_step"] == uncompiled(n)
        assert (estimate["seconds_per_step"] is None) == (n not in compiled_sizes) == ("not_measured" in estimate)
    timed.clear()  # a second call reads every cost it needs from the table: nothing timed, the same size
    again = choose_num_nodes(decoders.__getitem__, "hawk", RATES, 1, CFG2, "tiny", StepCostTable(tmp_path / "t.json"),
                             SIZES)
    assert timed == [] and again.num_nodes == choice.num_nodes
    table = StepCostTable(tmp_path / "t.json")  # every size compiled before (an earlier sweep): the best of them,
    for n in SIZES:                             # free, whatever the predictions say
        table.costs[_key(n, 1)] = uncompiled(n)
        table.costs[step_key(torch.device("cpu"), "tiny", "hawk", n, 1, CFG2, step_form(decoders[n]))] = compiled(n)
    known = choose_num_nodes(decoders.__getitem__, "hawk", RATES, 1, CFG2, "tiny", table, SIZES)
    assert timed == [] and all(known.estimates[n]["seconds_per_step"] == compiled(n) for n in SIZES)
    assert known.num_nodes == (best if speeds[best] >= tree_size.TREE_MARGIN * speeds[1] else 1)


class _CurveTimer:
    """_screened's timer over made-up step costs: uncompiled = the compiled step's work + an overhead constant
    (AR's, or a larger one for every tree), each cost read MODEL_ERROR off that model and off the timing."""

    def __init__(self, rng):
        ar = rng.uniform(0.5, 2.0)
        jump, slope, power = rng.uniform(0, 0.8) * ar, rng.uniform(5e-4, 0.1) * ar, rng.uniform(0.8, 1.3)
        work = {n: ar if n == 1 else ar + jump + slope * n ** power for n in SIZES}
        ar_overhead = rng.uniform(0, 3) * ar
        tree_overhead = ar_overhead + rng.uniform(0, 1.5) * ar
        off = lambda: rng.uniform(1 - MODEL_ERROR, 1 + MODEL_ERROR)  # noqa: E731
        self.compiled = {n: work[n] * off() for n in SIZES}
        self.uncompiled = {n: (work[n] + (ar_overhead if n == 1 else tree_overhead)) * off() for n in SIZES}

    compiled_timings = 0

    def known(self, candidate):
        return False  # a first choice: nothing in the table

    def seconds(self, candidate, compiled=True):
        self.compiled_timings += compiled
        return (self.compiled if compiled else self.uncompiled)[candidate.size]


MODEL_ERROR = 0.03


def test_the_screen_finds_the_best_compiled_size_on_random_cost_curves():
    """_screened on 2,000 random cost curves (the uncompiled cost = the compiled step's work + an overhead that
    does not grow with the tree, larger for trees than for AR; every cost 3% off that model) and random acceptance
    (tokens per pass saturating in the tree size): the size it chooses is the best of a compiled sweep of every
    size in at least 97% of them and at least 0.9x its speed in all, with at most 3 compiles on average (the
    numbers tree_size._screened's docstring gives)."""
    rng = random.Random(0)
    ratios, compiles = [], []
    for _ in range(2000):
        top, half = rng.uniform(1.5, 10), rng.uniform(2, 40)
        candidates = [tree_size._Candidate(n, None, 1 + (top - 1) * (n - 1) / (n - 1 + half)) for n in SIZES]
        timer = _CurveTimer(rng)
        estimates = tree_size._screened(candidates, timer)
        timed = {n: e for n, e in estimates.items() if e["seconds_per_step"] is not None}
        assert all(timer.compiled[n] == e["seconds_per_step"] for n, e in timed.items())
        speed = {c.size: c.tokens / timer.compiled[c.size] for c in candidates}
        chosen = max(timed, key=lambda n: speed[n])
        ratios.append(speed[chosen] / max(speed.values()))
        compiles.append(len(timed))
    assert min(ratios) >= 0.9 and sum(r == 1.0 for r in ratios) >= 0.97 * len(ratios), sorted(ratios)[:20]
    assert max(compiles) <= tree_size.MAX_COMPILED and sum(compiles) / len(compiles) <= 3.0


def test_a_compiled_decoder_screens_without_compiling():
    """measure_step_seconds(compiled=False) steps a compiled decoder's state with the eager step: nothing compiles,
    and the cost is keyed as an eager decoder's (the two share it)."""
    decoder = _decoder_for(4, compile=True)
    assert tree_size.measure_step_seconds(decoder, 1, CFG2, warmup=1, steps=2, compiled=False) > 0
    assert decoder.compiled_step.compile_seconds == 0.0
    assert step_form(decoder, compiled=False) == step_form(_decoder_for(4)) != step_form(decoder)


@pytest.mark.slow
def test_a_first_auto_call_of_a_compiled_pipeline_compiles_few_sizes(tmp_path, monkeypatch):
    """The real path, outside CI (each compile takes 15-40 s here): the bundled pipeline with compile=True, a first
    "auto" call on an empty cost table compiles at most MAX_COMPILED decoders, the size it chooses among them, and
    its image is AR's of the seed (the coupled rule), eager and uncompiled."""
    monkeypatch.setenv("HAWK_CACHE_DIR", str(tmp_path))
    pipe = hk.load_demo_pipeline(device="cpu", compile=True)
    out = pipe.generate(["a handwritten digit seven"], mode="hawk+jacobi", seed=3, num_nodes="auto")
    compiled = {key[2] for key, decoder in pipe._decoders.items() if decoder.compiled_step.compile_seconds > 0}
    assert 1 in compiled and out.num_nodes[0] in compiled and len(compiled) <= tree_size.MAX_COMPILED, compiled
    eager = hk.load_demo_pipeline(device="cpu", compile=False)
    reference = eager.generate(["a handwritten digit seven"], mode="ar", seed=3, num_nodes=1)
    assert torch.equal(out.image_tokens, reference.image_tokens)


@pytest.mark.cuda
def test_the_screen_is_graphed_and_compiles_nothing_on_cuda(monkeypatch):
    """On a GPU the screen of a compiled decoder replays the eager step from a CUDA graph (the form whose cost it
    keys) and compiles nothing."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from hawk_kernels.engine import graphs
    captured = []
    capture = graphs.StepRunner._capture
    monkeypatch.setattr(graphs.StepRunner, "_capture", lambda runner: captured.append(1) or capture(runner))
    decoder = hk.load_demo_pipeline(device="cuda", compile=True).decoder("hawk+jacobi", num_nodes=16)
    assert tree_size.measure_step_seconds(decoder, 2, SamplingConfig(3.0), compiled=False) > 0
    assert captured == [1] and decoder.compiled_step.compile_seconds == 0.0
    assert step_form(decoder, compiled=False).startswith("eager, graphs")


@pytest.mark.parametrize("continuous, uncalibrated", [(0, False), (2, False), (0, True)])
def test_tree_size_benchmark_smoke(tmp_path, continuous, uncalibrated):
    """benchmarks/tree_size.py runs (its CPU smoke form, fixed batches and continuous sessions; with the bundled
    rates, or without them, weighing sizes by the acceptance measured on the model) and writes its JSON."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "benchmarks/tree_size.py", "--smoke", "--out", str(tmp_path), "--continuous",
                    str(continuous)] + ["--uncalibrated"] * uncalibrated, cwd=root, check=True,
                   capture_output=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    name = f"tree_size_continuous{continuous}.json" if continuous else "tree_size.json"
    name = name.replace(".json", "_uncalibrated.json") if uncalibrated else name
    rows = json.loads((tmp_path / name).read_text())["rows"]
    assert rows and rows[0]["auto_num_nodes"] in (1, 4) and rows[0]["auto_vs_ar"] > 0
    assert rows[0]["continuous_images_per_row"] == continuous
    assert rows[0]["rates_from"] == ("measured on this model (2 images)" if uncalibrated else
                                     "calibrated with the heads")


def test_pipelines_choose_per_batch_and_record_the_size():
    """The pipelines' default num_nodes="auto": the chosen size is in the output, per image, and passing it back
    reproduces the images; an explicit size and 1 (a plain AR step, in any mode) are kept as given."""
    pipe = hk.load_demo_pipeline(device="cpu")
    prompts = ["a handwritten digit seven", "the number 3"]
    auto = pipe.generate(prompts, mode="hawk", seed=3)
    assert len(auto.num_nodes) == 2 and auto.num_nodes[0] in CANDIDATE_SIZES
    again = pipe.generate(prompts, mode="hawk", seed=3, num_nodes=auto.num_nodes[0])
    assert torch.equal(again.image_tokens, auto.image_tokens) and again.num_nodes == auto.num_nodes
    one = pipe.generate(prompts, mode="hawk", seed=3, num_nodes=1)
    ar = pipe.generate(prompts, mode="ar", seed=3)
    assert one.num_nodes == [1, 1] and torch.equal(one.image_tokens, ar.image_tokens)
    with pytest.raises(ValueError, match="num_nodes"):
        pipe.generate(prompts, mode="hawk", num_nodes=0)


def test_auto_times_each_size_at_the_real_calls_cache_size(tmp_path, monkeypatch):
    """A compiled step compiles once per cache size: "auto" times each tree size with prompts as long as the real
    call's, so the step compiled for the chosen size is the one the real call runs. Capacities exact here
    (CAPACITY_MULTIPLE 1), so any other prompt length would show."""
    from hawk_kernels.backbones import kv_cache

    monkeypatch.setenv("HAWK_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(kv_cache, "CAPACITY_MULTIPLE", 1)
    pipe = hk.load_demo_pipeline(device="cpu")
    started, real_start = [], hk.HawkDecoder.start

    def start(self, *args, **kwargs):
        session = real_start(self, *args, **kwargs)
        started.append((self, session.state.cache.capacity))
        return session

    monkeypatch.setattr(hk.HawkDecoder, "start", start)
    pipe.generate(["a handwritten drawing of a picture of an image of the number seven"] * 2, mode="hawk", seed=1)
    *timed, (decoder, capacity) = started  # the timing sessions, then the real call's
    assert (decoder, capacity) in timed, (capacity, [c for d, c in timed if d is decoder])


def test_a_cost_is_kept_per_sampling_that_changes_the_step():
    """Greedy or sampled, re-tempered drafts, top-k's k, top-p on or off and CFG on or off change the step's code
    (and cost); the values of CFG, temperature and top-p do not (tensors the same step reads)."""
    form = step_form(_decoder_for(4))
    key = lambda **kw: step_key(torch.device("cpu"), "tiny", "hawk", 4, 2, SamplingConfig(**kw), form)  # noqa: E731
    differing = [dict(cfg_scale=2.0), dict(cfg_scale=1.0), dict(cfg_scale=2.0, temperature=0),
                 dict(cfg_scale=2.0, temperature=0.7), dict(cfg_scale=2.0, top_k=5), dict(cfg_scale=2.0, top_k=6),
                 dict(cfg_scale=2.0, top_p=0.9)]
    assert len({key(**kw) for kw in differing}) == len(differing)
    assert key(cfg_scale=2.0) == key(cfg_scale=3.0)
    assert key(cfg_scale=2.0, temperature=0.7) == key(cfg_scale=2.0, temperature=0.9)
    assert key(cfg_scale=2.0, top_p=0.9) == key(cfg_scale=2.0, top_p=0.5)


def test_auto_times_each_size_with_the_real_calls_sampling(tmp_path, monkeypatch):
    """The timing sessions sample as the real call does (its top-k, temperature, top-p, CFG): they change the
    step's code, so a compiled step timed otherwise would compile again for the real call (a minute at 7B)."""
    monkeypatch.setenv("HAWK_CACHE_DIR", str(tmp_path))
    pipe = hk.load_demo_pipeline(device="cpu")
    started, real_start = [], hk.HawkDecoder.start

    def start(self, input_ids, negative_input_ids=None, cfg_scale=1.0, temperature=1.0, top_k=None, top_p=None,
              *args, **kwargs):
        started.append((cfg_scale, temperature, top_k, top_p))
        return real_start(self, input_ids, negative_input_ids, cfg_scale, temperature, top_k, top_p, *args, **kwargs)

    monkeypatch.setattr(hk.HawkDecoder, "start", start)
    pipe.generate(["a handwritten digit seven"] * 2, mode="hawk", seed=1, cfg_scale=2.5, temperature=0.7, top_k=5,
                  top_p=0.9)
    *timed, real = started
    assert len(timed) >= 2 and set(timed) == {real}, (timed, real)


def test_a_step_is_measured_once_across_processes(tmp_path):
    """Two tables on one file (two processes: torchrun ranks, or a resumed run), both made before anything was
    measured: the second waits on the file's lock while the first measures, then reads the first's value, so both
    choose the same tree sizes."""
    import threading
    import time

    path = tmp_path / "costs.json"
    first, second = StepCostTable(path), StepCostTable(path)
    started = threading.Event()

    def slow_measure():
        started.set()
        time.sleep(0.3)
        return 1.0

    results = {}
    worker = threading.Thread(target=lambda: results.setdefault("first", first.seconds("k", slow_measure)))
    worker.start()
    started.wait()
    results["second"] = second.seconds("k", lambda: 2.0)  # blocks on the lock until the first has written
    worker.join()
    assert results == {"first": 1.0, "second": 1.0}


def test_ar_is_timed_once_per_batch_whatever_the_mode(tmp_path, monkeypatch):
    """Every mode's sizes are weighed against one AR cost per batch: the AR step does not run the heads, so a mode
    with heads and one without share its measurement (two timings of the same step read up to ~40% apart on a
    loaded CPU, and each mode would then be weighed against its own); the tree steps are kept per mode and heads."""
    monkeypatch.setenv("HAWK_CACHE_DIR", str(tmp_path))
    pipe = hk.load_demo_pipeline(device="cpu")
    for mode in ("hawk", "jacobi"):
        pipe.generate(["a handwritten digit seven"] * 2, mode=mode, seed=1)
    keys = json.loads((tmp_path / "step_costs.json").read_text())
    ar = [key for key in keys if key.endswith("|ar")]
    assert len(ar) == 1, ar
    assert any("|hawk nodes 4, heads " in key for key in keys) and any(key.endswith("|jacobi nodes 4") for key in keys)


def test_ar_is_timed_again_after_the_trees_and_the_lower_cost_kept(tmp_path, monkeypatch):
    """A slow spell of the machine while AR alone is timed (a shared CPU runs 1.5x slower for seconds at a time)
    would make every tree look faster than it is: AR is timed again after the trees, the lower cost is kept (on
    disk too) and the choice made with it. Here AR reads 2.0 then 1.0; a 4-node tree costs 1.9 (1.9x AR) for
    ~1.5 tokens per pass: it wins against the first reading, not against the true cost."""
    readings = {1: [2.0, 1.0], 4: [1.9]}
    monkeypatch.setattr(tree_size, "measure_step_seconds", lambda decoder, *a, **k: readings[decoder.tree.num_nodes].pop(0))
    table = StepCostTable(tmp_path / "t.json")
    choice = choose_num_nodes(_decoder_for, "hawk", [[0.5, 0.0]] * 8, 1, CFG2, "tiny", table, (1, 4))
    assert readings == {1: [], 4: []} and choice.num_nodes == 1, choice.estimates
    assert choice.estimates[1]["seconds_per_step"] == 1.0 and StepCostTable(tmp_path / "t.json").costs[_key(1, 1)] == 1.0
    readings[1] = [0.5]  # costs from the table: nothing timed, so AR is not timed again
    assert choose_num_nodes(_decoder_for, "hawk", [[0.5, 0.0]] * 8, 1, CFG2, "tiny", table, (1, 4)).num_nodes == 1
    assert readings[1] == [0.5]
