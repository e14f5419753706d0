import torch

from hawk_kernels.training import TensorSequences, TrainConfig, evaluate_heads, train_heads
from hawk_kernels.training.batch_losses import head_targets
from tests.tiny_models import tiny_backbone, tiny_grid, tiny_heads


def test_head_targets_skip_layout_and_out_of_image():
    grid = tiny_grid(height=2, width=2)  # stride 3, body 6
    seq = torch.tensor([[1, 4, 10, 11, 3, 12, 13, 3, 2]])  # body starts at 2
    targets, valid = head_targets(seq, 2, grid, [1, 3])
    # position 1 (image start) feeds offset-1 head -> token at 1+1+1=3 (11); offset-3 head -> 5 (12)
    assert valid[0, 1].tolist() == [True, True] and targets[0, 1].tolist() == [11 - 8, 12 - 8]
    assert not valid[0, 2, 0]  # 2+1+1 = 4 is the row end
    assert not valid[0, 6].any()


def test_training_lowers_loss():
    model, grid = tiny_backbone(dtype=torch.float32), tiny_grid(height=2, width=3)
    heads = tiny_heads(num_horizontal=2, vertical_depth=1, scale=0.0, dtype=torch.float32)
    body = torch.randint(8, 12, (64, grid.num_body_tokens))  # a narrow, learnable code distribution
    body.view(64, grid.height, grid.row_stride)[:, :, -1] = grid.row_end_token
    seq = torch.cat([torch.tensor([[1, 4]]).expand(64, -1), body], 1)
    data = TensorSequences(seq, body_start=2)
    before = evaluate_heads(model, heads, data, grid)
    train_heads(model, heads, data, grid, TrainConfig(epochs=3, lr=3e-2, batch_size=16, eval_fraction=0), progress=False)
    after = evaluate_heads(model, heads, data, grid)
    assert all(a < b for a, b in zip(after.loss, before.loss)), (before.loss, after.loss)


def test_training_refuses_heads_that_do_not_draft_for_the_model():
    """The trainer checks heads as the decoder does (DraftHeads.check_for): heads with their own projection over
    the whole vocabulary (their logits would not line up with the grid's local targets) and heads of another hidden
    size are refused by name before any step, not trained wrongly or crashed in one."""
    import pytest

    import hawk_kernels as hk

    model, grid = tiny_backbone(dtype=torch.float32), tiny_grid(height=2, width=3)
    seq = torch.cat([torch.tensor([[1, 4]]).expand(16, -1), torch.full((16, grid.num_body_tokens), 9)], 1)
    seq.view(16, -1)[:, 2:].view(16, grid.height, grid.row_stride)[:, :, -1] = grid.row_end_token
    data, config = TensorSequences(seq, body_start=2), TrainConfig(epochs=1, batch_size=8, eval_fraction=0)
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    own = hk.DraftHeads(hidden, vocab, 2, 1, shared_lm_head=False, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"heads: their own projection .* image_token_range=\(8, "):
        train_heads(model, own, data, grid, config, progress=False)
    with pytest.raises(ValueError, match=f"heads: hidden_size={hidden * 2} does not match the model's {hidden}"):
        train_heads(model, hk.DraftHeads(hidden * 2, vocab, 2, 1, dtype=torch.float32), data, grid, config,
                    progress=False)
    fitted = hk.DraftHeads(hidden, vocab, 2, 1, shared_lm_head=False, image_token_range=grid.image_token_range,
                           dtype=torch.float32)
    train_heads(model, fitted, data, grid, config, progress=False)  # the same heads, sized for the grid: trained
