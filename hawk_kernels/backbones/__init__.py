"""Backbones: the protocol one decode step uses (protocol.py), the static slot KV cache (kv_cache.py) and the
adapters, one per model family whose image path needs its own code. `causal_lm.CausalLMBackbone` serves any
transformers causal LM whose image codes are ordinary vocabulary ids."""
from .causal_lm import CausalLMBackbone
from .kv_cache import SlotKVCache
from .protocol import ImageBackbone

__all__ = ["CausalLMBackbone", "ImageBackbone", "SlotKVCache", "backbone_for"]


def backbone_for(model, grid) -> ImageBackbone:
    """The adapter for `model` (a backbone already is one and is returned as is)."""
    if hasattr(model, "forward_tree") and hasattr(model, "new_cache"):
        return model
    return CausalLMBackbone(model, grid)
