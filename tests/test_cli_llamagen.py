"""LlamaGen through the `hawk` command line, as a user takes it from the released files: `hawk convert-llamagen`,
then `hawk generate` with class labels, then `hawk distill` and `hawk train-heads` and images with those heads; and
the errors on the way, each one line naming the flag. All on the tiny release of tests/tiny_llamagen.py (4 x 4
codes, 8 px images, 10 classes).

What the journey found in the library, each pinned here:
- head training embedded the class label through the code table (tok_embeddings) instead of the class table, so
  heads trained on hidden states the decoder never sees, and the trainer's [B, L] padding mask crashed LlamaGen's
  attention (a long mask in sdpa);
- LlamaGen's cfg >= 1 rule was checked only when a batch decoded: a prompts-file line with cfg 0.5 stopped
  `hawk generate` part-way (the images before it written), and `hawk distill --cfg 0.5` left a manifest behind.
"""
from __future__ import annotations

import pytest
import torch

from hawk_kernels import cli
from hawk_kernels.cli.common import ERROR_PREFIX
from tests.test_cli_input_errors import FAST, _error
from tests.tiny_llamagen import build_llamagen, build_llamagen_release


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted tiny LlamaGen directory (the library's converter; the CLI's is tested below)."""
    return build_llamagen(tmp_path_factory.mktemp("llamagen"))


# --- library bugs found on the way ------------------------------------------------------------------------------
def test_head_training_sees_the_hidden_states_the_decoder_sees(converted):
    """backbone_hidden (what heads train on) = the GPT over [class embedding, code embeddings], with the trainer's
    padding mask as well as without one."""
    from hawk_kernels import load_pipeline
    from hawk_kernels.training.batch_losses import backbone_hidden

    pipe = load_pipeline(converted, device="cpu")
    model = pipe.model
    torch.manual_seed(0)
    sequences = torch.cat([torch.tensor([[3], [7]]), torch.randint(0, model.config.vocab_size, (2, 16))], 1)
    with torch.no_grad():
        embeds = torch.cat([model.cls_embedding.embedding_table(sequences[:, :1]),
                            model.tok_embeddings(sequences[:, 1:])], 1)
        expected = model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    backbone = pipe.backbone(pipe.layout(None))
    torch.testing.assert_close(backbone_hidden(backbone, sequences, 1), expected)
    torch.testing.assert_close(backbone_hidden(backbone, sequences, 1, torch.tensor([1, 1])), expected)


def test_cfg_below_1_is_refused_before_anything_is_written(converted, tmp_path, capsys):
    """A prompts-file line with cfg 0.5 is named before the first image (it stopped the run part-way, images
    written); `distill --cfg 0.5` is refused before its manifest is written."""
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"prompt": "3"}\n{"prompt": "7", "cfg": 0.5}\n')
    out = tmp_path / "pngs"
    err = _error(capsys, ["generate", "--model", converted, "--prompts", lines, "--out", out, *FAST])
    assert err.startswith(f"{ERROR_PREFIX}--prompts: {str(lines)!r} line 2 (image 1): cfg_scale: LlamaGen applies "
                          f"guidance only above 1"), err
    assert not out.exists() or not list(out.iterdir())
    prompts = tmp_path / "labels.txt"
    prompts.write_text("3\n7\n")
    data = tmp_path / "data"
    err = _error(capsys, ["distill", "--model", converted, "--prompts", prompts, "--out", data, "--mode", "ar",
                          "--cfg", "0.5"])
    assert err.startswith(f"{ERROR_PREFIX}--cfg: LlamaGen applies guidance only above 1"), err
    assert not data.exists() or not list(data.iterdir())


def test_an_unreadable_vq_file_is_named_vq_checkpoint(tmp_path):
    """The VQ reader's errors named its own argument (`path: ...`), which convert_llamagen's caller never passed."""
    from hawk_kernels.pipelines.llamagen_convert import convert_llamagen

    gpt, _ = build_llamagen_release(tmp_path / "release")
    junk = tmp_path / "vq.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"^vq_checkpoint: .*vq\.pt' is not a readable LlamaGen VQ checkpoint"):
        convert_llamagen(gpt, junk, tmp_path / "out", 8, n_head=4)
    assert not (tmp_path / "out").exists()
