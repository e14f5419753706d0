"""The SJD baseline (benchmarks/sjd.py, issue 20 item 5) is exact: its sampled images follow the exact AR law,
checked with the same law test as our decoder's (tests/test_decoder.py), with a negative control; and its
benchmark runs (--smoke) and writes the JSON the issue asks for."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.target import SamplingConfig
from tests.test_decoder import PROMPT, _exact_image_law
from tests.test_verify import _chi2_pvalue
from tests.tiny_models import tiny_backbone

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "sjd.py"
_spec = importlib.util.spec_from_file_location("sjd_baseline", SCRIPT)
sjd = sys.modules.setdefault("sjd_baseline", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(sjd)

# 2 rows of 3 codes + row-end (8 body tokens), 3 codes: 729 images, enumerated exactly
GRID = hk.ImageGrid(height=2, width=3, row_end_token=3, image_token_range=(45, 48))
BATCH, SEEDS = 500, 4


@pytest.fixture(scope="module")
def smoke_run(request, tmp_path_factory):
    """benchmarks/sjd.py --smoke, started with the first test here so it runs beside the law tests (one core
    each); not started when its test is not selected."""
    if not any(item.originalname == "test_sjd_benchmark_smoke" for item in request.session.items):
        yield None
        return
    out = tmp_path_factory.mktemp("sjd") / "sjd_smoke.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def model():
    return tiny_backbone()


def _sample_counts(model, sampling, images, **kw):
    dec = sjd.SJDDecoder(model, GRID, **kw)
    index = {img: i for i, img in enumerate(images)}
    counts = torch.zeros(len(images), dtype=torch.int64)
    tokens, passes = 0, 0
    for seed in range(SEEDS):
        out = dec.generate(PROMPT.expand(BATCH, -1), cfg_scale=sampling.cfg_scale,
                           temperature=sampling.temperature, top_k=sampling.top_k, seed=seed)
        for img in (out.image_tokens.reshape(BATCH, -1) - GRID.image_token_range[0]).tolist():
            counts[index[tuple(img)]] += 1
        tokens += sum(map(sum, out.accepted_lengths))
        passes += sum(out.passes(r) for r in range(BATCH))
        origins = out.accepted_by_origin
    return counts, tokens / passes, origins


@pytest.mark.parametrize("sampling, kw", [
    (SamplingConfig(), dict(window=4)),
    (SamplingConfig(cfg_scale=2.0, temperature=0.8, top_k=2), dict(window=5, layout_drafts="random")),
], ids=["plain-w4", "cfg-topk-temp-w5-layout-random"])
def test_sjd_images_follow_the_exact_ar_law(smoke_run, model, sampling, kw):
    probs, images = _exact_image_law(model, GRID, sampling)
    assert abs(float(probs.sum()) - 1) < 1e-9
    counts, tokens_per_pass, origins = _sample_counts(model, sampling, images, **kw)
    assert _chi2_pvalue(counts, probs, bins=12) > 1e-4
    assert tokens_per_pass > 1.2  # drafts were accepted: the test saw the speculative path
    assert origins["jacobi"] > 0 and origins["random"] > 0


def test_broken_sjd_is_caught(smoke_run, model):
    """Negative control: a Jacobi draft tested against the current pass's law at its position instead of the
    previous pass's law it was drawn from (so it is always accepted) fails the same law test."""
    sampling = SamplingConfig()
    probs, images = _exact_image_law(model, GRID, sampling)
    counts, _, _ = _sample_counts(model, sampling, images, window=4, broken="current_q")
    assert _chi2_pvalue(counts, probs, bins=12) < 1e-6


def test_sjd_chain_is_sjd_rule():
    """On a chain, ops.accept_reject is SJD's rule: a one-hot q accepts with probability p(x), a Jacobi draft with
    min(1, p(x)/q(x)), and a rejection draws from normalize(max(p - q, 0)); so the committed token's law is p.
    Integrated over a fine grid of explicit uniforms (one batch row per grid point)."""
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    grid = (torch.arange(200, dtype=torch.float64) + 0.5) / 200
    u, v = torch.meshgrid(grid, grid, indexing="ij")  # node 1's accept test, node 0's residual / bonus draw
    rows = u.numel()
    uniforms = torch.stack([torch.stack([torch.zeros(rows), v.flatten()], -1),
                            torch.stack([u.flatten(), torch.zeros(rows)], -1)], 1).double()
    target = p.log().expand(rows, 2, 3).contiguous()
    for q in (torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.2, 0.2, 0.6])):  # a random init's, a Jacobi draft's
        q = q.double()
        law = torch.zeros(3, dtype=torch.float64)
        for x in torch.nonzero(q)[:, 0].tolist():  # the draft x ~ q
            draft = q.log().expand(rows, 2, 3).contiguous()
            nodes = torch.tensor([-1, x]).expand(rows, 2).contiguous()
            accept_len, _, bonus = hk.ops.accept_reject(target, draft, nodes, torch.tensor([-1, 0]),
                                                        torch.tensor([0, 1]).expand(rows, 2).contiguous(), uniforms)
            assert abs(float((accept_len == 1).double().mean()) - min(1.0, float(p[x] / q[x]))) < 0.01
            token = torch.where(accept_len == 1, x, bonus)
            law += q[x] * torch.bincount(token, minlength=3).double() / rows
        assert torch.allclose(law, p, atol=0.01), (q, law)


def test_sjd_benchmark_smoke(smoke_run):
    """benchmarks/sjd.py --smoke: every mode side by side at batch 1 and at the larger batch, in seconds."""
    proc, out = smoke_run
    stdout, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, stdout[-4000:]
    report = json.loads(out.read_text())
    assert {"device", "torch", "transformers", "hawk_kernels", "date", "command", "settings", "results",
            "seconds"} <= set(report)
    assert report["smoke"] is True and report["seconds"] < 60
    assert report["settings"]["cfg_scale"] == 3.0 and report["settings"]["temperature"] == 1.0
    assert set(report["results"]) == {"1", "2"}
    for batch, rows in report["results"].items():
        assert {"ar", "sjd", "medusa", "hawk", "jacobi", "hawk+jacobi"} <= set(rows)
        for mode, row in rows.items():
            assert row["seconds_per_image"] > 0 and row["passes"] > 0 and row["batch"] == int(batch)
            if mode == "ar":
                assert row["tokens_per_pass"] == 1.0 and row["passes"] == 209
            else:
                assert row["tokens_per_pass"] > 1.5, (batch, mode, row["tokens_per_pass"])
        assert rows["sjd"]["accepted_drafts_by_origin"]["jacobi"] > 0
