"""LlamaGen (FoundationVision/LlamaGen, class-conditional "c2i") at its RELEASED configurations, with random weights,
in the directory `convert_llamagen` writes from the released files, so `hawk_kernels.load_pipeline(directory)`
loads it exactly as a user loads the converted real one (issue 22's "real shapes"). Nothing is downloaded.

    build_llamagen("llamagen", dir)            LlamaGen-XL 384 px (c2i_XL_384.pt): the common release
    build_llamagen("llamagen_3b", dir)         LlamaGen-3B 384 px (c2i_3B_384.pt): the largest
    build_llamagen(family, dir, scale="full")  the released GPT size (GPU sessions: 3.1 / 12.4 GB in float32)

tests/real_shapes.build(family, ...) dispatches these two family names here (LlamaGen is not a transformers model,
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
benchmark's smoke run. side: codes per side (default the released 24; the smoke run uses 4).

Weights: normal(0, 0.02) (upstream's `_init_weights` std; its output head, which upstream zeroes at init, is
random too, or every logit would tie), RMSNorm weights 1, seeded. The VQ keeps PyTorch's default init (seeded).

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
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from hawk_kernels.backbones.llamagen_gpt import GPT_SIZES, LlamaGenConfig, LlamaGenModel
from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQConfig


@dataclass(frozen=True)
class Release:
    name: str  # upstream README's method name
    gpt_model: str  # upstream's GPT_models key (gpt.py)
    gpt_file: str  # the released GPT file
    fsdp: bool  # trained with FSDP: released as a bare state dict (README: --from-fsdp)
    parameters: float  # README's "params"


RELEASES = {"llamagen": Release("LlamaGen-XL", "GPT-XL", "c2i_XL_384.pt", False, 775e6),
            "llamagen_3b": Release("LlamaGen-3B", "GPT-3B", "c2i_3B_384.pt", True, 3.1e9)}
FAMILIES = tuple(RELEASES)
NAMES = {family: f"{r.name} 384 px ({r.gpt_file})" for family, r in RELEASES.items()}
VQ_FILE = "vq_ds16_c2i.pt"
IMAGE_SIZE, PIXELS_PER_CODE, SIDE = 384, 16, 24  # sample_c2i.py: --image-size 384, --downsample-size 16
NUM_CLASSES, CODES = 1000, 16384
CLASS_LABELS = (207, 360, 387, 974, 88, 979, 417, 279)  # sample_c2i.py's class_labels
REDUCED = dict(n_layer=2, n_head=2)  # width = 2 x the released head dimension
REDUCED_VQ_CHANNELS = 32  # vq="reduced": GroupNorm(32) needs >= 32 channels
INIT_STD = 0.02  # upstream gpt.py _init_weights (initializer_range)
UNVERIFIED = {  # recalled about the released files, not confirmed from a source readable here
    "gpt_dtype": "the released c2i_*.pt hold float32 weights (recalled from the published file sizes, ~4 bytes "
                 "per parameter; the repository does not state it: sample_c2i.py casts the model to --precision "
                 "and loads whatever the file holds); the .pt files here are float32",
    "ddp_file_keys": "the DDP releases hold {'model': state_dict} (train_c2i.py saves optimizer, steps and args "
                     "too; the released files are taken to be stripped to the model)",
}


def released_config(family: str, scale: str = "full", side: int = SIDE) -> LlamaGenConfig:
    """The GPT's ModelArgs of `family`'s release (scale="reduced": 2 layers of 2 heads of the released head
    dimension), as sample_c2i.py builds them for --image-size 384 (`side` codes per side)."""
    if family not in RELEASES or scale not in ("full", "reduced"):
        raise ValueError(f"family, scale: expected one of {FAMILIES} and 'full'/'reduced', got {family!r}, {scale!r}")
    n_layer, n_head, dim = GPT_SIZES[RELEASES[family].gpt_model]
    if scale == "reduced":
        n_layer, n_head, dim = REDUCED["n_layer"], REDUCED["n_head"], REDUCED["n_head"] * (dim // n_head)
    return LlamaGenConfig(dim=dim, n_layer=n_layer, n_head=n_head, num_classes=NUM_CLASSES, vocab_size=CODES,
                          block_size=side * side)


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
    return model.to(dtype).eval()


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
    release_dir (reduced): keep the upstream-format files there (default: removed after conversion)."""
    from hawk_kernels.pipelines.llamagen_convert import convert_llamagen
    from hawk_kernels.pipelines.llamagen_vq import LlamaGenVQModel
    from hawk_kernels.pipelines.chameleon_vqgan import load_checked
    from tests.real_shapes import Built

    side = SIDE if side is None else side
    config, vq_config = released_config(family, scale, side), released_vq_config(vq)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    release = RELEASES[family]
    model = random_gpt(config, seed, device, torch.float32)
    vq_state = random_vq_state(vq_config, seed + 1)
    image_size = side * vq_config.pixels_per_code
    if scale == "reduced" and save_weights:
        with tempfile.TemporaryDirectory(prefix=".llamagen_release_", dir=directory.parent) as tmp:
            files = Path(release_dir or tmp)
            files.mkdir(parents=True, exist_ok=True)
            gpt_path, vq_path = files / release.gpt_file, files / VQ_FILE
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            torch.save(state if release.fsdp else {"model": state}, gpt_path)
            torch.save({"model": vq_state}, vq_path)
            del state
            convert_llamagen(gpt_path, vq_path, directory, image_size, dtype=dtype, overwrite=True,
                             n_head=config.n_head)
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
        vq_model = load_checked(LlamaGenVQModel(vq_config_of(vq_state, VQ_FILE)).float(), vq_state, VQ_FILE,
                                "tokenizer")
        _write(directory, read, vq_config_of(vq_state, VQ_FILE), state, vq_model, overwrite=True)
        if not save_weights:
            from hawk_kernels.pipelines.llamagen import WEIGHTS

            (directory / WEIGHTS).unlink()
    (directory / "real_shapes.json").write_text(json.dumps(
        {"family": family, "released": NAMES[family], "scale": scale, "vq": vq, "seed": seed, "side": side,
         "weights": "random", "note": "tests/real_shapes_llamagen.py: released configuration, random weights"},
        indent=1))
    return Built(directory, model.to(dtype or torch.float32), family, scale)
