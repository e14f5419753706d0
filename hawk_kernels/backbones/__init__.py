"""Backbones: the protocol one decode step uses (protocol.py), the static slot KV cache (kv_cache.py) and the
adapters, one per model family whose image path needs its own code. `causal_lm.CausalLMBackbone` serves any
transformers causal LM whose image codes are ordinary vocabulary ids (Llama, Chameleon / Lumina-mGPT, Emu3);
`janus` has an image path of its own; `llamagen` adapts LlamaGen's own GPT (`llamagen_gpt`, not in
transformers); `emu3` and `chameleon` hold those families' image layouts (the grids of
hawk_kernels/pipelines/)."""
import torch

from .causal_lm import CausalLMBackbone
from .janus import JanusBackbone
from .kv_cache import SlotKVCache
from .llamagen import LlamaGenBackbone
from .protocol import ImageBackbone, is_backbone

__all__ = ["ADAPTERS", "CausalLMBackbone", "ImageBackbone", "JanusBackbone", "LlamaGenBackbone", "SlotKVCache",
           "backbone_for", "is_backbone"]

# by config.model_type; every other causal LM: CausalLMBackbone
ADAPTERS = {"janus": JanusBackbone, "llamagen": LlamaGenBackbone}


def backbone_for(model, grid) -> ImageBackbone:
    """The adapter for `model`: a backbone already is one and is returned as is; a model whose
    config.model_type has a family adapter (ADAPTERS) gets it; any other causal LM the generic adapter."""
    if is_backbone(model):
        return model
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"model: expected a transformers causal LM (a torch.nn.Module with a config) or a backbone "
                        f"adapter, got {type(model).__name__}")
    adapter = ADAPTERS.get(getattr(model.config, "model_type", None), CausalLMBackbone)
    return adapter(model, grid)
