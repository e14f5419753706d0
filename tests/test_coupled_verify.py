"""The coupled verification rule (HawkDecoder(verify="coupled"), the default; engine/step.py, verify): every step
commits the target's own sample, the Gumbel-argmax of its law with noise keyed by (image seed, body offset), so a
sampled image is the AR image of its seed in every mode, tree size and batch; and AR with that noise samples the
exact law (the end-to-end test, with the negative control that reuses one noise at every position)."""
import pytest
import torch

import hawk_kernels as hk
from hawk_kernels.drafts import coupling, needs_heads
from tests.test_jacobi import _sampled_counts, two_code_image_law
from tests.test_verify import _chi2_pvalue
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads

PROMPTS = torch.tensor([[1, 5, 6, 4], [1, 7, 9, 4]])
SAMPLED = dict(cfg_scale=2.0, temperature=0.8, top_k=30)


@pytest.mark.parametrize("kind", ["llama", "chameleon"])
def test_every_mode_and_tree_commits_the_ar_sample(kind):
    """Sampled (CFG, temperature, top-k), batch 2, untrained heads: each mode at 4 and 16 nodes gives AR's tokens
    exactly. Under the rejection rule the same decoders give other images (the same law): what the rule buys."""
    model, grid, heads = tiny_backbone(kind), tiny_grid(height=4, width=5), tiny_heads()
    ar = hk.HawkDecoder(model, None, grid, mode="ar").generate(PROMPTS, seed=[3, 11], **SAMPLED)
    differs = 0
    for mode in ("medusa", "vertical", "hawk", "jacobi", "hawk+jacobi"):
        for nodes in (4, 16):
            kw = dict(mode=mode, num_nodes=nodes)
            out = hk.HawkDecoder(model, heads if needs_heads(mode) else None, grid, **kw).generate(
                PROMPTS, seed=[3, 11], **SAMPLED)
            assert torch.equal(out.sequences, ar.sequences), (mode, nodes)
            assert out.num_forward_passes < ar.num_forward_passes, (mode, nodes)
            rejection = hk.HawkDecoder(model, heads if needs_heads(mode) else None, grid, verify="rejection",
                                       **kw).generate(PROMPTS, seed=[3, 11], **SAMPLED)
            differs += not torch.equal(rejection.sequences, ar.sequences)
    assert differs >= 8, differs


def test_an_image_is_the_same_alone_in_a_batch_and_after_a_refill():
    """An image depends on its own seed alone: decoded alone, in a batch of 2, and in a refilled row."""
    model, grid, heads = tiny_backbone(), tiny_grid(height=4, width=5), tiny_heads()
    dec = hk.HawkDecoder(model, heads, grid, mode="hawk+jacobi", num_nodes=8)
    together = dec.generate(PROMPTS, seed=[5, 6], **SAMPLED)
    alone = [dec.generate(PROMPTS[i:i + 1], seed=5 + i, **SAMPLED) for i in range(2)]
    for i in range(2):
        assert torch.equal(together.image_tokens[i], alone[i].image_tokens[0]), i
    session = dec.start(PROMPTS[:1], seed=[9], **SAMPLED)
    while not session.finished_rows():
        session.run(1)
    session.take([0])
    dec.refill(session, [0], PROMPTS[1:], seed=[6])
    while not session.finished_rows():
        session.run(1)
    assert torch.equal(session.take([0]).image_tokens[0], alone[1].image_tokens[0])


def _same_noise_everywhere(monkeypatch):
    """The negative control: one Gumbel draw per image, reused at every position (no position in the key)."""
    monkeypatch.setattr(coupling, "_POSITION_STRIDE", 0)


@pytest.mark.parametrize("mode, variant", [("ar", "position"), ("hawk+jacobi", "position"), ("ar", "reused")])
def test_sampled_images_follow_the_exact_ar_law(mode, variant, monkeypatch):
    """A 2x4 image of 2 codes (256 images, row ends between the rows), CFG 2, temperature 1: the coupled rule's
    image law is the exact AR law, in AR and in hawk+jacobi. Reusing one noise at every position (the key without
    the position) must fail the same test."""
    model, grid, sampling, probs, images = two_code_image_law()
    if variant == "reused":
        _same_noise_everywhere(monkeypatch)
    heads = tiny_heads(num_horizontal=3, vertical_depth=1) if needs_heads(mode) else None
    dec = hk.HawkDecoder(model, heads, grid, mode=mode, num_nodes=7)
    assert dec.plan.verify == "coupled"
    counts, _ = _sampled_counts(dec, images, sampling, lo=45)
    pvalue = _chi2_pvalue(counts, probs, bins=12)
    assert (pvalue < 1e-6) if variant == "reused" else (pvalue > 1e-4), pvalue


def test_verify_is_checked_and_the_pipelines_and_cli_record_it(tmp_path, capsys):
    import json

    from hawk_kernels import cli

    model, grid = tiny_backbone(), tiny_grid()
    with pytest.raises(ValueError, match=r"verify: expected one of \('coupled', 'rejection'\), got 'exact'"):
        hk.HawkDecoder(model, None, grid, mode="ar", verify="exact")
    pipe = hk.load_demo_pipeline(device="cpu")
    coupled = pipe.generate_tokens(["digit eight"], mode="hawk", seed=2, num_nodes=8)
    pipe.verify = "rejection"
    assert pipe.decoder("hawk", None, 8).plan.verify == "rejection"
    rejected = pipe.generate_tokens(["digit eight"], mode="hawk", seed=2, num_nodes=8)
    pipe.verify = "coupled"
    ar = pipe.generate_tokens(["digit eight"], mode="ar", seed=2, num_nodes=1)
    assert torch.equal(coupled.image_tokens, ar.image_tokens) and not torch.equal(rejected.image_tokens, ar.image_tokens)
    out = tmp_path / "out"
    run = ["generate", "--demo", "--prompt", "digit eight", "--out", str(out), "--mode", "ar", "--nodes", "1",
           "--threads", "1"]
    assert cli.main(run) == 0
    assert json.loads((out / "manifest.jsonl").read_text())["verify"] == "coupled"
    capsys.readouterr()
    assert cli.main([*run, "--verify", "rejection"]) == 2
    assert "made with verify 'coupled', not 'rejection'" in capsys.readouterr().err
