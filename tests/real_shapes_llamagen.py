"""LlamaGen (FoundationVision/LlamaGen: class-conditional "c2i" and text-to-image "t2i") at its RELEASED
configurations, with random weights, in the directory `convert_llamagen` writes from the released files, so
`hawk_kernels.load_pipeline(directory)` loads it exactly as a user loads the converted real one (issue 22's "real
shapes"). Nothing is downloaded.

    build_llamagen("llamagen", dir)            LlamaGen-XL 384 px (c2i_XL_384.pt): the common release
    build_llamagen("llamagen_3b", dir)         LlamaGen-3B 384 px (c2i_3B_384.pt): the largest
    build_llamagen("llamagen_t2i", dir)        LlamaGen-XL text-to-image, stage 2, 512 px (t2i_XL_stage2_512.pt),
                                               with its T5 (google/flan-t5-xl's encoder) and VQ (vq_ds16_t2i.pt)
    build_llamagen(family, dir, scale="full")  the released GPT size (GPU sessions: 3.1 / 12.4 GB in float32; t2i:
                                               3.1 GB and flan-t5-xl's 1.2B-parameter encoder, 4.9 GB)

tests/real_shapes.build(family, ...) dispatches these family names here (LlamaGen is not a transformers model,
so it has a builder of its own).

How the directory is written. scale="reduced" (CI): upstream-format files first, as released, into `release_dir`
(default: a temporary directory, removed after the conversion) -- the GPT as `c2i_XL_384.pt` ({"model":
state_dict}, the DDP format) or `c2i_3B_384.pt` (a bare state dict: the FSDP format, README's `--from-fsdp`), the
VQ tokenizer as `vq_ds16_c2i.pt` ({"model": state_dict}, written by upstream's own VQModel module, transcribed in
tests/llamagen_reference_vq.py, so its training-time `quantize.codebook_used` buffer is there as in the release)
-- then `convert_llamagen(gpt, vq, directory, 384)`, exactly as `hawk convert-llamagen` does. scale="full": the
same conversion steps (`gpt_config` reads the config from the weights' shapes, `_check_gpt` checks them, `_write`
writes config.json, model.safetensors and vq_model.safetensors) on the state dict in memory: a 12 GB .pt written
only to be read back would be wasteful. save_weights=False writes everything but model.safetensors (the
benchmark keeps the model it built on the GPU).

scale="reduced": 2 layers of 2 heads at the RELEASED head dimension (so width 128 for XL's 64-dim heads, 200 for
3B's 100-dim heads: the 2D rotary table has the released frequencies, 16 per axis for XL and 25 for 3B), and
everything else released: 16384 codes, 1000 classes + the null class (1001 class rows), the 24 x 24 grid
(block_size 576), the VQ-16 tokenizer at full channels (ch 128, multipliers (1, 1, 2, 2, 4): its decoder makes a
real 384 x 384 px image). vq="reduced": the VQ's base channels 32 (same codebook, levels and attention), for the
benchmark's smoke run. side: codes per side (default the released 24, t2i 32; the smoke run uses 4).

Text-to-image ("llamagen_t2i", LlamaGen-XL stage 2): the GPT is GPT-XL with a caption condition -- 120 caption
positions (cls_token_num) of T5 width 2048 (caption_dim) through cls_embedding.cap_proj, the learned null caption
cls_embedding.uncond_embedding [120, 2048] -- on the 32 x 32 grid (block_size 1024, 512 px), 16384 codes, VQ-16
(vq_ds16_t2i.pt: the same VQ_16 architecture as vq_ds16_c2i.pt, README: both 72M). Its captions come from
google/flan-t5-xl's encoder, written as transformers saves flan-t5-xl (T5ForConditionalGeneration, config.json,
model.safetensors, the tokenizer) under `release_dir/t5-ckpt/flan-t5-xl` (sample_t2i.py's --t5-path
pretrained_models/t5-ckpt and --t5-model-type flan-t5-xl), then `convert_llamagen(gpt, vq, directory, 512,
t5=that directory)` copies its encoder and tokenizer into text_encoder/. scale="reduced": the GPT reduced as
above (2 layers of 2 64-dim heads: width 128), everything else released (120 caption positions of width 2048,
the 32 x 32 grid, the full-channel VQ-16: a real 512 x 512 px decode); the T5 has REDUCED_T5_LAYERS encoder layers
(and no decoder layers: LlamaGen runs only the encoder) of the released shape: d_model 2048, 32 heads of 64, gated-
GELU feed-forward 5120, its 32128-row vocabulary and special ids. scale="full": flan-t5-xl's 24 encoder layers too
(built in memory as T5EncoderModel, the part the converter keeps). NOT the released T5: the tokenizer. The real
one is a SentencePiece model (spiece.model, 32000 pieces + 100 <extra_id_N>), which cannot be had offline; here
it is a word-level fast tokenizer with T5's special ids (pad 0, eos 1 appended to every caption as T5's is, unk 2)
and the words of T2I_PROMPTS at ids 3.., as tests/tiny_llamagen.build_t5 makes it: captions are shorter or
longer in ids than the real tokenizer makes them, every id is inside the 32128-row embedding.

Weights: normal(0, 0.02) (upstream's `_init_weights` std; its output head, which upstream zeroes at init, is
random too, or every logit would tie), RMSNorm weights 1, seeded; t2i's null caption normal(0, 1 / sqrt(2048))
(upstream CaptionEmbedder's randn / in_channels ** 0.5). The VQ keeps PyTorch's default init (seeded). The T5:
the normal stds of transformers' T5PreTrainedModel._init_weights (embedding 1, q (d_model d_kv)^-1/2, k and v
d_model^-1/2, o (heads d_kv)^-1/2, wi d_model^-1/2, wo d_ff^-1/2, relative bias d_model^-1/2), norms 1, seeded.

Sources (upstream at commit ce98ec4, mirrored at /work/.mirror/FoundationVision+LlamaGen/repo):
  README.md, "Class-conditional image generation on ImageNet": "LlamaGen-XL | 775M | DDP | 24x24 | ... |
    c2i_XL_384.pt" (its link text misspells it c2i_X_384L.pt; the URL is c2i_XL_384.pt), "LlamaGen-3B | 3.1B |
    FSDP | 24x24 | ... | c2i_3B_384.pt", "vq_ds16_c2i | 72M | 24x24 | ... | vq_ds16_c2i.pt"; the demo command
    `sample_c2i.py --vq-ckpt vq_ds16_c2i.pt --gpt-ckpt c2i_XXL_384.pt --gpt-model GPT-XXL --from-fsdp
    --image-size 384` (FSDP releases are bare state dicts);
  autoregressive/models/gpt.py: GPT_XL = ModelArgs(n_layer=36, n_head=20, dim=1280) "# 775M", GPT_3B =
    ModelArgs(n_layer=24, n_head=32, dim=3200) "# 3.1B"; ModelArgs: num_classes 1000, class_dropout_prob 0.1
    (so LabelEmbedder has num_classes + 1 rows: the CFG null class), cls_token_num 1, vocab_size 16384;
  autoregressive/sample/sample_c2i.py: --image-size 384 (default; choices 256/384/512), --downsample-size 16,
    --codebook-size 16384, --codebook-embed-dim 8, --num-classes 1000, --cls-token-num 1, latent_size =
    image_size // downsample_size (24), block_size = latent_size ** 2 (576), --cfg-scale 4.0, --top-k 2000,
    class_labels = [207, 360, 387, 974, 88, 979, 417, 279];
  tokenizer/tokenizer_image/vq_model.py: VQ_16 = ModelArgs(encoder_ch_mult=[1, 1, 2, 2, 4], decoder_ch_mult=[1,
    1, 2, 2, 4]), Encoder/Decoder ch=128, num_res_blocks=2, z_channels 256 (LlamaGenVQConfig's defaults).
t2i, same commit:
  README.md, "Text-conditional image generation": "vq_ds16_t2i | 72M | ... | vq_ds16_t2i.pt", "LlamaGen-XL | 775M |
    32x32 | internal data (10M) | t2i_XL_stage2_512.pt" (https://huggingface.co/peizesun/llamagen_t2i), the demo
    `sample_t2i.py --vq-ckpt vq_ds16_t2i.pt --gpt-ckpt t2i_XL_stage2_512.pt --gpt-model GPT-XL --image-size 512`;
  autoregressive/sample/sample_t2i.py: --t5-path pretrained_models/t5-ckpt, --t5-model-type flan-t5-xl,
    --t5-feature-max-len 120, --t5-feature-dim 2048, --cls-token-num 120, --gpt-type t2i, --image-size 512
    (default), --downsample-size 16, --codebook-size 16384, --cfg-scale 7.5, --top-k 1000, its four prompts
    (T2I_PROMPTS), the GPT file read from "model" / "module" / "state_dict" (no bare state dict);
  autoregressive/train/train_t2i.py: saves {"model", "optimizer", "steps", "args"}; --cls-token-num 120;
  language/README.md: "Download flan-t5-xl models from flan-t5-xl (https://huggingface.co/google/flan-t5-xl)";
  language/t5.py: T5Embedder loads AutoTokenizer and T5EncoderModel from that directory, pads captions to
    model_max_length (120) and takes the encoder's last_hidden_state;
  autoregressive/models/gpt.py: CaptionEmbedder(in_channels=caption_dim, hidden_size=dim, uncond_prob,
    token_num=cls_token_num): cap_proj MLP (fc1 caption_dim -> dim, tanh GELU, fc2 dim -> dim, no biases),
    uncond_embedding = randn(token_num, in_channels) / in_channels ** 0.5 (a buffer); ModelArgs.caption_dim 2048.
flan-t5-xl's encoder (T5_XL): its config.json as published (huggingface.co/google/flan-t5-xl, config.json; the
values read here from a public copy whose _name_or_path is google/flan-t5-xl: huggingface.co/w4ffl35/
flan-t5-xl-8bit, commit 53b27b7): d_model 2048, d_kv 64, d_ff 5120, num_heads 32, num_layers 24,
num_decoder_layers 24, feed_forward_proj "gated-gelu", relative_attention_num_buckets 32, relative_attention_
max_distance 128, layer_norm_epsilon 1e-6, pad_token_id 0, eos_token_id 1, decoder_start_token_id 0; transformers
5.25's T5Config (configuration_t5.py: vocab_size 32128, pad 0, eos 1 by default; "gated-gelu" is T5 v1.1's
feed-forward, dense_act_fn gelu_new) and T5Tokenizer (tokenization_t5.py: "<pad>=0, </s>=1, <unk>=2", 100
extra ids). What could not be read from a source here is in UNVERIFIED.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from hawk_kernels.backbones.llamagen_gpt import GPT_SIZES, LlamaGenConfig, LlamaGenModel
from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQConfig


VQ_FILE, T2I_VQ_FILE = "vq_ds16_c2i.pt", "vq_ds16_t2i.pt"
IMAGE_SIZE, PIXELS_PER_CODE, SIDE = 384, 16, 24  # sample_c2i.py: --image-size 384, --downsample-size 16


@dataclass(frozen=True)
class Release:
    name: str  # upstream README's method name
    gpt_model: str  # upstream's GPT_models key (gpt.py)
    gpt_file: str  # the released GPT file
    fsdp: bool  # trained with FSDP: released as a bare state dict (README: --from-fsdp)
    parameters: float  # README's "params"
    image_size: int = IMAGE_SIZE  # px (the file name says it)
    vq_file: str = VQ_FILE
    t2i: bool = False  # text-to-image: captions of T5 (flan-t5-xl) instead of a class label


RELEASES = {"llamagen": Release("LlamaGen-XL", "GPT-XL", "c2i_XL_384.pt", False, 775e6),
            "llamagen_3b": Release("LlamaGen-3B", "GPT-3B", "c2i_3B_384.pt", True, 3.1e9),
            "llamagen_t2i": Release("LlamaGen-XL text-to-image", "GPT-XL", "t2i_XL_stage2_512.pt", False, 775e6,
                                    image_size=512, vq_file=T2I_VQ_FILE, t2i=True)}
FAMILIES = tuple(RELEASES)
C2I_FAMILIES = tuple(f for f, r in RELEASES.items() if not r.t2i)
NAMES = {family: f"{r.name} {r.image_size} px ({r.gpt_file})" for family, r in RELEASES.items()}
NUM_CLASSES, CODES = 1000, 16384
CLASS_LABELS = (207, 360, 387, 974, 88, 979, 417, 279)  # sample_c2i.py's class_labels
REDUCED = dict(n_layer=2, n_head=2)  # width = 2 x the released head dimension
REDUCED_VQ_CHANNELS = 32  # vq="reduced": GroupNorm(32) needs >= 32 channels
INIT_STD = 0.02  # upstream gpt.py _init_weights (initializer_range)
CAPTION_DIM, CAPTION_TOKENS = 2048, 120  # sample_t2i.py: --t5-feature-dim 2048, --cls-token-num 120
T5_DIR = "t5-ckpt/flan-t5-xl"  # under release_dir: sample_t2i.py's --t5-path / --t5-model-type
T5_XL = dict(vocab_size=32128, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32,
             feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128,
             layer_norm_epsilon=1e-6, dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
             tie_word_embeddings=False)  # google/flan-t5-xl's config.json (see the module docstring)
T5_SPECIAL = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 (transformers' T5Tokenizer)
REDUCED_T5_LAYERS = 1  # scale="reduced": encoder layers (the released layer shape), no decoder layers
T2I_PROMPTS = (  # sample_t2i.py's prompts, as written there ("grassin" included)
    "A portrait photo of a kangaroo wearing an orange hoodie and blue sunglasses standing on the grassin front of the "
    "Sydney Opera House holding a sign on the chest that says Welcome Friends!",
    "A blue Porsche 356 parked in front of a yellow brick wall.",
    "A photo of an astronaut riding a horse in the forest. There is a river in front of them with water lilies.",
    "A map of the United States made out of sushi. It is on a table next to a glass of red wine.",
)
T2I_WORDS = "a red fox in the snow , highly detailed cat dog on grass"  # the tests' and the benchmark's prompts
UNVERIFIED = {  # recalled about the released files, not confirmed from a source readable here
    "gpt_dtype": "the released c2i_*.pt hold float32 weights (recalled from the published file sizes, ~4 bytes "
                 "per parameter; the repository does not state it: sample_c2i.py casts the model to --precision "
                 "and loads whatever the file holds); the .pt files here are float32",
    "ddp_file_keys": "the DDP releases hold {'model': state_dict} (train_c2i.py saves optimizer, steps and args "
                     "too; the released files are taken to be stripped to the model)",
    "t2i_file": "t2i_XL_stage2_512.pt holds {'model': state_dict} in float32 (sample_t2i.py accepts 'model', "
                "'module' or 'state_dict' and no bare state dict; train_t2i.py saves 'model' with optimizer, steps "
                "and args; the released file's keys and dtype are not stated anywhere readable here)",
    "vq_ds16_t2i": "vq_ds16_t2i.pt is VQ_16 at its defaults like vq_ds16_c2i.pt ({'model': ...}, codebook 16384 x "
                   "8): README gives 72M for both and sample_t2i.py builds VQ_models['VQ-16'] with the same "
                   "--codebook-size / --codebook-embed-dim defaults; the file itself was not read",
    "flan_t5_xl.config": "the T5_XL values are read from a public copy of google/flan-t5-xl's config.json (w4ffl35/"
                         "flan-t5-xl-8bit, _name_or_path google/flan-t5-xl), not from google's file itself; its "
                         "vocab_size 32128 from transformers' T5Config default and the published config.json of "
                         "flan-t5-xxl and t5-v1_1-xl (the copy's excerpt read here ended before vocab_size)",
    "flan_t5_xl.tokenizer": "its SentencePiece tokenizer (32000 pieces + 100 extra ids = 32100 ids, below the "
                            "32128 embedding rows) is not reproduced: a word-level tokenizer with T5's special ids "
                            "stands in for it (module docstring)",
}


def released_config(family: str, scale: str = "full", side: int | None = None) -> LlamaGenConfig:
    """The GPT's ModelArgs of `family`'s release (scale="reduced": 2 layers of 2 heads of the released head
    dimension), as sample_c2i.py builds them for --image-size 384, sample_t2i.py for 512 with --gpt-type t2i and
    --cls-token-num 120 (`side` codes per side; default the release's)."""
    if family not in RELEASES or scale not in ("full", "reduced"):
        raise ValueError(f"family, scale: expected one of {FAMILIES} and 'full'/'reduced', got {family!r}, {scale!r}")
    release = RELEASES[family]
    side = release.image_size // PIXELS_PER_CODE if side is None else side
    n_layer, n_head, dim = GPT_SIZES[release.gpt_model]
    if scale == "reduced":
        n_layer, n_head, dim = REDUCED["n_layer"], REDUCED["n_head"], REDUCED["n_head"] * (dim // n_head)
    condition = dict(gpt_type="t2i", caption_dim=CAPTION_DIM, cls_token_num=CAPTION_TOKENS) if release.t2i else {}
    return LlamaGenConfig(dim=dim, n_layer=n_layer, n_head=n_head, num_classes=NUM_CLASSES, vocab_size=CODES,
                          block_size=side * side, **condition)


def released_t5_config(scale: str = "full"):
    """flan-t5-xl's T5Config (T5_XL); scale="reduced": REDUCED_T5_LAYERS encoder layers and no decoder layers."""
    from transformers import T5Config

    layers = dict(num_layers=REDUCED_T5_LAYERS, num_decoder_layers=0) if scale == "reduced" else {}
    return T5Config(**{**T5_XL, **layers})


def released_vq_config(vq: str = "full") -> LlamaGenVQConfig:
    """VQ-16 (vq_ds16_c2i.pt), or with base channels 32 (vq="reduced")."""
    if vq not in ("full", "reduced"):
        raise ValueError(f"vq: expected 'full' or 'reduced', got {vq!r}")
    return LlamaGenVQConfig() if vq == "full" else LlamaGenVQConfig(ch=REDUCED_VQ_CHANNELS)


def random_gpt(config: LlamaGenConfig, seed: int = 0, device="cpu", dtype=torch.float32,
               std: float = INIT_STD) -> LlamaGenModel:
    """Our LlamaGenModel (upstream's parameter names) with seeded random weights, built on `device`."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaGenModel(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0) if name.endswith("norm.weight") else param.normal_(0.0, std)
        if config.gpt_type == "t2i":  # a buffer (upstream's too): randn(token_num, in_channels) / in_channels ** 0.5
            model.cls_embedding.uncond_embedding.normal_(0.0, config.caption_dim ** -0.5)
    return model.to(dtype).eval()


def random_t5(config, seed: int = 2, device="cpu", dtype=torch.float32, encoder_only: bool = True):
    """A T5EncoderModel (encoder_only) or T5ForConditionalGeneration of `config` with seeded weights drawn with the
    stds of transformers' T5 init (module docstring), built on `device` without a first default init (an
    encoder of 1.2B parameters at full scale)."""
    from transformers import T5EncoderModel, T5ForConditionalGeneration

    with torch.device("meta"):
        model = (T5EncoderModel if encoder_only else T5ForConditionalGeneration)(config)
    model = model.to_empty(device=device)
    model.tie_weights()  # to_empty gives the shared embedding's users tensors of their own
    d_model, d_kv, heads = config.d_model, config.d_kv, config.num_heads
    stds = {"shared": 1.0, "q": (d_model * d_kv) ** -0.5, "k": d_model ** -0.5, "v": d_model ** -0.5,
            "o": (heads * d_kv) ** -0.5, "relative_attention_bias": d_model ** -0.5, "wi_0": d_model ** -0.5,
            "wi_1": d_model ** -0.5, "wo": config.d_ff ** -0.5}
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # the tied embedding once
            kind = name.split(".")[-2]
            if kind.endswith("layer_norm"):
                param.fill_(1.0)
            elif kind in stds:
                param.normal_(0.0, stds[kind])
            else:
                raise AssertionError(f"random_t5: no init for {name}")
    return model.to(dtype).eval()


def word_tokenizer():
    """T5's tokenizer as far as it can be had offline (module docstring): a word-level fast tokenizer with T5's
    special ids, T5's eos appended to every encoding, and the words of T2I_PROMPTS and T2I_WORDS (lowercased, as
    LlamaGen lowercases captions; punctuation split off), the rest <unk>."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]+", " ".join((*T2I_PROMPTS, T2I_WORDS)).lower())))
    vocab = {token: i for i, token in enumerate([*T5_SPECIAL, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def write_t5(directory, scale: str = "reduced", seed: int = 2) -> Path:
    """flan-t5-xl's directory as transformers saves it (T5ForConditionalGeneration + the tokenizer, float32) at
    `scale`, random weights."""
    directory = Path(directory)
    random_t5(released_t5_config(scale), seed, encoder_only=False).save_pretrained(directory)
    word_tokenizer().save_pretrained(directory)
    return directory


def random_vq_state(config: LlamaGenVQConfig, seed: int = 1) -> dict:
    """The state dict of upstream's VQModel (tests/llamagen_reference_vq.py) of `config`, PyTorch's default
    init, seeded: what vq_ds16_c2i.pt's {"model": ...} holds (its codebook_used buffer included)."""
    from tests import llamagen_reference_vq as upstream_vq

    torch.manual_seed(seed)
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
    return upstream_vq.VQModel(upstream_vq.ModelArgs(**fields)).eval().state_dict()


def build_llamagen(family: str, directory, scale: str = "reduced", vq: str = "full", seed: int = 0,
                   save_weights: bool = True, device="cpu", dtype=None, side: int | None = None,
                   release_dir=None):
    """Write `family` (a RELEASES key) at `scale` into `directory` (created; must be empty) and return
    tests.real_shapes.Built with our model (on `device`, in `dtype`). dtype: of the converted GPT (None: the
    release's float32, convert_llamagen's default of keeping the checkpoint's own); the .pt files are float32.
    release_dir (reduced): keep the upstream-format files there (default: removed after conversion; t2i: the T5
    directory is release_dir / T5_DIR). t2i: the model's text_encoder is the T5 encoder written with it (in
    memory: scale="full" flan-t5-xl's 24 layers, built on `device` in `dtype`; save_weights=False writes its
    config.json and tokenizer to text_encoder/, not its weights)."""
    from hawk_kernels.pipelines.llamagen_convert import convert_llamagen
    from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQModel
    from hawk_kernels.pipelines.chameleon_vqgan import load_checked
    from tests.real_shapes import Built

    release = RELEASES[family]
    side = release.image_size // PIXELS_PER_CODE if side is None else side
    config, vq_config = released_config(family, scale, side), released_vq_config(vq)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    model = random_gpt(config, seed, device, torch.float32)
    vq_state = random_vq_state(vq_config, seed + 1)
    image_size = side * vq_config.pixels_per_code
    if scale == "reduced" and save_weights:
        with tempfile.TemporaryDirectory(prefix=".llamagen_release_", dir=directory.parent) as tmp:
            files = Path(release_dir or tmp)
            files.mkdir(parents=True, exist_ok=True)
            gpt_path, vq_path = files / release.gpt_file, files / release.vq_file
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            torch.save(state if release.fsdp else {"model": state}, gpt_path)
            torch.save({"model": vq_state}, vq_path)
            del state
            t5 = write_t5(files / T5_DIR, scale, seed + 2) if release.t2i else None
            convert_llamagen(gpt_path, vq_path, directory, image_size, dtype=dtype, overwrite=True,
                             n_head=config.n_head, t5=t5)
        if release.t2i:
            from hawk_kernels.pipelines.llamagen import _text_encoder

            model.text_encoder = _text_encoder(directory).eval()  # what the converter kept of it
    else:  # the converter's steps on the state dict in memory (no multi-GB .pt round trip)
        from hawk_kernels.pipelines.llamagen_convert import _check_gpt, _write, gpt_config, vq_config_of

        where = f"<{release.gpt_file} in memory>"
        state = {k: v.detach().to("cpu", dtype or torch.float32) for k, v in model.state_dict().items()} \
            if save_weights else {}
        shapes = state or {k: v for k, v in model.state_dict().items()}  # the config is read from the shapes
        read = gpt_config(shapes, release.gpt_model if scale == "full" else None,
                          None if scale == "full" else config.n_head, config.block_size, where)
        assert read == config, (read, config)
        if state:
            _check_gpt(state, read, where)
        vq_model = load_checked(LlamaGenVQModel(vq_config_of(vq_state, release.vq_file)).float(), vq_state,
                                release.vq_file, "tokenizer")
        text = None
        if release.t2i:  # _text_encoder's checks, on the encoder in memory
            model.text_encoder = random_t5(released_t5_config(scale), seed + 2, device, dtype or torch.float32)
            assert model.text_encoder.config.d_model == read.caption_dim
            text = (model.text_encoder if save_weights else model.text_encoder.config, word_tokenizer())
        _write(directory, read, vq_config_of(vq_state, release.vq_file), state, vq_model, overwrite=True,
               text=text)
        if not save_weights:
            from hawk_kernels.pipelines.llamagen import WEIGHTS

            (directory / WEIGHTS).unlink()
    (directory / "real_shapes.json").write_text(json.dumps(
        {"family": family, "released": NAMES[family], "scale": scale, "vq": vq, "seed": seed, "side": side,
         "weights": "random", "note": "tests/real_shapes_llamagen.py: released configuration, random weights"},
        indent=1))
    return Built(directory, model.to(dtype or torch.float32), family, scale)
