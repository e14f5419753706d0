"""Prompt to pixels, one module per model family:

- `demo/`: the bundled MNIST text-to-image model;
- `janus`: Janus / Janus-Pro; `emu3`: Emu3; `lumina`: Lumina-mGPT (Chameleon weights) with `chameleon_vqgan`,
  the VQGAN decoder transformers does not ship; `llamagen`: LlamaGen class-conditional models (not in
  transformers: its own GPT and `llamagen_vq`, converted from the released files by `llamagen_convert`);
  `base`: what they share; `cli`: `hawk generate`.

    pipe = load_pipeline(model_dir)                       # the family from config.json's model_type
    res = pipe.generate(["a red fox in the snow"], mode="ar", seed=0)
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..checks import as_dtype, check_attn_implementation, check_compile
from ..heads import CONFIG_NAME, DraftHeads, load_accept_rates
from ..hub import local_dir
from .base import ImagePipeline, PipelineOutput
from .continuous import stream_images

__all__ = ["FAMILIES", "ImagePipeline", "PipelineOutput", "load_pipeline", "stream_images"]


def _families() -> dict:
    from .emu3 import Emu3Pipeline
    from .janus import JanusPipeline
    from .llamagen import LlamaGenPipeline
    from .lumina import LuminaPipeline

    return {"janus": JanusPipeline, "emu3": Emu3Pipeline, "chameleon": LuminaPipeline, "llamagen": LlamaGenPipeline}


FAMILIES = ("janus", "emu3", "chameleon", "llamagen")  # config.model_type values load_pipeline serves


def load_pipeline(model_dir, heads=None, device=None, dtype=None, compile="auto",
                  attn_implementation: str | None = None, revision: str | None = None,
                  vqgan=None, tokenizer=None) -> ImagePipeline:
    """A pipeline for the checkpoint in `model_dir` (its family from config.json's model_type): a local directory,
    or a Hugging Face Hub repository id ("BAAI/Emu3-Gen-hf") fetched into the Hub's cache at `revision` (hub.py);
    then loaded offline. heads: None, a DraftHeads, or a directory (or Hub repository) saved by
    DraftHeads.save_pretrained (with an optional tree_rates.json). device: default CUDA when available, else CPU.
    dtype: default the checkpoint's own. compile: HawkDecoder's word for the compiled step ("auto": on CUDA; True;
    False). attn_implementation: passed to from_pretrained (None: the checkpoint's default); "flex_attention" (CUDA)
    makes every step attend to the filled cache slots only, through block masks. vqgan: Lumina-mGPT only, Meta's
    `vqgan.ckpt` when it is not in the model directory (Lumina-mGPT's Hub repositories do not hold it).
    tokenizer: a directory or Hub repository with the processor / tokenizer files, where model_dir has none
    (Lumina-mGPT-7B-512 and -1024 ship none: upstream reads Alpha-VLLM/Lumina-mGPT-7B-768's)."""
    compile = check_compile(compile)
    dtype = as_dtype("dtype", dtype)
    vqgan = _vqgan_file(vqgan)
    device = _device(device)
    check_attn_implementation(attn_implementation, device)
    given, model_dir = model_dir, local_dir("model_dir", model_dir, "config.json", revision)
    config, family = _read_config(model_dir)
    if vqgan is not None and family.family != "chameleon":
        raise ValueError(f"vqgan: only Lumina-mGPT (chameleon) checkpoints take a VQGAN file; this is a "
                         f"{family.family} checkpoint, whose pixel decoder is in its own weights")
    _check_checkpoint(model_dir, config, family, fetched=model_dir != Path(given))
    # heads and tokenizer fetched before the model loads: a bad id fails now
    if heads is not None and not isinstance(heads, DraftHeads):
        heads = local_dir("heads", heads, CONFIG_NAME)
    processor_dir = model_dir if tokenizer is None else _tokenizer_dir(tokenizer, family)
    model = _load_model(family, model_dir, device, dtype, attn_implementation)
    processor, why = _load_processor(processor_dir, family.processor_files)
    heads, rates = _load_heads(heads, device)
    pipe = family(model, processor, heads, rates, model_dir=model_dir, **({} if vqgan is None else {"vqgan": vqgan}))
    pipe.processor_error = None if why is None else why + (family.no_processor_hint if tokenizer is None else "")
    pipe.compile = compile
    return pipe


def _read_config(model_dir: Path) -> tuple[dict, type]:
    """config.json of `model_dir` -> (the config, the family's pipeline class)."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (ValueError, OSError) as exc:  # not JSON (or not UTF-8), unreadable
        raise ValueError(f"model_dir: {str(model_dir / 'config.json')!r} is not a readable JSON file ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"model_dir: {str(model_dir / 'config.json')!r} holds a {type(config).__name__}, expected "
                         "a JSON object (a transformers config)")
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"model_dir: config.json has model_type={model_type!r}; supported: {', '.join(FAMILIES)}"
                         + OTHER_LAYOUTS.get(model_type, ""))
    return config, _families()[model_type]


def _tokenizer_dir(tokenizer, family) -> Path:
    """tokenizer= of load_pipeline: the directory (or Hub snapshot) holding the family's processor files."""
    if not family.processor_files:
        raise ValueError(f"tokenizer: this {family.family} checkpoint reads no tokenizer of its own (LlamaGen: class "
                         f"labels, or the T5 encoder's, in the model directory's text_encoder/)")
    return local_dir("tokenizer", tokenizer, family.processor_files[0])


def _vqgan_file(vqgan) -> Path | None:
    if vqgan is None:
        return None
    if not isinstance(vqgan, (str, Path)):
        raise TypeError(f"vqgan: expected None or the path of Meta's vqgan.ckpt, got {type(vqgan).__name__}")
    if not Path(vqgan).is_file():
        raise FileNotFoundError(f"vqgan: no such file {str(vqgan)!r} (expected Meta's vqgan.ckpt, from the "
                                f"Chameleon release's tokenizer/ folder)")
    return Path(vqgan)


def _device(device) -> torch.device:
    from ..checks import as_device

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return as_device("device", device)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")  # what from_pretrained reads the weights from


# the released layouts transformers' classes do not read, and what to load instead (docs/real_models.md)
OTHER_LAYOUTS = {
    "multi_modality": " (DeepSeek's original Janus / Janus-Pro layout: convert it with transformers' "
                      "convert_janus_weights_to_hf.py, or load a transformers-format conversion such as "
                      "deepseek-community/Janus-Pro-1B; docs/real_models.md)",
    "Emu3": " (BAAI's custom-code Emu3 layout: load its transformers conversion, BAAI/Emu3-Gen-hf; "
            "docs/real_models.md)",
}


def _check_checkpoint(model_dir: Path, config: dict, family, fetched: bool = False) -> None:
    """What from_pretrained needs besides config.json, checked before it runs: the weights, and the family's
    sub-configurations (without one transformers builds the model from class defaults and fails on the weights'
    shapes with a long load report). fetched: model_dir is a Hub snapshot, which holds safetensors weights only."""
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        why = (" (a Hub repository is fetched with its safetensors weights only, and this one has none: download it "
               "with `huggingface-cli download REPO --local-dir DIR` and give DIR)") if fetched else ""
        raise FileNotFoundError(f"model_dir: no model weights in {str(model_dir)!r} (expected one of "
                                f"{', '.join(WEIGHT_FILES)}){why}")
    missing = [key for key in family.required_config if not config.get(key)]
    if missing:
        raise ValueError(f"model_dir: {str(model_dir / 'config.json')!r} lacks {', '.join(missing)}, which every "
                         f"{family.family} checkpoint's config holds (transformers saves it with the model)")


def _load_model(family, model_dir: Path, device: torch.device, dtype, attn_implementation=None):
    """The family's model: its own `load_model` where it has one (LlamaGen is not a transformers model), else
    transformers' from_pretrained of `family.model_class`."""
    import transformers

    if hasattr(family, "load_model"):
        return family.load_model(model_dir, device, dtype, attn_implementation)
    chosen = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    model = getattr(transformers, family.model_class).from_pretrained(str(model_dir), dtype=dtype or "auto",
                                                                      local_files_only=True, **chosen)
    return model.to(device).eval()


def _load_processor(model_dir: Path, files: tuple):
    """(processor or tokenizer or None, why there is none). A missing or unloadable processor only means that
    text prompts are refused (input_ids still work), so the reason is kept for that error. `files`: the files
    the family's processor is saved as (each a tuple of alternative names); with one missing nothing is loaded
    (a partial processor builds wrong prompts or fails deep inside transformers), and the reason names it."""
    from transformers import AutoProcessor, AutoTokenizer

    if not files:
        return None, "this family's prompts need no processor"
    missing = [" or ".join(names) for names in files if not any((model_dir / name).is_file() for name in names)]
    if missing:
        return None, f"{', '.join(missing)} missing from {str(model_dir)!r}"
    reasons = []
    for loader in (AutoProcessor, AutoTokenizer):
        try:
            return loader.from_pretrained(str(model_dir), local_files_only=True), None
        except Exception as exc:  # noqa: BLE001 - any failure means "no processor"; the reason is reported
            reasons.append(f"{loader.__name__}: {type(exc).__name__}: {exc}")
    return None, "; ".join(reasons)


def _load_heads(heads, device):
    """heads: None, a DraftHeads, or the local directory load_pipeline resolved -> (heads, their tree rates)."""
    if heads is None or isinstance(heads, DraftHeads):
        return heads, {}
    return DraftHeads.from_pretrained(str(heads), device=device), load_accept_rates(heads)
