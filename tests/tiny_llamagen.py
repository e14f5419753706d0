"""Tiny LlamaGen releases for tests: upstream's own modules (the transcriptions in llamagen_reference*.py) with
random weights, saved as upstream ships them ({"model": state_dict} torch files), and converted into the
directory load_pipeline reads, as a user would with `hawk convert-llamagen`."""
from __future__ import annotations

from pathlib import Path

import torch

from tests import llamagen_reference as gpt_reference
from tests import llamagen_reference_vq as vq_reference

GPT = dict(dim=64, n_layer=2, n_head=4, num_classes=10, vocab_size=64, block_size=16)  # 4 x 4 codes
VQ = dict(codebook_size=64, codebook_embed_dim=8, encoder_ch_mult=[1, 2], decoder_ch_mult=[1, 2], z_channels=32,
          ch=32, num_res_blocks=1)  # 2 px per code: 8 px images
IMAGE_SIZE = 8


def reference_gpt(seed: int = 0, std: float = 0.3, **overrides) -> gpt_reference.Transformer:
    """Upstream's Transformer with every weight random (upstream zeroes the output head at init: a sharp random
    one gives laws with clear winners, so greedy comparisons test something)."""
    torch.manual_seed(seed)
    model = gpt_reference.Transformer(gpt_reference.ModelArgs(**{**GPT, **overrides})).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, std)
        for layer in model.layers:
            layer.attention_norm.weight.fill_(1.0)
            layer.ffn_norm.weight.fill_(1.0)
    return model


def reference_vq(seed: int = 1) -> vq_reference.VQModel:
    torch.manual_seed(seed)
    model = vq_reference.VQModel(vq_reference.ModelArgs(**VQ)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


def build_llamagen_release(directory, seed: int = 0, **gpt_overrides) -> tuple[Path, Path]:
    """(c2i GPT file, VQ file) as upstream releases them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gpt_path, vq_path = directory / f"c2i_tiny_{IMAGE_SIZE}.pt", directory / "vq_tiny.pt"
    torch.save({"model": reference_gpt(seed, **gpt_overrides).state_dict()}, gpt_path)
    torch.save({"model": reference_vq(seed + 1).state_dict()}, vq_path)
    return gpt_path, vq_path


def build_llamagen(directory, seed: int = 0) -> Path:
    """A converted tiny LlamaGen directory (config.json, model.safetensors, vq_model.safetensors)."""
    from hawk_kernels.pipelines.llamagen_convert import convert_llamagen

    gpt_path, vq_path = build_llamagen_release(Path(directory) / "release", seed)
    return convert_llamagen(gpt_path, vq_path, Path(directory) / "model", IMAGE_SIZE, n_head=GPT["n_head"])


# --- t2i: a tiny T5 (encoder-decoder, as google/flan-t5-xl ships) and a caption-conditioned GPT ------------------
T2I = dict(GPT, model_type="t2i", caption_dim=16, cls_token_num=8)  # captions of at most 8 T5 ids
T5_WORDS = "a red cat dog on the grass blue sky fox in snow".split()


def build_t5(directory, seed: int = 3) -> Path:
    """A T5 model directory with its tokenizer: a word-level fast tokenizer with T5's special ids (pad 0, eos 1,
    unk 2) and T5's eos appended to every encoding."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {token: i for i, token in enumerate(["<pad>", "</s>", "<unk>"] + T5_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(vocab) + 4, d_model=T2I["caption_dim"], d_kv=4, num_heads=4, num_layers=2,
                      num_decoder_layers=1, d_ff=32, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = T5ForConditionalGeneration(config).eval()
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def reference_t2i_gpt(seed: int = 0, std: float = 0.3) -> gpt_reference.Transformer:
    model = reference_gpt(seed, std, **{k: v for k, v in T2I.items() if k not in GPT})
    with torch.no_grad():
        model.cls_embedding.uncond_embedding.normal_(0.0, 1.0)
    return model


def build_llamagen_t2i(directory, seed: int = 0) -> tuple[Path, Path]:
    """(converted t2i directory, the T5 directory it was converted with)."""
    from hawk_kernels.pipelines.llamagen_convert import convert_llamagen

    directory = Path(directory)
    (directory / "release").mkdir(parents=True, exist_ok=True)
    gpt_path, vq_path = directory / "release" / f"t2i_tiny_{IMAGE_SIZE}.pt", directory / "release" / "vq_tiny.pt"
    torch.save({"model": reference_t2i_gpt(seed).state_dict()}, gpt_path)
    torch.save({"model": reference_vq(seed + 1).state_dict()}, vq_path)
    t5 = build_t5(directory / "flan-t5")
    return convert_llamagen(gpt_path, vq_path, directory / "model", IMAGE_SIZE, n_head=GPT["n_head"], t5=t5), t5
