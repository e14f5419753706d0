"""The released LlamaGen files -> the directory `load_pipeline` reads (see llamagen.py).

Upstream ships bare torch files with no configuration (huggingface.co/FoundationVision/LlamaGen): a GPT such as
`c2i_XL_384.pt` ({"model": state_dict}; the FSDP-trained XXL / 3B ones as a bare state dict) and the VQ tokenizer
`vq_ds16_c2i.pt` ({"model": state_dict}); the t2i GPTs (`t2i_XL_stage1_256.pt`, `t2i_XL_stage2_512.pt`, with
`vq_ds16_t2i.pt`, at huggingface.co/peizesun/llamagen_t2i) read captions of google/flan-t5-xl's encoder, whose
directory is given too (`t5`).
Upstream's sample scripts are told the rest (--gpt-model, --image-size, --codebook-size ...); here the shapes
are read from the weights (model size, condition, codebook) and only the image size, which no weight records,
must be given (the file name says it: c2i_XL_384.pt is 384 px). The GPT is checked strictly: upstream loads with
strict=False, which would leave a missing weight random; only entries that hold no weights (a saved rotary
table, causal mask or KV cache) are dropped.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import torch

from ..backbones.llamagen_gpt import GPT_SIZES, LlamaGenConfig, state_mismatch
from ..checks import as_dtype, as_int
from .llamagen import TEXT_ENCODER, VQ_WEIGHTS, WEIGHTS
from .llamagen_vq import LlamaGenVQConfig, LlamaGenVQModel, load_torch_file, read_vq_checkpoint

NOT_WEIGHTS = re.compile(r"(^|\.)(freqs_cis|causal_mask|kv_cache\.[kv]_cache)$")  # runtime tables, not weights


def convert_llamagen(gpt_checkpoint, vq_checkpoint, out_dir, image_size: int, gpt_model: str | None = None,
                     dtype=None, overwrite: bool = False, n_head: int | None = None, t5=None) -> Path:
    """Write config.json, model.safetensors and vq_model.safetensors into `out_dir` (made whole in a temporary
    directory, then moved: nothing half-written is left). gpt_model: one of GPT_SIZES (None: read from the
    weights' width and depth). image_size: the checkpoint's resolution in px (256 or 384 for the released c2i
    models; the file name says it). dtype: of the written GPT (None: the checkpoint's own; the VQ stays float32).
    n_head: the attention heads of a GPT of your own size (not in GPT_SIZES; the weights do not record it).
    t5: for a t2i GPT, the T5 model directory its captions come from (google/flan-t5-xl as transformers saves it,
    with its tokenizer): its encoder and tokenizer are written to text_encoder/ (in `dtype` where given)."""
    image_size = as_int("image_size", image_size, 1)
    dtype = as_dtype("dtype", dtype)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"out_dir: {str(out_dir)!r} exists and is not an empty directory (pass overwrite=True "
                              f"to replace it)")
    try:
        vq_config = vq_config_of(read_vq_checkpoint(vq_checkpoint), vq_checkpoint)
        vq = LlamaGenVQModel.from_checkpoint(vq_checkpoint, vq_config)  # checks every weight
    except ValueError as exc:  # the VQ reader names its own argument, `path`: this one is vq_checkpoint
        name, _, rest = str(exc).partition(": ")
        raise ValueError(f"vq_checkpoint: {rest}" if name == "path" else str(exc)) from None
    if image_size % vq_config.pixels_per_code:
        raise ValueError(f"image_size: the VQ model makes {vq_config.pixels_per_code} px per code; expected a "
                         f"multiple of it, got {image_size}")
    state = gpt_state(gpt_checkpoint)
    config = gpt_config(state, gpt_model, n_head, (image_size // vq_config.pixels_per_code) ** 2, gpt_checkpoint)
    _check_gpt(state, config, gpt_checkpoint)
    text = _text_encoder(t5, config, dtype)
    _write(out_dir, config, vq_config, {k: v.to(dtype) if dtype else v for k, v in state.items()}, vq, overwrite,
           text)
    return out_dir


def _text_encoder(t5, config: LlamaGenConfig, dtype):
    """(T5 encoder, tokenizer) of a t2i GPT from `t5` (a directory), checked against the caption width; None for
    c2i (where t5 must not be given)."""
    if config.gpt_type == "c2i":
        if t5 is not None:
            raise ValueError("t5: given, but the GPT is class-conditional (c2i): it reads no captions")
        return None
    if t5 is None or not (Path(t5) / "config.json").is_file():
        raise ValueError(f"t5: a t2i GPT reads T5 captions; expected the T5 model directory it was trained with "
                         f"(google/flan-t5-xl, holding config.json), got {t5!r}")
    from transformers import AutoTokenizer, T5EncoderModel

    _check_t5_files(Path(t5))
    try:
        encoder, info = T5EncoderModel.from_pretrained(str(t5), local_files_only=True, output_loading_info=True,
                                                       **({"dtype": dtype} if dtype else {}))
    except (OSError, RuntimeError) as exc:  # no weights file, an unreadable one, weights of other shapes
        raise ValueError(f"t5: {str(t5)!r}: {exc}") from None
    if info["missing_keys"] or info["mismatched_keys"]:  # transformers would leave them random
        raise ValueError(f"t5: {str(t5)!r} lacks T5 encoder weights (missing {sorted(info['missing_keys'])[:3]}, "
                         f"wrong shapes {sorted(info['mismatched_keys'])[:3]})")
    if encoder.config.d_model != config.caption_dim:
        raise ValueError(f"t5: its width is {encoder.config.d_model}; the GPT's captions are {config.caption_dim} "
                         f"wide (flan-t5-xl: 2048)")
    return encoder, AutoTokenizer.from_pretrained(str(t5), local_files_only=True)


def _check_t5_files(t5: Path) -> None:
    """A T5 directory's config names T5 (another model's is not read as one) and its tokenizer is there (without
    tokenizer.json or spiece.model, transformers makes a T5 tokenizer with no words: every caption would be <unk>)."""
    try:
        model_type = json.loads((t5 / "config.json").read_text()).get("model_type")
    except (ValueError, AttributeError, OSError) as exc:
        raise ValueError(f"t5: {str(t5 / 'config.json')!r} is not a model config ({exc})") from None
    if model_type != "t5":
        raise ValueError(f"t5: {str(t5)!r} holds a {model_type!r} model, not T5 (google/flan-t5-xl)")
    if not any((t5 / name).is_file() for name in ("tokenizer.json", "spiece.model")):
        raise ValueError(f"t5: {str(t5)!r} holds no tokenizer (tokenizer.json or spiece.model, as google/flan-t5-xl "
                         f"ships them)")


def gpt_state(path) -> dict:
    """The GPT's state dict from a released file (DDP {"model": ...}, DeepSpeed {"module": ...}, {"state_dict":
    ...} or bare, as upstream's sample script reads them), runtime tables dropped."""
    try:
        loaded = load_torch_file(path, mmap=True)  # a 3B float32 file is 12 GB
    except Exception as exc:  # noqa: BLE001 - missing, truncated, not a torch file: all "not a checkpoint"
        raise ValueError(f"gpt_checkpoint: {str(path)!r} is not a readable torch checkpoint ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    state = next((loaded[k] for k in ("model", "module", "state_dict") if isinstance(loaded, dict) and k in loaded),
                 loaded)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"gpt_checkpoint: {str(path)!r} holds no LlamaGen GPT state dict (names to tensors, or "
                         f"{{'model': ...}} as released)")
    return {k: v for k, v in state.items() if not NOT_WEIGHTS.search(k)}


def gpt_config(state: dict, gpt_model: str | None, n_head: int | None, block_size: int, path) -> LlamaGenConfig:
    """The config the weights were trained with: width, depth, classes and codebook read from the shapes; the
    head count given (n_head) or from upstream's size table (gpt_model, or the size whose width and depth
    match)."""
    if "tok_embeddings.weight" not in state:
        raise ValueError(f"gpt_checkpoint: {str(path)!r} lacks tok_embeddings.weight: not a LlamaGen GPT")
    codes, dim = state["tok_embeddings.weight"].shape
    condition = _condition(state, path)
    layers = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("layers.")), default=-1)
    if n_head is not None:
        if gpt_model is not None:
            raise ValueError("n_head: give gpt_model (a released size) or n_head (a size of your own), not both")
        config = LlamaGenConfig(dim=dim, n_layer=layers, n_head=as_int("n_head", n_head, 1), vocab_size=codes,
                                block_size=block_size, **condition)
        config.check()
        return config
    matching = [name for name, (n_layer, _, width) in GPT_SIZES.items() if (n_layer, width) == (layers, dim)]
    if gpt_model is None and not matching:
        raise ValueError(f"gpt_checkpoint: {str(path)!r} has {layers} layers of width {dim}, none of LlamaGen's "
                         f"sizes ({', '.join(GPT_SIZES)}); pass n_head for a size of your own")
    name = gpt_model or matching[0]
    if name not in GPT_SIZES:
        raise ValueError(f"gpt_model: expected one of {', '.join(GPT_SIZES)}, got {name!r}")
    n_layer, heads, width = GPT_SIZES[name]
    if (n_layer, width) != (layers, dim):
        raise ValueError(f"gpt_model: {name} has {n_layer} layers of width {width}; {str(path)!r} has {layers} "
                         f"of width {dim}")
    return LlamaGenConfig(dim=dim, n_layer=n_layer, n_head=heads, vocab_size=codes, block_size=block_size,
                          **condition)


def _condition(state: dict, path) -> dict:
    """c2i: the class table's rows (the classes and the null class); t2i: the caption projection's input width
    (T5's) and the null caption's length (the caption positions)."""
    if "cls_embedding.embedding_table.weight" in state:
        return dict(gpt_type="c2i", num_classes=state["cls_embedding.embedding_table.weight"].shape[0] - 1)
    if "cls_embedding.cap_proj.fc1.weight" in state and "cls_embedding.uncond_embedding" in state:
        return dict(gpt_type="t2i", caption_dim=state["cls_embedding.cap_proj.fc1.weight"].shape[1],
                    cls_token_num=state["cls_embedding.uncond_embedding"].shape[0])
    raise ValueError(f"gpt_checkpoint: {str(path)!r} has neither a class table (c2i: cls_embedding.embedding_table) "
                     f"nor a caption projection (t2i: cls_embedding.cap_proj, cls_embedding.uncond_embedding)")


def vq_config_of(state: dict, path) -> LlamaGenVQConfig:
    """The VQ model's shape read from its weights (VQ-16 and VQ-8 alike): codebook, base width, multipliers per
    level, z channels, blocks per level. The codebook is l2-normalised, as in every released tokenizer (no weight
    records it)."""
    def width(key: str) -> int:
        if key not in state:
            raise ValueError(f"vq_checkpoint: {str(path)!r} lacks {key}: not a LlamaGen VQ model")
        return state[key].shape[0]

    def levels(part: str) -> int:
        return 1 + max((int(k.split(".")[2]) for k in state if k.startswith(f"{part}.conv_blocks.")), default=-1)

    ch = width("encoder.conv_in.weight")
    size, embed_dim = state["quantize.embedding.weight"].shape if "quantize.embedding.weight" in state else (0, 0)
    encoder = [width(f"encoder.conv_blocks.{i}.res.0.conv1.weight") // ch for i in range(levels("encoder"))]
    decoder = [width(f"decoder.conv_blocks.{i}.res.0.conv1.weight") // ch for i in range(levels("decoder"))][::-1]
    blocks = len({k.split(".")[4] for k in state if k.startswith("encoder.conv_blocks.0.res.")})
    if not size or not encoder or not decoder:
        raise ValueError(f"vq_checkpoint: {str(path)!r} holds no LlamaGen VQ model (no codebook or no levels)")
    return LlamaGenVQConfig(codebook_size=size, codebook_embed_dim=embed_dim, encoder_ch_mult=tuple(encoder),
                            decoder_ch_mult=tuple(decoder), z_channels=state["quant_conv.weight"].shape[1], ch=ch,
                            num_res_blocks=blocks)


def _check_gpt(state: dict, config: LlamaGenConfig, path) -> None:
    mismatch = state_mismatch(state, config)
    if mismatch is not None:
        raise ValueError(f"gpt_checkpoint: {str(path)!r} does not match a LlamaGen {config.n_layer}-layer GPT "
                         f"({mismatch})")
    bad = next((k for k, v in state.items() if not v.is_floating_point() or not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise ValueError(f"gpt_checkpoint: {str(path)!r}: weight {bad} is not finite floating point")


def _write(out_dir: Path, config, vq_config, state: dict, vq: LlamaGenVQModel, overwrite: bool, text=None) -> None:
    from safetensors.torch import save_file

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (staging / "config.json").write_text(json.dumps({**config.to_dict(), "vq_config": vq_config.to_dict()},
                                                        indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / WEIGHTS))
        save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, str(staging / VQ_WEIGHTS))
        for part in text or ():  # t2i: the T5 encoder and its tokenizer
            part.save_pretrained(str(staging / TEXT_ENCODER))
        if out_dir.is_dir() and any(out_dir.iterdir()):
            shutil.rmtree(out_dir)  # overwrite (checked before)
        elif out_dir.exists():
            out_dir.rmdir() if out_dir.is_dir() else out_dir.unlink()
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
