"""Backbones: the protocol one decode step uses (protocol.py), the static slot KV cache (kv_cache.py) and the
adapters, one per model family whose image path needs its own code. `causal_lm.CausalLMBackbone` serves any
transformers causal LM whose image codes are ordinary vocabulary ids; `janus`, `emu3` and `chameleon` hold the
families of the bundled pipelines (hawk_kernels/pipelines/)."""
from .causal_lm import CausalLMBackbone
from .chameleon import ChameleonBackbone
from .emu3 import Emu3Backbone
from .janus import JanusBackbone
from .kv_cache import SlotKVCache
from .protocol import ImageBackbone

__all__ = ["ADAPTERS", "CausalLMBackbone", "ChameleonBackbone", "Emu3Backbone", "ImageBackbone", "JanusBackbone",
           "SlotKVCache", "backbone_for"]

ADAPTERS = {"janus": JanusBackbone, "emu3": Emu3Backbone, "chameleon": ChameleonBackbone}  # by config.model_type


def backbone_for(model, grid) -> ImageBackbone:
    """The adapter for `model`: a backbone already is one and is returned as is; a model whose
    config.model_type has a family adapter (ADAPTERS) gets it; any other causal LM the generic adapter."""
    if hasattr(model, "forward_tree") and hasattr(model, "new_cache"):
        return model
    adapter = ADAPTERS.get(getattr(model.config, "model_type", None), CausalLMBackbone)
    return adapter(model, grid)
