"""Acceptance measured on the user's own model (hawk_kernels/acceptance.py): where a mode has no calibrated rates,
num_nodes="auto" weighs tree sizes with counts a probe of the call's own prompts measured, sharpened by every
later generation, instead of the generic prior that capped a Jacobi chain at 2.5 tokens per pass."""
import json
from dataclasses import replace

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels import acceptance
from hawk_kernels.acceptance import AcceptanceTable, acceptance_key
from hawk_kernels.target import SamplingConfig
from hawk_kernels.tree_size import CANDIDATE_SIZES, StepCostTable, _shape_key, step_form, step_key

# seconds per step of the bundled model on this CPU, batch 1 (benchmarks/results/tree_size_coupled_recalibrated_cpu
# .json, jacobi): fixed here so that the choice below depends on the acceptance alone, not on timing noise
STEP_MS = {1: 2.35, 4: 3.35, 8: 3.73, 16: 4.29, 32: 5.67, 64: 7.9}


@pytest.fixture
def pipe(monkeypatch, tmp_path):
    monkeypatch.setenv("HAWK_CACHE_DIR", str(tmp_path))
    pipe = hk.load_demo_pipeline(device="cpu")
    pipe.accept_rates.pop("jacobi")  # a model without calibrated Jacobi rates: every real model without heads
    return pipe


def _counting_probe(monkeypatch) -> list:
    calls = []
    real = acceptance.probe_counts
    monkeypatch.setattr(acceptance, "probe_counts", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    return calls


def _fixed_step_costs(pipe, mode: str, batch: int = 1) -> None:
    grid = pipe.layout(None)
    sampling = pipe._prepare(mode, None, None, None, None, None)[1]
    table = StepCostTable()
    for size in CANDIDATE_SIZES:
        decoder = pipe._decoder_of_size(mode, grid, size)
        key = step_key(pipe.device, _shape_key(pipe, grid), mode, size, batch, sampling, step_form(decoder))
        table.costs[key] = STEP_MS[size] * 1e-3
    table.change(lambda entries: None)  # saved: pipeline_num_nodes reads its own table


def test_measured_acceptance_chooses_the_tree_the_prior_missed(pipe, monkeypatch):
    """From the generic prior every chain of >= 8 nodes looks like ~2.5 tokens per pass, so "auto" took a small
    tree; from the probe's counts it takes the 16-32 node chain that the bundled model's Jacobi drafts fill."""
    from hawk_kernels.tree_size import choose_num_nodes

    _fixed_step_costs(pipe, "jacobi")
    grid, sampling = pipe.layout(None), pipe._prepare("jacobi", None, None, None, None, None)[1]
    prior = choose_num_nodes(lambda n: pipe._decoder_of_size("jacobi", grid, n), "jacobi", None, 1, sampling,
                             _shape_key(pipe, grid))
    probes = _counting_probe(monkeypatch)
    out = pipe.generate_tokens(prompts=["a handwritten digit seven"], mode="jacobi", seed=3)
    assert len(probes) == 1 and len(probes[0].seeds) == 1  # one probe, of the call's own image
    assert prior.num_nodes <= 8 and out.num_nodes[0] in (16, 32)
    assert out.tree_rates == "measured on this model (1 image)"  # the probe's (the call's own count after it)
    assert prior.estimates[16]["tokens_per_pass"] < 2.6 < out.tokens_per_pass


def test_later_calls_read_the_counts_and_add_theirs(pipe, monkeypatch):
    probes = _counting_probe(monkeypatch)
    _fixed_step_costs(pipe, "jacobi", batch=2)
    first = pipe.generate_tokens(prompts=["a handwritten digit one", "a handwritten digit two"], mode="jacobi",
                                 seed=1)
    again = pipe.generate_tokens(prompts=["a handwritten digit one", "a handwritten digit two"], mode="jacobi",
                                 seed=5)
    assert len(probes) == 1  # the second call reads what the first measured
    assert first.tree_rates == "measured on this model (2 images)"  # the probe's
    assert again.tree_rates == "measured on this model (4 images)"  # + the first call's own
    grid, sampling = pipe.layout(None), pipe._prepare("jacobi", None, None, None, None, None)[1]
    entry = AcceptanceTable().merged()[acceptance_key(pipe, "jacobi", grid, sampling)]
    assert entry["images"] == 6 and entry["probe_images"] == 2
    assert entry["tried"][0][0] >= sum(first.num_forward_passes) + sum(again.num_forward_passes)


def test_the_probe_changes_no_image(pipe):
    """The coupled rule: an image is its seed's AR image whatever tree decoded it, the probe before it included."""
    prompts = ["a handwritten digit four", "a handwritten digit nine"]
    auto = pipe.generate_tokens(prompts=prompts, mode="jacobi", seed=11, temperature=1.0)
    ar = pipe.generate_tokens(prompts=prompts, mode="ar", seed=11, temperature=1.0)
    assert auto.tree_rates.startswith("measured on this model") and ar.tree_rates is None
    assert torch.equal(auto.image_tokens, ar.image_tokens)


def test_continuous_sessions_record_every_image(pipe):
    prompts = [f"a handwritten digit {w}" for w in ("one", "two", "three")]
    out = pipe.generate_tokens(prompts=prompts, mode="jacobi", seed=2, num_nodes=4, batch_size=2)
    assert out.tree_rates is None  # a given size: nothing was weighed
    grid, sampling = pipe.layout(None), pipe._prepare("jacobi", None, None, None, None, None)[1]
    entry = AcceptanceTable().merged()[acceptance_key(pipe, "jacobi", grid, sampling)]
    assert entry["images"] == 3 and entry["probe_images"] == 0


def test_calibrated_modes_keep_their_rates(pipe, monkeypatch):
    probes = _counting_probe(monkeypatch)
    _fixed_step_costs(pipe, "hawk")
    out = pipe.generate_tokens(prompts=["a handwritten digit six"], mode="hawk", seed=0)
    assert out.tree_rates == "calibrated with the heads" and not probes
    grid, sampling = pipe.layout(None), pipe._prepare("hawk", None, None, None, None, None)[1]
    assert acceptance_key(pipe, "hawk", grid, sampling) is None and acceptance_key(pipe, "ar", grid, sampling) is None
    assert AcceptanceTable().merged() == {}


def test_keys_name_what_acceptance_depends_on(pipe):
    grid = pipe.layout(None)
    greedy, sampled = (pipe._prepare("jacobi", None, None, t, None, None)[1] for t in (0.0, 1.0))
    key = acceptance_key(pipe, "jacobi", grid, sampled)
    assert key != acceptance_key(pipe, "jacobi", grid, greedy)
    pipe.verify = "rejection"
    assert key != acceptance_key(pipe, "jacobi", grid, sampled)
    pipe.verify = "coupled"
    assert key == acceptance_key(pipe, "jacobi", grid, sampled)
    with torch.no_grad():
        next(pipe.model.parameters()).add_(1.0)  # other weights: other counts
    assert key != acceptance_key(pipe, "jacobi", grid, sampled)


def test_table_sums_counts_of_any_shape_and_shares_them(tmp_path):
    path = tmp_path / "acceptance.json"
    first, second = AcceptanceTable(path), AcceptanceTable(path)  # two processes
    assert first.rates("k") == (None, 0, 0)
    first.add("k", torch.tensor([[4, 2], [2, 0]]), torch.tensor([[3, 1], [1, 0]]), images=1, probe=True)
    second.add("k", torch.tensor([[4], [3], [2]]), torch.tensor([[2], [2], [1]]), images=2)
    entry = json.loads(path.read_text())["k"]
    assert entry == dict(tried=[[8, 2], [5, 0], [2, 0]], accepted=[[5, 1], [3, 0], [1, 0]], images=3,
                         probe_images=1)
    rates, images, probed = AcceptanceTable(path).rates("k")
    assert (images, probed) == (3, 1) and len(rates) == 3 and rates[0][0] == pytest.approx((5 + 4 * 0.6) / (8 + 4))
    assert rates[1][1] == rates[0][1]  # a cell never tried inherits the shallower depth's rate


def test_the_probe_is_bounded(pipe, monkeypatch):
    monkeypatch.setattr(acceptance, "PROBE_PASSES", 2)
    grid, sampling = pipe.layout(None), pipe._prepare("jacobi", None, None, None, None, None)[1]
    from hawk_kernels.pipelines.rows import probe_batch

    rows = pipe.call_rows([f"a handwritten digit {w}" for w in ("one", "two", "three")], None, grid, sampling)
    probe = probe_batch(rows, range(3), [0, 1, 2], sampling.uses_cfg, pipe.device)
    tried, accepted = acceptance.probe_counts(pipe, "jacobi", grid, sampling, probe)
    assert len(probe.seeds) == acceptance.PROBE_ROWS == 2
    assert 0 < tried[0, 0] <= 2 * 2 and (accepted <= tried).all()  # 2 passes of 2 rows: 1 depth-1 node each


def test_many_image_runs_say_which_acceptance_chose_their_size(pipe, tmp_path, capsys):
    """`hawk generate`: each manifest line of an "auto" run names the acceptance its size was weighed with, and
    the closing summary says it beside the tree size."""
    from hawk_kernels.cli.generate import _summary
    from hawk_kernels.pipelines.batch_job import prompt_jobs, run_jobs

    _fixed_step_costs(pipe, "jacobi")
    jobs = prompt_jobs(["a handwritten digit two", "a handwritten digit five"], seed=4)
    paths = run_jobs(pipe, jobs, tmp_path / "out", mode="jacobi", batch_size=1, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [line["tree_rates"] for line in lines] == ["measured on this model (2 images)"] * 2  # the probe's
    _summary(pipe, jobs, tmp_path / "out", paths, 1.0)
    assert "(auto, acceptance measured on this model (2 images))" in capsys.readouterr().out
    from PIL import Image

    with Image.open(tmp_path / "out" / lines[0]["png"]) as image:  # counts grow run by run: not in the PNG's text,
        assert "tree_rates" not in json.loads(image.text["hawk_kernels"])  # so the same image is the same file


def test_distillation_weighs_its_tree_size_by_measured_acceptance(pipe, tmp_path):
    """`hawk distill` decodes in jacobi without heads by default, so its "auto" size is the case the prior got
    wrong: it probes its first prompts, and its shards' images add their counts."""
    from hawk_kernels.training import distill

    _fixed_step_costs(pipe, "jacobi", batch=2)
    manifest = distill(pipe, ["a handwritten digit eight", "a handwritten digit three"], tmp_path / "d",
                       images_per_prompt=2, batch_size=2, seed=3, progress=False, max_shards=1)
    grid = pipe.layout(None)
    settings = manifest["settings"]
    sampling = SamplingConfig(settings["cfg_scale"], settings["temperature"], settings["top_k"])
    entry = AcceptanceTable().merged()[acceptance_key(pipe, "jacobi", grid, sampling)]
    assert entry["probe_images"] == 2 and entry["images"] > 2
    assert settings["num_nodes"] in (16, 32)  # the prior would take a small tree (see the first test)


@pytest.mark.cuda
def test_the_probe_and_the_counts_on_cuda(monkeypatch, tmp_path):
    """The probe's uncompiled, CUDA-graphed decoder, its counts (read back from device statistics) and the recording,
    on a GPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from hawk_kernels.engine import graphs
    captured = []
    capture = graphs.StepRunner._capture
    monkeypatch.setattr(graphs.StepRunner, "_capture", lambda runner: captured.append(1) or capture(runner))
    monkeypatch.setenv("HAWK_CACHE_DIR", str(tmp_path))
    pipe = hk.load_demo_pipeline(device="cuda", compile=False)
    pipe.accept_rates.pop("jacobi")
    _fixed_step_costs(pipe, "jacobi")
    out = pipe.generate_tokens(prompts=["a handwritten digit seven"], mode="jacobi", seed=3)
    assert out.tree_rates == "measured on this model (1 image)" and out.num_nodes[0] in (16, 32)
    assert len(captured) == 2 and out.outputs[0].cuda_graph  # the probe's steps and the call's, each captured once
    grid, sampling = pipe.layout(None), pipe._prepare("jacobi", None, None, None, None, None)[1]
    assert AcceptanceTable().merged()[acceptance_key(pipe, "jacobi", grid, sampling)]["images"] == 2


def test_a_long_session_re_chooses_after_its_first_whole_images(pipe, monkeypatch):
    """A continuous call whose size was weighed by a probe alone decodes SETTLE_IMAGES_PER_ROW images per row,
    then re-chooses with their whole-image counts for the rest; each image records the size that decoded it, and
    under the coupled rule every image is still its seed's AR image."""
    from hawk_kernels.pipelines import continuous

    monkeypatch.setattr(continuous, "SETTLE_IMAGES_PER_ROW", 1)
    monkeypatch.setattr(continuous, "SETTLE_MIN_IMAGES_PER_ROW", 2)
    chosen = []
    real = continuous.pipeline_num_nodes

    def choose(*args, **kwargs):  # the real choice, then a different size (the re-choice), to see it taken
        choice = real(*args, **kwargs)
        choice = choice if not chosen else replace(choice, num_nodes=4 if chosen[0] != 4 else 8)
        chosen.append(choice.num_nodes)
        return choice

    monkeypatch.setattr(continuous, "pipeline_num_nodes", choose)
    _fixed_step_costs(pipe, "jacobi", batch=2)
    prompts = [f"a handwritten digit {w}" for w in ("one", "two", "three", "four", "five")]
    out = pipe.generate_tokens(prompts=prompts, mode="jacobi", seed=7, batch_size=2)
    assert len(chosen) == 2 and out.num_nodes == [chosen[0]] * 2 + [chosen[1]] * 3
    assert out.tree_rates == "measured on this model (2 images), then measured on this model (4 images)"
    assert out.total_forward_passes >= max(out.num_forward_passes[:2]) + max(out.num_forward_passes[2:])
    ar = pipe.generate_tokens(prompts=prompts, mode="ar", seed=7)
    assert torch.equal(out.image_tokens, ar.image_tokens)
    calls = len(chosen)
    pipe.generate_tokens(prompts=prompts, mode="jacobi", seed=7, batch_size=2)
    assert len(chosen) == calls + 1  # whole images are counted now: one session, no re-choice


def test_concurrent_processes_probe_once(tmp_path):
    """torchrun ranks share the table: the first probes under its lock, the others read its counts."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import time, torch
        from hawk_kernels.acceptance import AcceptanceTable
        def probe():
            time.sleep(1.0)  # the others reach the lock meanwhile
            open({str(tmp_path / "probes")!r}, "a").write("x")
            return torch.tensor([[4]]), torch.tensor([[3]]), 2
        AcceptanceTable({str(tmp_path / "acceptance.json")!r}).probe_once("k", probe)
    """)
    ranks = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [rank.wait(timeout=120) for rank in ranks] == [0, 0, 0]
    assert (tmp_path / "probes").read_text() == "x"
    assert AcceptanceTable(tmp_path / "acceptance.json").rates("k")[1:] == (2, 2)


def test_a_filled_session_of_one_image_probes_that_image(pipe):
    """fill: one prompt in a session of 3 rows (repeats of it, dropped): the probe takes the one real image."""
    from hawk_kernels.pipelines.continuous import stream_images

    _fixed_step_costs(pipe, "jacobi", batch=3)
    (members, res), = stream_images(pipe, ["a handwritten digit zero"], batch_size=3, mode="jacobi", seed=1,
                                    fill=True, pixels=False)
    assert members == [0] and res.tree_rates == "measured on this model (1 image)"


@pytest.mark.parametrize("entry", [{"images": 3}, {"tried": [[1, 2], [3]], "accepted": [[1, 2], [3]], "images": 1,
                                                    "probe_images": 0}, [1, 2], "text",
                                   {"tried": [[2]], "accepted": [[1], [1]], "images": 1, "probe_images": 1}])
def test_a_malformed_entry_reads_as_none_and_is_replaced(pipe, entry):
    """A hand-edited or foreign entry never fails a generation: it reads as no counts, and the probe replaces it."""
    grid, sampling = pipe.layout(None), pipe._prepare("jacobi", None, None, None, None, None)[1]
    key = acceptance_key(pipe, "jacobi", grid, sampling)
    AcceptanceTable().change(lambda entries: entries.update({key: entry}))
    _fixed_step_costs(pipe, "jacobi")
    out = pipe.generate_tokens(prompts=["a handwritten digit one"], mode="jacobi", seed=0)
    assert out.tree_rates == "measured on this model (1 image)"
    assert AcceptanceTable().merged()[key]["images"] == 2
