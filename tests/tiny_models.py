"""Tiny random-weight backbones of the real architectures (no download), and draft heads for them."""
from __future__ import annotations

import torch

import hawk_kernels as hk

VOCAB, HIDDEN = 48, 32
COMMON = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)


def tiny_backbone(kind: str = "llama", dtype=torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    if kind in ("llama", "janus"):  # Janus-Pro's language model is a Llama
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**COMMON))
    elif kind == "chameleon":  # Lumina-mGPT's architecture
        from transformers import ChameleonConfig, ChameleonForConditionalGeneration

        model = ChameleonForConditionalGeneration(ChameleonConfig(**COMMON, vocabulary_map={"<image>": 5},
                                                                  image_token_id=5))
    elif kind == "emu3":
        from transformers import Emu3ForCausalLM, Emu3TextConfig

        model = Emu3ForCausalLM(Emu3TextConfig(**COMMON, bos_token_id=1, eos_token_id=2))
    else:
        raise ValueError(kind)
    with torch.no_grad():  # sharper logits than the default init, so drafts and targets differ visibly
        model.get_output_embeddings().weight.mul_(8.0)
    return model.eval().to(dtype)


def tiny_heads(num_horizontal=3, vertical_depth=2, scale=0.5, dtype=torch.float64, seed=1, **kw):
    torch.manual_seed(seed)
    heads = hk.DraftHeads(HIDDEN, VOCAB, num_horizontal, vertical_depth, dtype=dtype, **kw)
    with torch.no_grad():  # random (untrained) heads: drafts are informative but not the target
        heads.res_weight.normal_(0, scale / HIDDEN**0.5)
        heads.res_bias.normal_(0, scale)
    return heads


def tiny_grid(height=3, width=4, row_end=True, lo=8, hi=VOCAB):
    return hk.ImageGrid(height=height, width=width, row_end_token=3 if row_end else None,
                        image_token_range=(lo, hi), image_end_token=2 if row_end else None)


def path_to(template, node: int) -> list[int]:
    """The nodes from the root down to `node` in a TreeTemplate (what the tree mask lets `node` attend to)."""
    path = [node]
    while template.parents[path[-1]] >= 0:
        path.append(template.parents[path[-1]])
    return path[::-1]
