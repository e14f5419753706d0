"""The three pipeline families at their RELEASED configurations, with random weights, written the way the
converted checkpoints are laid out, so `hawk_kernels.load_pipeline(directory)` loads them exactly as a user loads
the real ones (issue 22). Nothing is downloaded.

    build("janus", dir)                   Janus-Pro-7B as transformers' Janus classes read it (the -hf conversion)
    build("emu3", dir)                    Emu3-Gen's -hf conversion (Emu3ForConditionalGeneration + Emu3Processor)
    build("chameleon", dir)               Lumina-mGPT-7B-768 through the Chameleon classes, with Meta's VQGAN file
                                          at chameleon/tokenizer/vqgan.ckpt (Lumina-mGPT's ckpts/ layout)
    build(family, dir, scale="full")      the 7B shapes (GPU sessions only: 14-17 GB of bf16 weights)
    build("llamagen" | "llamagen_3b", dir) LlamaGen-XL / -3B 384 px (c2i): tests/real_shapes_llamagen.py's builder
                                          (not a transformers model: the directory convert_llamagen writes)
    build("llamagen_t2i", dir)            LlamaGen-XL text-to-image 512 px with its T5 (flan-t5-xl's encoder),
                                          the same builder (convert_llamagen with t5=)

scale="reduced" (CI): 2 layers and hidden size 64 (REDUCED), everything else released: the vocabulary sizes, the
special-token ids, the prompt template and processor, the VQ configurations (full channel counts, so the VQ
models decode the full-resolution grids: 384 px Janus, 720 px Emu3, 768 px Lumina-mGPT) and the position
ranges. scale="full": the released language-model shapes as well. Weights are random (seeded), stored bf16 as
released. `vq="reduced"` keeps every VQ field but the channel counts (base_channels 32): same codebooks, code
dimensions, levels (pixels per code) and attention placement, a small fraction of the decode time on a CPU.

What is NOT the released checkpoint: the weights (random), and the text BPE. The tokenizers here are byte-level
BPEs without merges (one id per UTF-8 byte, the 256 byte tokens in GPT-2's byte order at BYTE_IDS[family]),
so prompts are longer than the real tokenizers make them; every special token, image token and the vocabulary
size are the released ones. Values that come from memory of the released files rather than from a source
readable here are listed in UNVERIFIED (and marked in the comments).

Sources (all public): transformers 5.25's configuration classes (their defaults are the checkpoints named in
their docstrings) and its conversion scripts `convert_{janus,emu3,chameleon}_weights_to_hf.py` (huggingface/
transformers, src/transformers/models/*/); the families' repositories (deepseek-ai/Janus
janus/models/processing_vlm.py; Alpha-VLLM/Lumina-mGPT lumina_mgpt/model/chameleon_vae_ori/vocab.py and
inference_solver.py); the Emu3 config.json as reproduced in public code (e.g. mindone's Emu3 tests:
img/boi/eoi/eol/eof/bos/eos/pad ids, vocab_size 184622).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tests import real_shapes_llamagen as llamagen

FAMILIES = ("janus", "emu3", "chameleon", *llamagen.FAMILIES)
SCALES = ("full", "reduced")
NAMES = {"janus": "Janus-Pro-7B", "emu3": "Emu3-Gen", "chameleon": "Lumina-mGPT-7B-768", **llamagen.NAMES}
# Reduced language models: 2 layers, hidden 64 (head dim 16), the released vocabularies.
REDUCED = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
REDUCED_VQ_CHANNELS = 32  # vq="reduced": GroupNorm(32) needs >= 32 channels

# Where the 256 byte tokens of our merge-free byte-level BPEs sit (inside each family's text-id range; the real
# BPE vocabularies are not reproduced).
BYTE_IDS = {"janus": 0, "emu3": 0, "chameleon": 9004}

UNVERIFIED = {  # recalled from the released files, not confirmed from a source readable in this repository
    "janus.boi_token_id": "100016 (<begin_of_image>, generation_config.generation_kwargs of deepseek-community/"
                          "Janus-Pro-7B)",
    "janus.eoi_token_id": "100593 (<end_of_image>)",
    "janus.user_assistant_ids": "<|User|> 100588, <|Assistant|> 100589",
    "janus.pad_is_pad_token": "100002 is the id Janus-Pro's tokenizer pads with (public dump in "
                              "PKU-YuanGroup/UniLLM inferscripts/test_text_tokenizer.py); that its text is "
                              "<｜▁pad▁｜> (the tag Janus's VLChatProcessor and the conversion read) is assumed",
    "emu3.image_placeholder_id": "<image> (the -hf processor's understanding placeholder) at 184622, past the "
                                 "embedding rows: it is replaced before embedding and never generated",
    "chameleon.special_ids": "<s> 0, <pad> 1, </s> 2, <unk> 3 (facebook/chameleon-7b config: bos 0, pad 1, "
                             "eos 2)",
    "chameleon.reserved_block": "<reservedNNNNN> at id NNNNN + 4 for NNNNN in 8194..8999 (the ids the code base "
                                "uses: <reserved08706> 8710, <reserved08799> 8803, size tokens 8805..8836)",
    "chameleon.max_position_embeddings": "4096 (transformers' Chameleon conversion rule for rope_theta 10000; "
                                         "the 768 px image needs 2,352 body positions)",
    "chameleon.attn_resolutions": "[] (Meta's vqgan.yaml; transformers' default None means the same)",
}


@dataclass
class Built:
    directory: Path
    model: object  # the transformers model written there (on `device`, in the dtype it was built)
    family: str
    scale: str


def build(family: str, directory, scale: str = "reduced", vq: str = "full", seed: int = 0,
          save_weights: bool = True, device="cpu", dtype=torch.bfloat16, janus_side: int | None = None) -> Built:
    """Write `family` at `scale` into `directory` (created) and return it with the model. save_weights=False
    writes every file except the weights (config, generation config, processor, VQGAN file), for a benchmark
    that keeps the model it built in memory (a 7B model is not worth a 15 GB write and read per run).
    janus_side: codes per side of a Janus or LlamaGen image (default the released 24, LlamaGen t2i 32; the
    benchmark's smoke run uses 4)."""
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    if scale not in SCALES or vq not in ("full", "reduced"):
        raise ValueError(f"scale, vq: expected one of {SCALES} and 'full'/'reduced', got {scale!r}, {vq!r}")
    if family in llamagen.FAMILIES:
        return llamagen.build_llamagen(family, directory, scale, vq, seed, save_weights, device, dtype, janus_side)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    options = {"side": janus_side} if family == "janus" and janus_side is not None else {}
    config, processor, generation = _BUILDERS[family](scale, vq, **options)
    model = _random_model(family, config, seed, device, dtype)
    if generation is not None:
        model.generation_config = generation
    if save_weights:
        model.save_pretrained(directory)
    else:
        model.config.save_pretrained(directory)
        model.generation_config.save_pretrained(directory)
    processor.save_pretrained(directory)
    if family == "chameleon":
        _write_vqgan(model, directory / "chameleon" / "tokenizer", seed + 1)
    (directory / "real_shapes.json").write_text(json.dumps(
        {"family": family, "released": NAMES[family], "scale": scale, "vq": vq, "seed": seed,
         "weights": "random", "note": "tests/real_shapes.py: released configuration, random weights"}, indent=1))
    return Built(directory, model, family, scale)


def _random_model(family: str, config, seed: int, device, dtype):
    import transformers

    torch.manual_seed(seed)
    cls = getattr(transformers, {"janus": "JanusForConditionalGeneration", "emu3": "Emu3ForConditionalGeneration",
                                 "chameleon": "ChameleonForConditionalGeneration"}[family])
    with torch.device(device):
        model = cls._from_config(config, dtype=dtype)
    return model.eval()


def _text(scale: str, released: dict) -> dict:
    """The released text-model fields, with REDUCED's at the reduced scale (the KV-head ratio kept)."""
    if scale == "full":
        return dict(released)
    out = dict(released, **REDUCED)
    out["num_key_value_heads"] = max(1, REDUCED["num_attention_heads"] * released["num_key_value_heads"]
                                    // released["num_attention_heads"])
    return out


def _vq(vq: str, released: dict) -> dict:
    if vq == "full":
        return dict(released)
    out = dict(released, base_channels=REDUCED_VQ_CHANNELS)
    if "hidden_size" in released:  # Emu3's VQ attention width: the deepest level's channels (1024 = 256 x 4)
        out["hidden_size"] = REDUCED_VQ_CHANNELS * released["channel_multiplier"][-1]
    return out


# --- tokenizers -----------------------------------------------------------------------------------------------
def _byte_chars() -> list[str]:
    """The 256 byte symbols of byte-level BPEs, in GPT-2's order (printable bytes first)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, extra = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def byte_level_tokenizer(first_byte_id: int, specials: dict, vocab_only: dict | None = None, bos: str | None = None,
                         **named):
    """A byte-level BPE without merges: bytes at first_byte_id.., `specials` {text: id} as special added tokens
    (split out of any text), `vocab_only` {text: id} in the vocabulary only (image tokens: decodable, in
    get_vocab() and so in config.vocabulary_map, never produced from text). With `bos`, every encoding starts
    with it (as Llama-style tokenizers add BOS)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {c: first_byte_id + i for i, c in enumerate(_byte_chars())}
    for table in (specials, vocab_only or {}):
        clash = {t: i for t, i in table.items() if i in set(vocab.values()) and vocab.get(t) != i}
        if clash:
            raise ValueError(f"token ids collide with the byte tokens or each other: {list(clash)[:3]}")
        vocab.update(table)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, specials[bos])])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, padding_side="left", **named)


# --- Janus-Pro-7B ------------------------------------------------------------------------------------------------
# text_config: deepseek-ai/Janus-Pro-7B config.json "language_config" (DeepSeek-LLM-7B), the keys transformers'
# convert_janus_weights_to_hf.py copies; the converter adds pad/bos/eos from the tokenizer.
JANUS_TEXT = dict(model_type="llama", vocab_size=102400, hidden_size=4096, intermediate_size=11008,
                  num_hidden_layers=30, num_attention_heads=32, num_key_value_heads=32, hidden_act="silu",
                  max_position_embeddings=16384, bos_token_id=100000, eos_token_id=100001, pad_token_id=100002)
# vq_config: convert_janus_weights_to_hf.py builds JanusVQVAEConfig from gen_vision_config (n_embed 8,
# image_token_size 16384), gen_aligner_config (n_embed 4096) and gen_head_config (image_token_embed 4096); the rest
# are JanusVQVAEConfig's defaults (LlamaGen's VQ-16: 128 base channels, [1, 1, 2, 2, 4], 2 res blocks, 256 latent).
JANUS_VQ = dict(embed_dim=8, num_embeddings=16384, projection_dim=4096, image_token_embed_dim=4096,
                base_channels=128, channel_multiplier=[1, 1, 2, 2, 4], num_res_blocks=2, latent_channels=256)
# vision_config: image_size 384 (siglip_large_patch16_384), aligner n_embed 4096 and depth 2 (the converter's
# keys); JanusVisionConfig's defaults are SigLIP-L (hidden 1024, 24 layers, 16 heads, patch 16, 576 tokens).
JANUS_VISION = dict(image_size=384, patch_size=16, projection_dim=4096, depth=2, hidden_size=1024,
                    num_hidden_layers=24, num_attention_heads=16, num_image_tokens=576)
JANUS_IMAGE_TOKEN_ID = 100581  # <image_placeholder>: JanusConfig's default image_token_id (the converter's value)
JANUS_SPECIALS = {"<｜begin▁of▁sentence｜>": 100000, "<｜end▁of▁sentence｜>": 100001,  # DeepSeek-LLM BOS, EOS
                  "<｜▁pad▁｜>": 100002,  # UNVERIFIED["janus.pad_is_pad_token"]
                  "<begin_of_image>": 100016, "<end_of_image>": 100593,  # UNVERIFIED janus.boi / eoi
                  "<image_placeholder>": JANUS_IMAGE_TOKEN_ID,
                  "<|User|>": 100588, "<|Assistant|>": 100589}  # UNVERIFIED janus.user_assistant_ids
# The chat template transformers' convert_janus_weights_to_hf.py saves with the processor (CHAT_TEMPLATE there).
JANUS_CHAT_TEMPLATE = (
    "{%set seps=['\n\n','<\uff5cend\u2581of\u2581sentence\uff5c>']%}"
    "{%set i=0%}"
    "{%for message in messages%}"
    "{%if message['role']|lower=='user'%}"
    "<|User|>: "
    "{%elif message['role']|lower=='assistant'%}"
    "<|Assistant|>:{%if not (loop.last and not add_generation_prompt and message['content'][0]['type']=='text' and "
    "message['content'][0]['text']=='')%} {%endif%}"
    "{%else%}"
    "{{message['role'].capitalize()}}: "
    "{%endif%}"
    "{%for content in message['content']%}"
    "{%if content['type']=='image'%}"
    "{%if not loop.first%}{{'\n'}}{%endif%}"
    "<image_placeholder>"
    "{%if not loop.last%}{{'\n'}}{%endif%}"
    "{%elif content['type']=='text'%}"
    "{%set text=content['text']%}"
    "{%if loop.first%}{%set text=text.lstrip()%}{%endif%}"
    "{%if loop.last%}{%set text=text.rstrip()%}{%endif%}"
    "{%if not loop.first and message['content'][loop.index0-1]['type']=='text'%}"
    "{{' '+text}}"
    "{%else%}"
    "{{text}}"
    "{%endif%}"
    "{%endif%}"
    "{%endfor%}"
    "{%if not loop.last or add_generation_prompt%}"
    "{%if message['role']|lower=='user'%}"
    "{{seps[0]}}"
    "{%else%}"
    "{{seps[1]}}"
    "{%endif%}"
    "{%endif%}"
    "{%endfor%}"
    "{%if add_generation_prompt%}<|Assistant|>:{%endif%}"
)


def _janus(scale: str, vq: str, side: int = 24):
    from transformers import GenerationConfig, JanusConfig, JanusImageProcessor, JanusProcessor

    vision = dict(JANUS_VISION, image_size=16 * side, num_image_tokens=side * side)
    text = _text(scale, JANUS_TEXT)
    vq_config = _vq(vq, JANUS_VQ)
    if scale == "reduced":  # the understanding tower is not on the generation path: shrink it, keep its 576 tokens
        vision.update(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, projection_dim=text["hidden_size"])
        vq_config.update(projection_dim=text["hidden_size"], image_token_embed_dim=text["hidden_size"])
    config = JanusConfig(text_config=text, vision_config=vision, vq_config=vq_config,
                         image_token_id=JANUS_IMAGE_TOKEN_ID)
    tokenizer = byte_level_tokenizer(
        BYTE_IDS["janus"], JANUS_SPECIALS, bos="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>",
        pad_token="<｜▁pad▁｜>", model_max_length=16384,
        extra_special_tokens={"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>",
                              "eoi_token": "<end_of_image>"})
    # preprocessor_config.json of Janus-Pro-7B: 384 px, mean = std = 0.5 (the converter copies these keys)
    image_processor = JanusImageProcessor(size={"height": 16 * side, "width": 16 * side}, image_mean=[0.5] * 3,
                                          image_std=[0.5] * 3, min_size=14)
    processor = JanusProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               chat_template=JANUS_CHAT_TEMPLATE, use_default_system_prompt=True,
                               num_image_tokens=side * side)
    # the converter's generation config: temperature 1, guidance 5, pad = <｜▁pad▁｜>, boi = <begin_of_image>
    generation = GenerationConfig(bos_token_id=100000, eos_token_id=100001, pad_token_id=100002, temperature=1.0,
                                  guidance_scale=5.0, generation_kwargs={"boi_token_id": 100016})
    return config, processor, generation


# --- Emu3-Gen ----------------------------------------------------------------------------------------------------
# Emu3-Gen's config.json (custom code; its ids reproduced in public code, e.g. mindone's Emu3 tests):
# vocab_size 184622 = 151643 Qwen text ids + <|endoftext|>, <|im_start|>, <|im_end|> + <|extra_0..204|> +
# <|image token|> 151851, <|image start|> 151852, <|image end|> 151853 + 32768 visual tokens from 151854.
# Shapes: Emu3TextConfig's defaults (transformers; hidden 4096, 32 layers, 32 heads / 8 KV heads, 14336 MLP,
# rope_theta 1e6); max_position_embeddings 9216 fits the 720 px image (90 x 91 = 8,190 tokens) and its prompt.
EMU3_TEXT = dict(vocab_size=184622, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=9216,
                 rms_norm_eps=1e-5,  # rope_theta: Emu3TextConfig.default_theta, 1e6
                 pad_token_id=151643, bos_token_id=151849, eos_token_id=151850)
# vq_config: Emu3VQVAEConfig's defaults = BAAI/Emu3-VisionTokenizer's config (codebook 32768, embed 4, 256 base
# channels, [1, 2, 2, 4]: 8 px per token, attention at level 3, temporal factor 4).
EMU3_VQ = dict(codebook_size=32768, embed_dim=4, latent_channels=4, base_channels=256,
               channel_multiplier=[1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[3], temporal_downsample_factor=4,
               hidden_size=1024, num_attention_heads=1)
EMU3_FIRST_VISUAL = 151854
EMU3_CODES = 32768
EMU3_SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                 **{f"<|extra_{i}|>": 151646 + i for i in range(205)},  # <|extra_200|> EOL 151846, 201 EOF,
                 #                                                        203 BOS 151849, 204 EOS 151850
                 "<|image token|>": 151851, "<|image start|>": 151852, "<|image end|>": 151853,
                 "<image>": 184622}  # UNVERIFIED["emu3.image_placeholder_id"]


def _emu3(scale: str, vq: str):  # noqa: D103
    from transformers import Emu3Config, Emu3ImageProcessor, Emu3Processor, GenerationConfig

    visual = {f"<|visual token {k:06d}|>": EMU3_FIRST_VISUAL + k for k in range(EMU3_CODES)}
    # the -hf tokenizer (convert_emu3_weights_to_hf.py, convert_tiktoken): bos <|extra_203|>, eos <|extra_204|>,
    # pad <|endoftext|>, and the processor's named tokens; the processor adds BOS itself (no post-processor)
    tokenizer = byte_level_tokenizer(
        BYTE_IDS["emu3"], EMU3_SPECIALS, visual, eos_token="<|extra_204|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "boi_token": "<|image start|>", "eoi_token": "<|image end|>",
                              "image_wrapper_token": "<|image token|>", "eof_token": "<|extra_201|>"})
    tokenizer.bos_token = "<|extra_203|>"
    config = Emu3Config(text_config=_text(scale, EMU3_TEXT), vq_config=_vq(vq, EMU3_VQ),
                        vocabulary_map=dict(tokenizer.get_vocab()))  # the converter: tokenizer.json's vocab
    # BAAI/Emu3-VisionTokenizer preprocessor_config.json: mean = std = 0.5, 512^2..1024^2 px, 8 px per token
    image_processor = Emu3ImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, min_pixels=512 * 512,
                                         max_pixels=1024 * 1024, spatial_factor=8)
    processor = Emu3Processor(image_processor=image_processor, tokenizer=tokenizer)
    generation = GenerationConfig(bos_token_id=151849, eos_token_id=151850, pad_token_id=151643)
    return config, processor, generation


# --- Lumina-mGPT-7B-768 (Chameleon-7B) -----------------------------------------------------------------------------
# Shapes: ChameleonConfig's defaults (= facebook/chameleon-7b, which Lumina-mGPT-7B fine-tunes: 65536 ids, hidden
# 4096, 32 layers / heads / KV heads, intermediate 11008 = the converter's compute_intermediate_size(4096)).
CHAMELEON_TEXT = dict(vocab_size=65536, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5,
                      max_position_embeddings=4096,  # UNVERIFIED["chameleon.max_position_embeddings"]
                      bos_token_id=0, eos_token_id=2, pad_token_id=1)  # UNVERIFIED["chameleon.special_ids"]
# vq_config: Meta's tokenizer/vqgan.yaml as the converter maps it = ChameleonVQVAEConfig's defaults (8192 codes of
# 256, 128 base channels, [1, 1, 2, 2, 4]: 16 px per code, 2 res blocks, 256 latent channels, resolution 512).
CHAMELEON_VQ = dict(embed_dim=256, num_embeddings=8192, latent_channels=256, resolution=512, base_channels=128,
                    channel_multiplier=[1, 1, 2, 2, 4], num_res_blocks=2,
                    attn_resolutions=[])  # UNVERIFIED["chameleon.attn_resolutions"]
CHAMELEON_FIRST_IMAGE = 4  # IMGIMG* tokens 4..8195 (docs/method.md; ImageGrid.lumina_mgpt)


def chameleon_image_token(code: int) -> str:
    """Chameleon's name of VQ code `code`: IMGIMG + its decimal digits as letters A..J + Z (the inverse of the
    `bpe2img` remap in Lumina-mGPT's chameleon_vae_ori/vocab.py and transformers' vocabulary mapping)."""
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


def _chameleon(scale: str, vq: str):
    from transformers import ChameleonConfig, GenerationConfig

    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<eoss>": 8196, "<racm3:break>": 8197,
                **{f"<reserved{n:05d}>": n + 4 for n in range(8194, 9000)}}
    # transformers' converter renames <reserved08707> to <image> (the understanding placeholder)
    specials["<image>"] = specials.pop("<reserved08707>")
    # ids 4.. hold the codes in order: Lumina-mGPT's VocabTranslation.convert_bpe2img pairs the sorted ids with the
    # sorted codes (searchsorted), which is right only for a monotone id -> code map
    image = {chameleon_image_token(code): CHAMELEON_FIRST_IMAGE + code for code in range(8192)}
    tokenizer = byte_level_tokenizer(BYTE_IDS["chameleon"], specials, image, bos="<s>", eos_token="</s>",
                                     pad_token="<pad>", unk_token="<unk>")
    config = ChameleonConfig(**_text(scale, CHAMELEON_TEXT), vq_config=_vq(vq, CHAMELEON_VQ),
                             vocabulary_map=dict(tokenizer.get_vocab()))
    generation = GenerationConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1)
    return config, tokenizer, generation


def _write_vqgan(model, directory: Path, seed: int) -> None:
    """Meta's VQGAN file (tokenizer/vqgan.ckpt: {"state_dict": ...} under the public key names; encoder = the
    model's own VQ encoder weights, decoder random) and its vqgan.yaml, where Lumina-mGPT keeps them."""
    from tests.tiny_families import public_vqgan_state_dict

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.to("cpu", torch.float32) for k, v in public_vqgan_state_dict(model, seed).items()}
    torch.save({"state_dict": state}, directory / "vqgan.ckpt")
    vq = model.config.vq_config
    (directory / "vqgan.yaml").write_text(
        "model:\n  params:\n"
        f"    embed_dim: {vq.embed_dim}\n    n_embed: {vq.num_embeddings}\n    ddconfig:\n"
        f"      double_z: false\n      z_channels: {vq.latent_channels}\n      resolution: {vq.resolution}\n"
        f"      in_channels: 3\n      out_ch: 3\n      ch: {vq.base_channels}\n"
        f"      ch_mult: {list(vq.channel_multiplier)}\n      num_res_blocks: {vq.num_res_blocks}\n"
        f"      attn_resolutions: {list(vq.attn_resolutions or [])}\n      dropout: 0.0\n")


_BUILDERS = {"janus": _janus, "emu3": _emu3, "chameleon": _chameleon}

# Released layouts the tests and the benchmark check against (ids as above).
RELEASED_GRIDS = {"janus": dict(size=None, pixels=384, height=24, width=24, row_end=None, codes=16384),
                  "emu3": dict(size=720, pixels=720, height=90, width=90, row_end=151846, codes=32768),
                  "chameleon": dict(size=768, pixels=768, height=48, width=48, row_end=8803, codes=8192)}
