"""Tiny random-weight checkpoints of the three pipeline families, saved the way released ones are (model,
generation config, tokenizer / processor) so tests load them through exactly the path a user takes
(`hawk_kernels.pipelines.load_pipeline(directory)`). Nothing is downloaded: tokenizers are word-level
`tokenizers` objects built here.

    build_janus(dir)      JanusForConditionalGeneration + JanusProcessor (chat template) + generation config
    build_emu3(dir)       Emu3ForConditionalGeneration + Emu3Processor
    build_chameleon(dir)  ChameleonForConditionalGeneration + tokenizer + vqgan.ckpt (public key names)
"""
from __future__ import annotations

from pathlib import Path

import torch

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256)
WORDS = "a red cat dog on the grass blue sky fox in snow".split()
FIRST_CHAMELEON_IMAGE_ID = 96  # after 41 specials (32 size tokens), the words and signs
JANUS_CHAT = ("{% for message in messages %}<|User|>: {{ message['content'][0]['text'] }}\n\n<|Assistant|>:"
              "{% endfor %}")


def word_tokenizer(specials: list[str], extra: dict | None = None, bos: str = "<s>", add_bos: bool = True, **named):
    """A word-level fast tokenizer: `specials` first (ids 0..), then WORDS, digits and a few signs, then
    `extra` tokens at fixed ids (image tokens). With add_bos, BOS is prepended to every encoding."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(specials + WORDS + list("0123456789x*:"))}
    if extra and min(extra.values()) < len(vocab):
        raise ValueError(f"extra: ids must start at {len(vocab)} or later, after the text tokens")
    vocab.update(extra or {})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, unk_token="<unk>", padding_side="left",
                                   additional_special_tokens=specials, **named)


def _sharpen(linear: torch.nn.Linear, std: float) -> None:
    with torch.no_grad():  # sharper laws than the default init, so drafts and targets differ visibly
        linear.weight.normal_(0.0, std)


def build_janus(directory, codes: int = 16, side: int = 4, dtype=torch.float64, seed: int = 0,
                sharpen: float = 2.0) -> Path:
    """side x side codes (16 px per code: 5 VQ levels), `codes` codebook entries."""
    from transformers import (GenerationConfig, JanusConfig, JanusForConditionalGeneration, JanusImageProcessorPil,
                              JanusProcessor)

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image_placeholder>", "<begin_of_image>", "<end_of_image>",
                "<|User|>", "<|Assistant|>"]
    tokenizer = word_tokenizer(specials, extra_special_tokens={
        "image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"},
        pad_token="<pad>", eos_token="</s>")
    torch.manual_seed(seed)
    config = JanusConfig(
        text_config=dict(model_type="llama", vocab_size=48, pad_token_id=0, bos_token_id=1, eos_token_id=2, **TEXT),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16 * side,
                           patch_size=16, projection_dim=32, num_image_tokens=side * side, mlp_ratio=2.0),
        vq_config=dict(num_embeddings=codes, embed_dim=8, base_channels=32, channel_multiplier=[1, 1, 1, 1, 1],
                       num_res_blocks=1, latent_channels=32, projection_dim=32, image_token_embed_dim=32),
        image_token_id=4)
    model = JanusForConditionalGeneration(config).eval().to(dtype)
    _sharpen(model.model.generation_head.vision_head, sharpen)
    with torch.no_grad():  # image embeddings at the text embeddings' scale, so the prompt still matters
        model.model.generation_embeddings.weight.normal_(0.0, 0.02)
    model.generation_config = GenerationConfig(bos_token_id=1, pad_token_id=0, eos_token_id=2,
                                               generation_kwargs={"boi_token_id": 5})
    image_processor = JanusImageProcessorPil(size={"height": 16 * side, "width": 16 * side}, image_mean=[0.5] * 3,
                                             image_std=[0.5] * 3)
    processor = JanusProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=JANUS_CHAT,
                               num_image_tokens=side * side)
    return _save(directory, model, processor)


def build_emu3(directory, codes: int = 16, dtype=torch.float64, seed: int = 0, sharpen: float = 1.0) -> Path:
    """Visual tokens at ids 64.. (8 px per token: 4 VQ levels), `codes` of them; the processor adds BOS."""
    from transformers import Emu3Config, Emu3ForConditionalGeneration, Emu3ImageProcessor, Emu3Processor

    specials = ["<|endoftext|>", "<|extra_203|>", "<|extra_204|>", "<unk>", "<image>", "<|image start|>",
                "<|image end|>", "<|image token|>", "<|extra_200|>", "<|extra_201|>"]
    visual = {f"<|visual token {c:06d}|>": 64 + c for c in range(codes)}
    tokenizer = word_tokenizer(specials, visual, bos="<|extra_203|>", add_bos=False, pad_token="<|endoftext|>",
                               eos_token="<|extra_204|>", extra_special_tokens={
                                   "image_token": "<image>", "boi_token": "<|image start|>",
                                   "eoi_token": "<|image end|>", "image_wrapper_token": "<|image token|>",
                                   "eof_token": "<|extra_201|>"})
    torch.manual_seed(seed)
    config = Emu3Config(
        text_config=dict(vocab_size=64 + codes, pad_token_id=0, bos_token_id=1, eos_token_id=2, **TEXT),
        vq_config=dict(codebook_size=codes, embed_dim=4, latent_channels=4, base_channels=32,
                       channel_multiplier=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], hidden_size=32,
                       num_attention_heads=1),
        vocabulary_map=dict(tokenizer.get_vocab()))
    model = Emu3ForConditionalGeneration(config).eval().to(dtype)
    _sharpen(model.lm_head, sharpen)
    image_processor = Emu3ImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return _save(directory, model, Emu3Processor(image_processor=image_processor, tokenizer=tokenizer))


def build_chameleon(directory, codes: int = 16, dtype=torch.float64, seed: int = 0, sharpen: float = 1.0,
                    vqgan: bool = True) -> Path:
    """Lumina-mGPT-shaped: image tokens `IMGIMG*` at ids 96.. in a shuffled code order, the size tokens of 32..1024
    px, a 5-level VQ (16 px per code); vqgan.ckpt holds a random decoder under the public checkpoint's names."""
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<racm3:break>", "<eoss>", "<reserved08706>",
                "<reserved08799>"] + [f"<reserved{8800 + n:05d}>" for n in range(1, 33)]
    torch.manual_seed(seed)
    order = torch.randperm(codes).tolist()  # image id i holds code order[i]: the id -> code map is not monotone
    image = {"IMGIMG" + "".join("ABCDEFGHIJ"[int(d)] for d in str(code)) + "Z": FIRST_CHAMELEON_IMAGE_ID + i
             for i, code in enumerate(order)}
    tokenizer = word_tokenizer(specials, image, pad_token="<pad>", eos_token="</s>")
    config = ChameleonConfig(vocab_size=FIRST_CHAMELEON_IMAGE_ID + codes, pad_token_id=0, bos_token_id=1,
                             eos_token_id=2, **TEXT,
                             vocabulary_map=dict(tokenizer.get_vocab()),
                             vq_config=dict(embed_dim=8, num_embeddings=codes, latent_channels=32, resolution=64,
                                            base_channels=32, channel_multiplier=[1, 1, 1, 1, 1], num_res_blocks=1,
                                            attn_resolutions=[]))
    model = ChameleonForConditionalGeneration(config).eval().to(dtype)
    _sharpen(model.lm_head, sharpen)
    directory = _save(directory, model, tokenizer)
    if vqgan:
        torch.save({"state_dict": public_vqgan_state_dict(model)}, directory / "vqgan.ckpt")
    return directory


def public_vqgan_state_dict(model, seed: int = 1) -> dict:
    """A random VQGAN as Meta's vqgan.ckpt names it: the transformers encoder's names (they are the public
    ones), `quantize.embedding`, `quant_conv`, `post_quant_conv`, and `decoder.*` with `decoder.up.0` the
    full-resolution level; plus a training-only entry that loading must ignore."""
    from hawk_kernels.pipelines.chameleon_vqgan import ChameleonVQGANDecoder

    torch.manual_seed(seed)
    vq = model.model.vqmodel
    decoder = ChameleonVQGANDecoder(model.config.vq_config)
    levels = len(decoder.up)
    state = {k: v.float() for k, v in vq.state_dict().items()}  # encoder.*, quantize.*, quant_conv.*, post_quant_conv.*
    for key, value in decoder.state_dict().items():
        if key.startswith("up."):
            index, rest = key[3:].split(".", 1)
            key = f"up.{levels - 1 - int(index)}.{rest}"
        if not key.startswith(("codebook.", "post_quant_conv.")):
            state["decoder." + key] = value
    state["loss.discriminator.main.0.weight"] = torch.zeros(1)
    return state


def _save(directory, model, processor) -> Path:
    directory = Path(directory)
    model.save_pretrained(directory)
    if processor is not None:
        processor.save_pretrained(directory)
    return directory
